"""A run's timeline in the Chrome trace event format, which trace viewers open as they are.

One process row per worker (named host:pid), one thread row per lane; each task a complete event ("X")
named by its label, with its steps (read, stage, exchange, reduce, write, serialise) nested inside it; a
failed attempt is an event of category "failed" on a row of its own. Times are microseconds on the
driver's clock from the start of the run, each worker's clock offset already corrected (`pipeline.timeline`).
Set `PIPELINE_TRACE` to a folder to have every run write `trace-<run id>.json` there.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

from pipeline.timeline import Timeline

ENV = "PIPELINE_TRACE"
FAILED = "failed attempts"


def events(timeline: Timeline) -> list[dict[str, Any]]:
    """The trace events of every task run, with the rows' names first."""
    runs = timeline.runs()
    workers = sorted({r.worker or FAILED for r in runs}, key=lambda w: (w == FAILED, w))
    pids = {worker: i + 1 for i, worker in enumerate(workers)}
    lanes: dict[tuple[str, int], int] = {}
    out: list[dict[str, Any]] = [{"ph": "M", "name": "process_name", "pid": pids[w], "args": {"name": w}}
                                 for w in workers]
    for run in runs:
        worker = run.worker or FAILED
        tid = lanes.setdefault((worker, run.lane), sum(1 for w, _ in lanes if w == worker) + 1)
        where = {"pid": pids[worker], "tid": tid}
        args = {"key": run.key, "chunk": run.chunk, "input": run.source, "attempt": run.attempt}
        if run.failed:
            args["error"] = run.failed
        out.append({"ph": "X", "name": run.label, "cat": "failed" if run.failed else "task",
                    "ts": _us(run.start), "dur": _us(run.seconds), **where, "args": args})
        out += [{"ph": "X", "name": name, "cat": kind, "ts": _us(start), "dur": _us(end - start), **where,
                 "args": {"rows": rows, "bytes": size}} for kind, name, start, end, rows, size in run.steps]
    return out


def write(timeline: Timeline, path: str) -> None:
    """The trace as one JSON file at `path`; `otherData.started` is the run's start (Unix seconds)."""
    with open(path, "w") as fh:
        json.dump({"traceEvents": events(timeline), "displayTimeUnit": "ms",
                   "otherData": {"started": timeline.started}}, fh)


@contextlib.contextmanager
def written_if_asked(timeline: Timeline, run_id: str) -> Iterator[None]:
    """After the block, failed or not, `trace-<run id>.json` in the folder `PIPELINE_TRACE` names, if any."""
    try:
        yield
    finally:
        folder = os.environ.get(ENV)
        if folder:
            os.makedirs(folder, exist_ok=True)
            write(timeline, os.path.join(folder, f"trace-{run_id}.json"))


def _us(seconds: float) -> float:
    return round(seconds * 1e6, 1)
