"""Where a run's time goes, recorded inside the workers: spans of work.

The steps that already time themselves (reading a part, each stage, an exchange's map write, a reduction
step, a write) and each whole task are recorded as spans: kind, name, wall-clock start and end, process id.
Recording is off, and costs one check per step, unless the environment variable `PIPELINE_TRACE` names a
folder that workers inherit; each process then appends its spans to its own file there as each task ends,
and `load(folder)` reads them all back. Wall-clock time, so spans from processes on one machine line up.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from glob import glob
from typing import Any, TypeVar

ENV = "PIPELINE_TRACE"
T = TypeVar("T")
_pending: list[tuple[str, str, float, float]] = []


@dataclass(frozen=True)
class Span:
    kind: str  # "task", "read", "exchange read", "stage", "exchange", "reduce", "write"
    name: str  # the stage's or task function's name
    start: float
    end: float
    pid: int

    @property
    def seconds(self) -> float:
        return self.end - self.start


def record(kind: str, name: str, seconds: float) -> None:
    """A step that just ended after `seconds` (measured by the caller)."""
    if os.environ.get(ENV):
        end = time.time()
        _pending.append((kind, name, end - seconds, end))


def task(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)`, recorded as a task span with the steps recorded while it ran, written out at its end."""
    folder = os.environ.get(ENV)
    if not folder:
        return fn(*args)
    started = time.time()
    try:
        return fn(*args)
    finally:
        _pending.append(("task", getattr(fn, "__name__", "task"), started, time.time()))
        _flush(folder)


def _flush(folder: str) -> None:
    pid = os.getpid()
    lines = "".join(json.dumps([kind, name, start, end, pid]) + "\n" for kind, name, start, end in _pending)
    _pending.clear()
    with open(os.path.join(folder, f"spans-{pid}.jsonl"), "a") as f:
        f.write(lines)


def load(folder: str) -> list[Span]:
    """Every span recorded under `folder`, by every process."""
    spans = []
    for path in glob(os.path.join(folder, "spans-*.jsonl")):
        with open(path) as f:
            spans += [Span(*json.loads(line)) for line in f if line.strip()]
    return spans
