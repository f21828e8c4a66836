"""The joblib engine: runs a plan through any registered joblib backend (loky by default; threading,
multiprocessing, or one a library registers, e.g. a cluster's).

joblib has no submit-with-dependencies, so the plan runs level by level: every task of a level depends
only on earlier levels, and each level is one `joblib.Parallel` call. Results cross the driver between
levels, which is acceptable here because they are only receipts and partial aggregates, and each is
dropped once the last level that reads it has run.

With the default backend, loky, the plan does not go level by level: loky's reusable executor is a
`concurrent.futures` executor, so the scheduler every engine shares drives it as it drives `processes`
(a task goes out once its dependencies are done, tiny tasks share a message, and a worker that dies makes
the tasks in flight suspects, run again alone, `retries` counting only deaths while alone). Other backends
run level by level and have no such recovery: threads cannot lose a worker, and a lost `multiprocessing`
worker is that backend's own to report.

On Ctrl-C, which loky's workers ignore as `processes` workers do, the driver tells them to kill the external
programs their tasks started (`pipeline.children`; on the threading backend it kills its own), and the
interrupted pool is shut down.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import joblib
from joblib.externals.loky import ProcessPoolExecutor, get_reusable_executor

from pipeline import children
from pipeline.engines import check_options, default_workers
from pipeline.engines._payload import Packer, run_packed
from pipeline.engines._schedule import BatchSizer, Lost, run_plan
from pipeline.engines.local import (DEFAULT_RETRIES, IN_FLIGHT_PER_WORKER, WORKER_INTERRUPT,
                                    children_killed_on_interrupt, interrupt_processes, packed_submitter)
from pipeline.engines.memory import parse_size
from pipeline.errors import ConfigError
from pipeline.plan import Plan, Task

OPTIONS = {"backend", "retries", "worker_memory"}


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


def _worker_init() -> None:
    """In each loky worker: ignore Ctrl-C; kill its programs when the driver says the run is interrupted."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    children.on_signal(WORKER_INTERRUPT)


class JoblibEngine:
    """Runs plans on loky's executor, or with `joblib.Parallel`, one call per dependency level."""

    name = "joblib"

    def __init__(self, workers: int | None = None, address: str | None = None, **options: Any) -> None:
        check_options("joblib", options, OPTIONS)
        if address is not None:
            raise ConfigError("engine.address: the joblib engine takes no address; pick a backend instead")
        self.workers = default_workers(workers)
        self.backend = str(options.get("backend", "loky"))
        self.retries = int(options.get("retries", DEFAULT_RETRIES))
        if options.get("worker_memory") is not None:  # accepted so one config runs on any engine; not enforced
            parse_size(options["worker_memory"])
        # A typo should fail when the engine is built, not after the first chunk.
        registered = {*joblib.parallel.BACKENDS, *joblib.parallel.EXTERNAL_BACKENDS}
        if self.backend not in registered:
            raise ConfigError(
                f"engine.backend: unknown joblib backend {self.backend!r}; registered: {', '.join(sorted(registered))}"
            )
        self._pool: ProcessPoolExecutor | None = None  # loky's, as last handed out

    def run(self, plan: Plan, on_done: Callable[[Task], None] | None = None) -> Any:
        if self.backend == "loky":
            return self._run_loky(plan, on_done)
        with children_killed_on_interrupt():  # the threading backend's tasks run in this process
            return self._run_levels(plan, on_done)

    def _run_loky(self, plan: Plan, on_done: Callable[[Task], None] | None = None) -> Any:
        recover = lambda error: Lost() if isinstance(error, BrokenProcessPool) else None  # noqa: E731
        in_flight = self.workers * IN_FLIGHT_PER_WORKER
        try:
            with children_killed_on_interrupt(lambda: interrupt_processes(getattr(self._pool, "_processes", ()))):
                return run_plan(plan, packed_submitter(self._loky), in_flight, on_done, recover, self.retries,
                                BatchSizer())
        except KeyboardInterrupt:  # its workers now kill every program they start: a later run gets new ones
            if self._pool is not None:
                self._pool.shutdown(wait=True, kill_workers=True)
            raise

    def _loky(self) -> ProcessPoolExecutor:
        """loky's reusable executor (a broken one is replaced), its workers set to kill their programs when
        the run is interrupted and to ignore Ctrl-C, which reaches the whole process group: only the driver
        acts on it. (Called for every batch sent, so the driver's own Ctrl-C handler is never swapped out
        here: a Ctrl-C arriving then would be lost.)"""
        self._pool = get_reusable_executor(max_workers=self.workers, initializer=_worker_init)
        return self._pool

    def _run_levels(self, plan: Plan, on_done: Callable[[Task], None] | None = None) -> Any:
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
