"""Where a chunk's time goes, ours against the hand-written Pool's per-file function, in this process.

Both paths do the same work on the same files; the differences are how the chunk is read and converted,
the partial aggregation, and pickling the partial for the trip back to the driver. Each step is timed per
file and summed over all files (best of `repeats` per step, to shrug off a noisy machine).
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from bench import job
from bench.report import console


def _best(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, value = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - started)
    return best, value


def _add(totals: dict[str, float], steps: list[tuple[str, Callable[[Any], Any]]], repeats: int) -> None:
    value: Any = None
    for name, step in steps:
        seconds, value = _best(lambda: step(value), repeats)
        totals[name] = totals.get(name, 0.0) + seconds


def steps(data: str, repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """(ours, Pool's) step times, chunk by chunk interleaved so drift hits both alike."""
    import cloudpickle
    import pyarrow.parquet as pq
    from pipeline.aggregate import GroupAggregate
    from pipeline.io import FileSource

    source, chunks = FileSource(data, columns=job.COLUMNS).discover()
    reducer = GroupAggregate(job.KEYS, job.AGGS)
    ours: dict[str, float] = {}
    pool: dict[str, float] = {}
    for chunk in chunks:
        _add(ours, [
            ("read", lambda _: source.read(chunk)),
            ("to pandas", lambda b: b.to_pandas() if isinstance(b, pa.Table) else b),
            ("clean", job.clean), ("transform", job.transform), ("partial", reducer.partial),
            ("pickle partial", cloudpickle.dumps),
        ], repeats)
        _add(pool, [
            ("read", lambda _: pa.concat_tables(pq.ParquetFile(p.path).read_row_groups(p.row_groups, job.COLUMNS)
                                                for p in chunk.pieces)),
            ("to pandas", lambda t: t.to_pandas()),
            ("clean", job.clean), ("transform", job.transform), ("partial", job.partial),
            ("pickle partial", pickle.dumps),
        ], repeats)
    return ours, pool


def main(data: str, repeats: int = 3) -> dict[str, dict[str, float]]:
    from rich.table import Table

    ours, pool = steps(data, repeats)
    table = Table(title=f"Per-chunk work summed over all chunks, one process (best of {repeats} per step)")
    for column in ("step", "ours s", "Pool's function s", "difference s"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for name in ours:
        table.add_row(name, f"{ours[name]:.3f}", f"{pool.get(name, 0.0):.3f}", f"{ours[name] - pool.get(name, 0.0):+.3f}")
    table.add_row("total", f"{sum(ours.values()):.3f}", f"{sum(pool.values()):.3f}",
                  f"{sum(ours.values()) - sum(pool.values()):+.3f}")
    console.print(table)
    return {"ours": ours, "pool": pool}

