"""The scheduler every engine with workers shares: a dependency-driven loop over `Executor.submit`.

State: `waiting` (tasks with unfinished dependencies), a ready heap, the batches in flight, and the
results not yet consumed. A task is submitted once all its dependencies have results; its `Ref`
arguments are replaced by those results. At most `max_in_flight` batches run at once, and ready combines
go before new chunks, so partials are merged as soon as possible and memory stays bounded however many
chunks there are. A result is dropped as soon as its last dependent has been submitted (in-flight tasks
keep their inputs, so a task whose worker died can be resubmitted). When a task fails, queued batches are
cancelled and running ones awaited before the error propagates.

Blame for a lost worker is proven, never guessed. When a worker dies, the tasks it may have been running
become suspects: all that were in flight, unless the engine says exactly which batch its worker ran (`Lost`).
Suspects then run in isolation, one at a time with nothing else in flight, so a worker that dies now was
running that task alone. Only such a death costs a task an attempt; one that dies alone more than `retries`
times stops the run, named. An innocent task caught in flight with a killer runs again alone and succeeds.

A batch is one message to a worker carrying one or more tasks. Engines whose messages are costly (a pipe
round trip to another process) size batches with a `BatchSizer` so that each carries a few milliseconds of
work: long tasks still go one by one (load balance, bounded memory), thousands of tiny ones share messages.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass
from typing import Any

from pipeline import trace
from pipeline.engines.memory import format_size
from pipeline.errors import PipelineError, StageError
from pipeline.plan import Plan, Ref, Task
from pipeline.timeline import current as current_timeline


Item = tuple[Task, list[Any]]  # a task and its dependencies' results
Submit = Callable[[list[Item]], Future]  # -> a future of (the tasks' results in order, their trace.Timing)


@dataclass(frozen=True)
class Lost:
    """What an engine knows of a worker lost while running a batch."""

    exact: bool = False  # the engine knows that worker ran this batch and nothing else (else: all in flight suspect)
    limit: int | None = None  # the worker was stopped for going over this memory limit, in bytes


Recover = Callable[[BaseException], Lost | None]  # None: not a lost worker, the error is final


class BatchSizer:
    """How many ready tasks to put in one message: enough for about `target` seconds of work, judged from
    the tasks finished so far (a moving average), and one until any has finished."""

    def __init__(self, target: float = 0.005, most: int = 256) -> None:
        self.target, self.most = target, most
        self.per_task: float | None = None

    def record(self, tasks: int, seconds: float) -> None:
        each = seconds / tasks
        self.per_task = each if self.per_task is None else 0.7 * self.per_task + 0.3 * each

    def size(self) -> int:
        if self.per_task is None:
            return 1
        return max(1, min(self.most, int(self.target / max(self.per_task, 1e-7))))


def run_plan(
    plan: Plan,
    submit: Submit,
    max_in_flight: int,
    on_done: Callable[[Task], None] | None = None,
    recover: Recover | None = None,
    retries: int = 0,
    sizer: BatchSizer | None = None,
    inline: bool = True,
) -> Any:
    """Run `plan` with `submit([(task, dependency_results), ...]) -> Future`; return the output's value.

    When `recover(error)` says a batch's worker was lost (and the engine has replaced it), its tasks become
    suspects and run again in isolation; a task that kills its worker while alone more than `retries` times
    stops the run, named. Any other failure stops the run at once. With `inline`, tasks marked `in_driver`
    run in this process; an engine whose results are only handles to data elsewhere passes False."""
    order = {key: i for i, key in enumerate(plan.tasks)}
    waiting = {key: set(task.deps) for key, task in plan.tasks.items()}
    dependents: dict[str, list[str]] = {key: [] for key in plan.tasks}
    for key, task in plan.tasks.items():
        for dep in task.deps:
            dependents[dep].append(key)
    unsubmitted_dependents = {key: len(users) for key, users in dependents.items()}
    ready = [(bool(not task.deps), order[key], key) for key, task in plan.tasks.items() if not task.deps]
    heapq.heapify(ready)
    results: dict[str, Any] = {}
    in_flight: dict[Future, list[tuple[str, list[Any]]]] = {}
    alone: set[Future] = set()  # sent with nothing else in flight, and nothing sent while it runs
    suspects: deque[tuple[str, list[Any]]] = deque()
    attempts: dict[str, int] = {}
    sizer = sizer or BatchSizer(most=1)
    here = {key for key, task in plan.tasks.items() if inline and task.in_driver}  # run in this process
    timeline = current_timeline()
    if timeline is not None:
        timeline.plan = plan
    sent: dict[Future, float] = {}

    def take() -> list[tuple[str, list[Any]]]:
        """The next batch off the ready heap: one task to run here, or up to the sizer's count for workers."""
        batch: list[tuple[str, list[Any]]] = []
        while ready and len(batch) < sizer.size():
            if batch and ready[0][2] in here:
                break
            key = heapq.heappop(ready)[2]
            task = plan.tasks[key]
            batch.append((key, [results[dep] for dep in task.deps]))
            for dep in task.deps:
                unsubmitted_dependents[dep] -= 1
                if not unsubmitted_dependents[dep]:
                    del results[dep]
            if key in here:
                break
        return batch

    def send(batch: list[tuple[str, list[Any]]]) -> Future:
        items = [(plan.tasks[key], deps) for key, deps in batch]
        started = time.time()
        future = InlineExecutor().submit(call_batch, items) if batch[0][0] in here else submit(items)
        in_flight[future] = batch
        sent[future] = started
        return future

    def lost(batch: list[tuple[str, list[Any]]], isolated: bool, exc: BaseException, started: float) -> None:
        """A batch whose worker died: charge its task if it was proven to be the one running, then retry."""
        what = recover(exc) if recover is not None else None
        if timeline is not None:
            why = (str(exc).splitlines() or [type(exc).__name__])[0] if what is None else "its worker died"
            timeline.failed([plan.tasks[key] for key, _ in batch], why, started, time.time())
        if what is None:
            if isinstance(exc, StageError):
                exc.attempts = 1 + max(attempts.get(key, 0) for key, _ in batch)
            raise exc
        if len(batch) == 1 and (isolated or what.exact):
            key = batch[0][0]
            attempts[key] = attempts.get(key, 0) + 1
            if attempts[key] > retries:
                raise lost_worker(plan.tasks[key], attempts[key], what.limit) from None
        suspects.extend(batch)

    try:
        while ready or in_flight or suspects:
            if suspects:  # isolation: one suspect at a time, once everything else has come back
                if not in_flight:
                    alone.add(send([suspects.popleft()]))
            else:
                while ready and len(in_flight) < max_in_flight:
                    send(take())
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: order[in_flight[f][0][0]]):
                batch = in_flight.pop(future)
                started = sent.pop(future)
                isolated = future in alone
                alone.discard(future)
                keys = [key for key, _ in batch]
                try:
                    values, timing = future.result()
                except BaseException as exc:
                    lost(batch, isolated, exc, started)
                    continue
                if timeline is not None:
                    timeline.finished([plan.tasks[key] for key in keys], timing, started, time.time())
                if keys[0] not in here and not isolated:
                    sizer.record(len(batch), timing.seconds)
                for key, value in zip(keys, values):
                    results[key] = value
                    if on_done:
                        on_done(plan.tasks[key])
                    for user in dependents[key]:
                        waiting[user].discard(key)
                        if not waiting[user]:
                            heapq.heappush(ready, (False, order[user], user))
    finally:
        # On failure, nothing may keep writing after we return: the caller removes the staging folder.
        for future in in_flight:
            future.cancel()
        wait(in_flight)
    return results[plan.output]


