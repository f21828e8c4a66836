"""The scheduler every local engine shares: a dependency-driven loop over `Executor.submit`.

State: `waiting` (tasks with unfinished dependencies), a ready heap, the futures in flight, and the
results not yet consumed. A task is submitted once all its dependencies have results; its `Ref`
arguments are replaced by those results. At most `max_in_flight` tasks run at once, and ready combines
go before new chunks, so partials are merged as soon as possible and memory stays bounded however many
chunks there are. A result is dropped as soon as its last dependent has been submitted (in-flight tasks
keep their inputs, so a task whose worker died can be resubmitted). When a task fails, queued tasks are
cancelled and running ones awaited before the error propagates.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from typing import Any

from pipeline.errors import PipelineError, StageError
from pipeline.plan import Plan, Ref, Task


Submit = Callable[[Task, list[Any]], Future]
Recover = Callable[[BaseException], bool]


def run_plan(
    plan: Plan,
    submit: Submit,
    max_in_flight: int,
    on_done: Callable[[Task], None] | None = None,
    recover: Recover | None = None,
    retries: int = 0,
) -> Any:
    """Run `plan` with `submit(task, dependency_results) -> Future`; return the output's value.

    A task whose worker was lost is resubmitted (up to `retries` times) when `recover(error)` says the
    engine has replaced what broke; any other failure stops the run."""
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
    in_flight: dict[Future, tuple[str, list[Any]]] = {}
    attempts: dict[str, int] = {}
    try:
        while ready or in_flight:
            while ready and len(in_flight) < max_in_flight:
                key = heapq.heappop(ready)[2]
                task = plan.tasks[key]
                deps = [results[dep] for dep in task.deps]
                in_flight[submit(task, deps)] = (key, deps)
                for dep in task.deps:
                    unsubmitted_dependents[dep] -= 1
                    if not unsubmitted_dependents[dep]:
                        del results[dep]
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            lost: list[tuple[str, list[Any]]] = []
            for future in sorted(done, key=lambda f: order[in_flight[f][0]]):
                key, deps = in_flight.pop(future)
                try:
                    results[key] = future.result()
                except BaseException as exc:
                    if recover is None or not recover(exc):
                        if isinstance(exc, StageError):
                            exc.attempts = attempts.get(key, 0) + 1
                        raise
                    attempts[key] = attempts.get(key, 0) + 1
                    if attempts[key] > retries:
                        raise _lost(plan.tasks[key], attempts[key], exc) from None
                    lost.append((key, deps))
                    continue
                if on_done:
                    on_done(plan.tasks[key])
                for user in dependents[key]:
                    waiting[user].discard(key)
                    if not waiting[user]:
                        heapq.heappush(ready, (False, order[user], user))
            for key, deps in lost:  # after every lost future is seen, so the engine recovers once
                in_flight[submit(plan.tasks[key], deps)] = (key, deps)
    finally:
        # On failure, nothing may keep writing after we return: the caller removes the staging folder.
        for future in in_flight:
            future.cancel()
        wait(in_flight)
    return results[plan.output]


def _lost(task: Task, attempts: int, exc: BaseException) -> PipelineError:
    where = f"{task.label}" + (f" on chunk {task.chunk}" if task.chunk is not None else "")
    if task.source:
        where += f" (input {task.source})"
    return PipelineError(f"a worker process died running {where}, {attempts} times; giving up ({exc})")


def call(task: Task, dep_values: list[Any]) -> Any:
    """Run a task in this process, its `Ref` arguments replaced by the dependencies' results."""
    values = iter(dep_values)
    return task.fn(*(next(values) if isinstance(a, Ref) else a for a in task.args))


class InlineExecutor(Executor):
    """Runs each task at submit time in the calling thread: plain tracebacks, pdb works."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(exc)
        return future
