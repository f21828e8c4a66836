"""The scheduler every local engine shares: a dependency-driven loop over `Executor.submit`.

State: `waiting` (tasks with unfinished dependencies), a ready heap, the futures in flight, and the
results not yet consumed. A task is submitted once all its dependencies have results; its `Ref`
arguments are replaced by those results. At most `max_in_flight` tasks run at once, and ready combines
go before new chunks, so partials are merged as soon as possible and memory stays bounded however many
chunks there are. A result is dropped as soon as its last dependent has been submitted. When a task
fails, queued tasks are cancelled and running ones awaited before the error propagates.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from typing import Any

from pipeline.plan import Plan, Ref, Task


Submit = Callable[[Task, list[Any]], Future]


def run_plan(plan: Plan, submit: Submit, max_in_flight: int, on_done: Callable[[Task], None] | None = None) -> Any:
    """Run `plan` with `submit(task, dependency_results) -> Future`; return the output's value."""
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
    in_flight: dict[Future, str] = {}
    try:
        while ready or in_flight:
            while ready and len(in_flight) < max_in_flight:
                key = heapq.heappop(ready)[2]
                task = plan.tasks[key]
                in_flight[submit(task, [results[dep] for dep in task.deps])] = key
                for dep in task.deps:
                    unsubmitted_dependents[dep] -= 1
                    if not unsubmitted_dependents[dep]:
                        del results[dep]
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: order[in_flight[f]]):
                key = in_flight.pop(future)
                results[key] = future.result()
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
