"""The scheduler the local engines and Ray share: a dependency-driven loop over `Executor.submit`.

State: `waiting` (tasks with unfinished dependencies), a ready heap, the batches in flight, and the
results not yet consumed. A task is submitted once all its dependencies have results; its `Ref`
arguments are replaced by those results. At most `max_in_flight` batches run at once, and ready combines
go before new chunks, so partials are merged as soon as possible and memory stays bounded however many
chunks there are. A result is dropped as soon as its last dependent has been submitted (in-flight tasks
keep their inputs, so a task whose worker died can be resubmitted). When a task fails, queued batches are
cancelled and running ones awaited before the error propagates.

A batch is one message to a worker carrying one or more tasks. Engines whose messages are costly (a pipe
round trip to another process) size batches with a `BatchSizer` so that each carries a few milliseconds of
work: long tasks still go one by one (load balance, bounded memory), thousands of tiny ones share messages.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from typing import Any

from pipeline.errors import PipelineError, StageError
from pipeline.plan import Plan, Ref, Task


Item = tuple[Task, list[Any]]  # a task and its dependencies' results
Submit = Callable[[list[Item]], Future]  # -> a future of (the tasks' results in order, seconds they took)
Recover = Callable[[BaseException], bool]


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

    A task whose worker was lost is resubmitted alone (up to `retries` times), so a task that kills its
    worker is found and named however it was batched, when `recover(error)` says the engine has replaced
    what broke; any other failure stops the run. With `inline`, tasks marked `in_driver` run in this
    process; an engine whose results are only handles to data elsewhere passes False."""
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
    attempts: dict[str, int] = {}
    sizer = sizer or BatchSizer(most=1)
    here = {key for key, task in plan.tasks.items() if inline and task.in_driver}  # run in this process

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

    def send(batch: list[tuple[str, list[Any]]]) -> None:
        items = [(plan.tasks[key], deps) for key, deps in batch]
        in_flight[InlineExecutor().submit(call_batch, items) if batch[0][0] in here else submit(items)] = batch

    try:
        while ready or in_flight:
            while ready and len(in_flight) < max_in_flight:
                send(take())
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            lost: list[tuple[str, list[Any]]] = []
            for future in sorted(done, key=lambda f: order[in_flight[f][0][0]]):
                batch = in_flight.pop(future)
                keys = [key for key, _ in batch]
                try:
                    values, seconds = future.result()
                except BaseException as exc:
                    if recover is None or not recover(exc):
                        if isinstance(exc, StageError):
                            exc.attempts = 1 + max(attempts.get(key, 0) for key in keys)
                        raise
                    for key, deps in batch:
                        attempts[key] = attempts.get(key, 0) + 1
                        if attempts[key] > retries:
                            raise lost_worker(plan.tasks[key], attempts[key], exc) from None
                        lost.append((key, deps))
                    continue
                if keys[0] not in here:
                    sizer.record(len(batch), seconds)
                for key, value in zip(keys, values):
                    results[key] = value
                    if on_done:
                        on_done(plan.tasks[key])
                    for user in dependents[key]:
                        waiting[user].discard(key)
                        if not waiting[user]:
                            heapq.heappush(ready, (False, order[user], user))
            for item in lost:  # after every lost batch is seen, so the engine recovers once
                send([item])
    finally:
        # On failure, nothing may keep writing after we return: the caller removes the staging folder.
        for future in in_flight:
            future.cancel()
        wait(in_flight)
    return results[plan.output]


def lost_worker(task: Task, attempts: int, exc: BaseException) -> PipelineError:
    """The error for a task whose worker kept dying: the task, its chunk and input, how many times."""
    where = f"{task.label}" + (f" on chunk {task.chunk}" if task.chunk is not None else "")
    if task.source:
        where += f" (input {task.source})"
    return PipelineError(f"a worker process died running {where}, {attempts} times; giving up ({exc})")


def call(task: Task, dep_values: list[Any]) -> Any:
    """Run a task in this process, its `Ref` arguments replaced by the dependencies' results."""
    values = iter(dep_values)
    return task.fn(*(next(values) if isinstance(a, Ref) else a for a in task.args))


def call_batch(items: list[Item]) -> tuple[list[Any], float]:
    """Run tasks in this process, in order: (their results, seconds taken)."""
    started = time.perf_counter()
    return [call(task, deps) for task, deps in items], time.perf_counter() - started


class InlineExecutor(Executor):
    """Runs each task at submit time in the calling thread: plain tracebacks, pdb works."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(exc)
        return future
