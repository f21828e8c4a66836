"""The joblib engine: runs a plan through any registered joblib backend (loky by default; threading,
multiprocessing, or one a library registers, e.g. a cluster's).

joblib has no submit-with-dependencies, so the plan runs level by level: every task of a level depends
only on earlier levels, and each level is one `joblib.Parallel` call. Results cross the driver between
levels, which is acceptable here because they are only receipts and partial aggregates, and each is
dropped once the last level that reads it has run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import joblib

from pipeline.engines import check_options, default_workers
from pipeline.engines._payload import Packer, run_packed
from pipeline.errors import ConfigError
from pipeline.plan import Plan, Task

OPTIONS = {"backend"}


def levels(plan: Plan) -> list[list[Task]]:
    """Tasks grouped by dependency depth, in plan order within a level."""
    depth: dict[str, int] = {}
    grouped: list[list[Task]] = []
    for task in plan:
        level = 1 + max((depth[d] for d in task.deps), default=-1)
        depth[task.key] = level
        if level == len(grouped):
            grouped.append([])
        grouped[level].append(task)
    return grouped


class JoblibEngine:
    """Runs plans with `joblib.Parallel`, one call per dependency level."""

    name = "joblib"

    def __init__(self, workers: int | None = None, address: str | None = None, **options: Any) -> None:
        check_options("joblib", options, OPTIONS)
        if address is not None:
            raise ConfigError("engine.address: the joblib engine takes no address; pick a backend instead")
        self.workers = default_workers(workers)
        self.backend = str(options.get("backend", "loky"))
        # A typo should fail when the engine is built, not after the first chunk.
        registered = {*joblib.parallel.BACKENDS, *joblib.parallel.EXTERNAL_BACKENDS}
        if self.backend not in registered:
            raise ConfigError(
                f"engine.backend: unknown joblib backend {self.backend!r}; registered: {', '.join(sorted(registered))}"
            )

    def run(self, plan: Plan, on_done: Callable[[Task], None] | None = None) -> Any:
        last_use = {key: -1 for key in plan.tasks}
        grouped = levels(plan)
        for number, level in enumerate(grouped):
            for task in level:
                for dep in task.deps:
                    last_use[dep] = number
        results: dict[str, Any] = {}
        packer = Packer()  # the plan's shared objects (source, stages, sink) are pickled once per run
        with self._parallel() as parallel:
            for number, level in enumerate(grouped):
                calls = (joblib.delayed(run_packed)(packer.pack(t), *(results[d] for d in t.deps)) for t in level)
                for task, value in zip(level, parallel(calls)):
                    results[task.key] = value
                    if on_done:
                        on_done(task)
                for key in [k for k in results if last_use[k] == number]:
                    del results[key]
        return results[plan.output]

    def _parallel(self) -> joblib.Parallel:
        """Results as they come where the backend can stream them (multiprocessing cannot)."""
        try:
            return joblib.Parallel(n_jobs=self.workers, backend=self.backend, return_as="generator")
        except ValueError:
            return joblib.Parallel(n_jobs=self.workers, backend=self.backend, return_as="list")

    def close(self) -> None:
        """Nothing to stop: loky keeps its reusable pool of workers for the process's lifetime."""

    def __enter__(self) -> "JoblibEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
