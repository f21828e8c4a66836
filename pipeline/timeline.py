"""A run's timeline, kept by the driver: every batch's `trace.Timing`, put on the driver's clock.

    worker:  run_batch ──(results, Timing in the worker's clock)──▶ driver: run_plan
    driver:  sent at t0 ... received at t3  ──▶  Timeline.finished(tasks, timing, t0, t3)

Each worker's clock offset is estimated as a network time client does: with the worker's own start t1 and end
t2 of a batch, offset = ((t1 - t0) + (t2 - t3)) / 2, within half the batch's round trip (t3 - t0) - (t2 - t1);
the batch with the shortest round trip gives each worker's estimate. A run records into the `Timeline`
that `recording()` makes current; the shared scheduler finds it there, so no engine passes it along.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from pipeline.plan import Plan, Task
from pipeline.trace import Step, Timing

_current: contextvars.ContextVar[Timeline | None] = contextvars.ContextVar("timeline", default=None)


@dataclass(frozen=True)
class TaskRun:
    """One run of one task, in seconds since the run started on the driver's clock."""

    key: str
    label: str
    chunk: int | None
    source: str
    worker: str  # host:pid ("" when a failure left no worker's word)
    lane: int
    start: float
    end: float
    steps: tuple[Step, ...] = ()
    attempt: int = 1
    failed: str = ""  # why this attempt failed ("" when it succeeded)
    queued: float = 0.0  # seconds from the driver sending its batch to the task starting

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def moved(self, by: float) -> TaskRun:
        """The same run with its times (and its steps') `by` seconds earlier."""
        steps = tuple((kind, name, a - by, b - by, rows, size) for kind, name, a, b, rows, size in self.steps)
        return replace(self, start=self.start - by, end=self.end - by, steps=steps)


@dataclass
class Timeline:
    started: float = field(default_factory=time.time)
    ended: float | None = None
    plan: Plan | None = field(default=None, repr=False)  # what ran (the last plan, if a block ran several)
    _batches: list[tuple[list[Task], Timing, float, float]] = field(default_factory=list, repr=False)
    _failures: list[tuple[list[Task], str, float, float]] = field(default_factory=list, repr=False)

    def finished(self, tasks: Sequence[Task], timing: Timing, sent: float, received: float) -> None:
        self._batches.append((list(tasks), timing, sent, received))

    def failed(self, tasks: Sequence[Task], why: str, sent: float, received: float) -> None:
        self._failures.append((list(tasks), why, sent, received))

    def offsets(self) -> dict[str, float]:
        """Seconds to subtract from each worker's clock to put it on the driver's."""
        best: dict[str, tuple[float, float]] = {}
        for _, timing, sent, received in self._batches:
            trip = (received - sent) - (timing.end - timing.start)
            offset = ((timing.start - sent) + (timing.end - received)) / 2
            if timing.worker not in best or trip < best[timing.worker][0]:
                best[timing.worker] = (trip, offset)
        return {worker: offset for worker, (_, offset) in best.items()}

    def peak_rss(self) -> dict[str, int]:
        """Each worker's peak resident memory, bytes: the highest any of its batches reported."""
        peaks: dict[str, int] = {}
        for _, timing, _, _ in self._batches:
            peaks[timing.worker] = max(peaks.get(timing.worker, 0), timing.peak_rss)
        return peaks

    def runs(self) -> list[TaskRun]:
        """Every task run, successes and failures, by start time; a task retried after a failure is listed
        once per attempt."""
        offsets, zero = self.offsets(), self.started
        found: list[TaskRun] = []
        for tasks, timing, sent, _ in self._batches:
            offset = offsets.get(timing.worker, 0.0)
            for task, (start, end, steps) in zip(tasks, timing.tasks):
                run = TaskRun(task.key, task.label, task.chunk, task.source, timing.worker, timing.lane, start, end,
                              steps, queued=start - offset - sent)
                found.append(run.moved(offset + zero))
        for tasks, why, sent, received in self._failures:
            found += [TaskRun(t.key, t.label, t.chunk, t.source, "", 0, sent - zero, received - zero, failed=why)
                      for t in tasks]
        found.sort(key=lambda r: (r.start, r.key))
        attempts: dict[str, int] = {}
        numbered = []
        for run in found:
            attempts[run.key] = attempts.get(run.key, 0) + 1
            numbered.append(replace(run, attempt=attempts[run.key]))
        return numbered

    @property
    def seconds(self) -> float:
        return (self.ended or time.time()) - self.started


@contextlib.contextmanager
def recording() -> Iterator[Timeline]:
    """A new timeline, current for the block (the shared scheduler records into it); inside another
    `recording()`, that one (so a caller that writes a report after a failed run has it)."""
    existing = _current.get()
    if existing is not None:
        yield existing
        return
    timeline = Timeline()
    token = _current.set(timeline)
    try:
        yield timeline
    finally:
        timeline.ended = time.time()
        _current.reset(token)


def current() -> Timeline | None:
    return _current.get()