def lost_worker(task: Task, attempts: int, limit: int | None = None) -> PipelineError:
    """The error for a task that killed its worker, alone, every time it ran: the task, its chunk and input,
    how many times, and the memory limit when that is what stopped the worker. The same words on every
    engine: what each engine says of a dead worker is its own and rarely more than that."""
    where = f"{task.label}" + (f" on chunk {task.chunk}" if task.chunk is not None else "")
    if task.source:
        where += f" (input {task.source})"
    if limit is not None:
        return PipelineError(
            f"{where} ran out of memory: worker limit {format_size(limit)}; "
            f"its worker went over it {_times(attempts)}, running it alone; giving up"
        )
    return PipelineError(f"a worker process died running {where}, {_times(attempts)}, running it alone; giving up")


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def call(task: Task, dep_values: list[Any]) -> Any:
    """Run a task in this process, its `Ref` arguments replaced by the dependencies' results."""
    values = iter(dep_values)
    return trace.task(task.fn, *(next(values) if isinstance(a, Ref) else a for a in task.args))


def call_batch(items: list[Item]) -> tuple[list[Any], trace.Timing]:
    """Run tasks in this process, in order: (their results, the batch's timing)."""
    return trace.run_batch(lambda item: call(*item), items)


class InlineExecutor(Executor):
    """Runs each task at submit time in the calling thread: plain tracebacks, pdb works."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(exc)
        return future
