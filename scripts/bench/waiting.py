"""Stages that wait, measured on the `processes` engine:

1. `stages.io:fetch` over 2,000 URLs that each take 50 ms to answer (the slow server in
   `scripts/slow_server.py`), concurrency 32 per chunk on 2 workers, against the ideal 2,000 × 50 ms / 64:
   what the run would take if 64 requests were always in flight and cost nothing but their wait.
2. What `stages.external:pipe` costs per chunk: `cat` over each chunk (Arrow IPC, then CSV) against the same
   chunks through a stage that returns its input, interleaved; the difference in worker time per chunk.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import Pipeline, declare, get_engine
from pipeline.io import FileSource
from slow_server import serving
from stages.external import pipe
from stages.io import fetch

URLS, DELAY, CONCURRENCY, TARGET = 2_000, 0.05, 32, 2.0
PIPE_CHUNKS, PIPE_ROWS = 200, 1_000


@declare(batch="arrow")
def same(table: pa.Table) -> pa.Table:
    """The stage `pipe` is compared with: the chunk as it came."""
    return table


def main(workers: int, repeats: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="waiting-") as scratch:
        folder = Path(scratch)
        results = _fetch(folder, workers, repeats)
        results.update(_pipe(folder, workers, repeats))
    return results


def _fetch(folder: Path, workers: int, repeats: int) -> dict[str, float]:
    ideal = URLS * DELAY / (CONCURRENCY * workers)
    times = []
    with serving(delay=DELAY) as base:
        urls = [f"{base}/text/row-{i}" for i in range(URLS)]
        _write(pa.table({"url": urls}), folder / "urls", files=8)
        source = FileSource(str(folder / "urls"), chunk_rows=URLS // (4 * workers))  # 4 chunks per worker
        job = Pipeline().then(fetch, column="url", concurrency=CONCURRENCY)
        with get_engine("processes", workers=workers) as engine:
            for _ in range(repeats):
                started = time.perf_counter()
                job.run(source, str(folder / "pages"), engine, mode="overwrite")
                times.append(time.perf_counter() - started)
        pages = pq.read_table(folder / "pages").column("content").to_pylist()
    if pages != [f"row-{i}" for i in range(URLS)]:
        raise SystemExit("fetch benchmark: the pages fetched are not the pages asked for")
    median = statistics.median(times)
    print(f"fetch: {URLS:,} URLs at {DELAY * 1000:.0f} ms, concurrency {CONCURRENCY} on {workers} workers, median "
          f"of {repeats}: {median:.2f} s; ideal {ideal:.2f} s; {median / ideal:.2f}× the ideal (target ≤ {TARGET}: "
          f"{'met' if median / ideal <= TARGET else 'missed'}); one request after another would take "
          f"{URLS * DELAY:.0f} s")
    return {"fetch_s": median, "fetch_ideal_s": ideal, "fetch_ratio": median / ideal}


def _pipe(folder: Path, workers: int, repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    rows = PIPE_CHUNKS * PIPE_ROWS
    table = pa.table({"id": np.arange(rows), "zone": rng.choice(["a", "b", "c"], rows), "fare": rng.random(rows)})
    _write(table, folder / "rows", files=20)
    source = FileSource(str(folder / "rows"), chunk_rows=PIPE_ROWS)
    jobs = {"same": Pipeline().then(same),
            "arrow": Pipeline().then(pipe, command=["cat"], format="arrow"),
            "csv": Pipeline().then(pipe, command=["cat"], format="csv")}
    times: dict[str, list[float]] = {name: [] for name in jobs}
    with get_engine("processes", workers=workers) as engine:
        for _ in range(repeats):
            for name, job in jobs.items():
                started = time.perf_counter()
                job.run(source, str(folder / f"out-{name}"), engine, mode="overwrite")
                times[name].append(time.perf_counter() - started)
    for name in ("arrow", "csv"):
        if pq.read_table(folder / f"out-{name}").column("id").to_pylist() != list(range(rows)):
            raise SystemExit(f"pipe benchmark: `cat` over {name} did not give the rows back")
    medians = {name: statistics.median(t) for name, t in times.items()}
    per_chunk = {name: (medians[name] - medians["same"]) * workers / PIPE_CHUNKS for name in ("arrow", "csv")}
    print(f"pipe: {PIPE_CHUNKS} chunks of {PIPE_ROWS:,} rows on {workers} workers, median of {repeats}: identity stage "
          f"{medians['same']:.2f} s, `cat` over Arrow IPC {medians['arrow']:.2f} s, over CSV {medians['csv']:.2f} s; "
          f"cost per chunk {per_chunk['arrow'] * 1000:.1f} ms (Arrow IPC), {per_chunk['csv'] * 1000:.1f} ms (CSV)")
    return {f"pipe_{name}_s": value for name, value in medians.items()} | {
        f"pipe_{name}_per_chunk_s": value for name, value in per_chunk.items()}


def _write(table: pa.Table, folder: Path, files: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    step = -(-table.num_rows // files)
    for i, start in enumerate(range(0, table.num_rows, step)):
        pq.write_table(table.slice(start, step), folder / f"part-{i:03d}.parquet")
