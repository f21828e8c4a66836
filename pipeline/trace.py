"""Where a run's time goes, recorded inside the workers and sent back with each batch's results.

A batch of tasks runs in a worker under `run_batch`: each task's start and end, and the steps that time
themselves inside it (reading a part, each stage, an exchange's map write, a reduction step, a write), are
kept in a `Timing` that travels back to the driver with the results, in the message it sends anyway. So the
same record comes from every engine, with no shared disk, no cluster service and no extra message; the
driver's `pipeline.timeline` corrects each worker's clock and turns it into a report or a trace.
Recording is on unless `PIPELINE_TIMELINE=off` (read when a worker starts): a few clock reads and appends
per task, measured against off by `scripts/benchmark.py --recording`.
"""

from __future__ import annotations

import os
import resource
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
# (kind, name, start, end, rows, bytes); kind: read, exchange read, stage, exchange, reduce, write, serialise;
# rows: what the step produced (None: not counted); bytes: what it wrote (exchange, write) or read (read: the
# data in memory), else None
Step = tuple[str, str, float, float, "int | None", "int | None"]
_local = threading.local()
_HOST = socket.gethostname()
_OFF = os.environ.get("PIPELINE_TIMELINE", "").lower() == "off"


@dataclass
class Timing:
    """What a worker measured running one batch, in its own wall clock."""

    seconds: float  # the batch's duration (monotonic clock): what the batch sizer needs
    worker: str  # host:pid
    lane: int  # the thread that ran it: one lane per process, or per thread of a threaded worker
    start: float
    end: float
    tasks: list[tuple[float, float, tuple[Step, ...]]] = field(default_factory=list)  # per task, in order
    peak_rss: int = 0  # the process's peak resident memory so far, bytes


def record(kind: str, name: str, seconds: float, rows: int | None = None, nbytes: int | None = None) -> None:
    """A step that just ended after `seconds` (measured by the caller), inside the running task."""
    steps = getattr(_local, "steps", None)
    if steps is not None:
        end = time.time()
        steps.append((kind, name, end - seconds, end, rows, nbytes))


def task(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)`, its start, end and steps appended to the running batch's timing (if any)."""
    timing: Timing | None = getattr(_local, "timing", None)
    if timing is None:
        return fn(*args)
    _local.steps = steps = []
    started = time.time()
    try:
        return fn(*args)
    finally:
        timing.tasks.append((started, time.time(), tuple(steps)))
        _local.steps = None


def run_batch(run: Callable[[Any], Any], items: Sequence[Any]) -> tuple[list[Any], Timing]:
    """`[run(item) for item in items]` and the batch's `Timing` (each `run` wraps its task in `task`)."""
    started, wall = time.perf_counter(), time.time()
    timing = Timing(0.0, f"{_HOST}:{os.getpid()}", threading.get_ident(), wall, wall)
    _local.timing = None if _OFF else timing
    try:
        results = [run(item) for item in items]
    finally:
        _local.timing = None
    timing.seconds, timing.end = time.perf_counter() - started, time.time()
    timing.peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    return results, timing
