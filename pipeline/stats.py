"""Per-stage counters that ride along with task results: rows in and out, seconds, chunks."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class StageCount:
    rows_in: int | None = 0  # None: not counted (a lazy batch has no rows until it is collected)
    rows_out: int | None = 0
    seconds: float = 0.0
    chunks: int = 0

    def add(self, other: "StageCount") -> None:
        self.rows_in = _sum(self.rows_in, other.rows_in)
        self.rows_out = _sum(self.rows_out, other.rows_out)
        self.seconds += other.seconds
        self.chunks += other.chunks


def _sum(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a + b


Stats = dict[str, StageCount]


def merge(many: Iterable[Stats]) -> Stats:
    """Sum the counters of several tasks, keeping stage order of first appearance."""
    total: Stats = {}
    for stats in many:
        for name, count in stats.items():
            total.setdefault(name, StageCount()).add(count)
    return total
