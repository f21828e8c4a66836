"""Per-task overhead: thousands of tiny tasks, each doing nothing.

Three figures for each of our engines, all as (time with `tasks` tasks − time with one) / `tasks`:
- no-op tasks (`per_task_us`, the one the target uses): a plan of `tasks` calls of a no-op function and
  one task gathering them, run by the engine — the same work the raw anchors below do, so the numbers
  compare the engines' own dispatch;
- tiny in-memory chunks (`memory_chunk_us`): a no-op stage over a frame cut into `tasks` one-row chunks
  (`run_frame`); adds shipping a one-row DataFrame to a worker and back per chunk (pandas pickling);
- tiny file chunks (`file_chunk_us`): one file of `tasks` row groups of 10 rows, one chunk per row group,
  through a no-op stage into a directory of parts; adds a row-group read, a part write and a checkpoint per
  chunk. The sync engine's figure is that in-process work alone; what an engine adds beyond it split
  perfectly over its workers is in `dispatch_per_chunk_us` (`engine_overheads`).

Raw anchors: `tasks` calls of a no-op function, the pool already started and warmed, in each one's idiom.
All numbers are wall-clock microseconds per task with `workers` workers.
"""

from __future__ import annotations

import os
import statistics
from typing import Any

import pandas as pd

from bench.spec import RunSpec
from bench.sys_ours import start_dask, start_ray
from bench.timer import Timer, timed


def noop(x: Any) -> Any:
    return x


def noop_stage(df: pd.DataFrame) -> pd.DataFrame:
    return df


def noop_plan(tasks: int):  # noqa: ANN201 - pipeline.plan.Plan, imported lazily
    """`tasks` no-op calls and one task that depends on them all. Builtins, so every worker can load them."""
    from pipeline.plan import Plan, Ref, Task

    graph = {f"noop-{i}": Task(f"noop-{i}", abs, (i,), "noop", i) for i in range(tasks)}
    graph["gather"] = Task("gather", max, (-1, *(Ref(key) for key in graph)), "gather")
    return Plan(graph, "gather")


def _per_task_of(work, tasks: int) -> float:  # noqa: ANN001 - work(n) runs n tiny tasks
    """Marginal µs per task: `tasks` tasks against one, the one-task time a median of three."""
    one = statistics.median(timed(work, 1) for _ in range(3))
    return (timed(work, tasks) - one) / tasks * 1e6


def make_tiny_file(path: str, source_file: str, tasks: int, rows_per_group: int = 10) -> None:
    """`tasks` row groups of `rows_per_group` taxi rows, cached by name."""
    import pyarrow.parquet as pq

    if os.path.exists(path):
        return
    table = pq.read_table(source_file).slice(0, tasks * rows_per_group)
    if table.num_rows < tasks * rows_per_group:
        raise ValueError(f"{source_file} has fewer than {tasks * rows_per_group} rows")
    tmp = f"{path}.tmp-{os.getpid()}"
    pq.write_table(table, tmp, row_group_size=rows_per_group)
    os.replace(tmp, path)


def ours(engine: str):  # noqa: ANN201 - a system function
    """The overhead run for one of our engines."""

    def system(spec: RunSpec, t: Timer) -> None:
        with t.phase("import"):
            from pipeline import Pipeline
            from pipeline.engines import get_engine
            from pipeline.io import FileSource
        pipeline = Pipeline().then(noop_stage)
        one = FileSource(spec.tiny_file, chunk_rows=10**12)
        many = FileSource(spec.tiny_file, chunk_rows=10)
        runs = iter(range(10**6))

        def run(source: FileSource, engine: object) -> float:
            return timed(pipeline.run, source, spec.out(f"parts-{next(runs)}"), engine=engine, workers=spec.workers)

        baseline = statistics.median(run(one, "sync") for _ in range(3))
        cluster = client = None
        with t.phase("startup"):
            if engine == "dask":
                cluster, client = start_dask(spec.workers)
                built = get_engine("dask", workers=spec.workers, client=client)
            else:
                if engine == "ray":
                    start_ray(spec.workers)
                built = get_engine(engine, workers=spec.workers)
            first = run(one, built)  # starts the workers; later runs find them warm
        warm = statistics.median(run(one, built) for _ in range(3))
        t.record("worker_startup_s", first - warm)
        try:
            with t.phase("job"):
                run(many, built)
            t.record("per_task_us", _per_task_of(lambda n: built.run(noop_plan(n)), spec.tasks))
            frame = pd.DataFrame({"x": range(spec.tasks)})
            t.record("memory_chunk_us", _per_task_of(
                lambda n: pipeline.run_frame(frame.head(n), chunks=n, engine=built), spec.tasks))
        finally:
            with t.phase("teardown"):
                built.close()
                if client is not None:
                    client.close()
                    cluster.close()
                if engine == "ray":
                    import ray

                    ray.shutdown()
        t.record("baseline_one_chunk_s", baseline)
        t.record("file_chunk_us", (t.phases["job"] - baseline) / spec.tasks * 1e6)
        t.record("parallel", 1 if engine == "sync" else spec.workers)

    system.__name__ = f"overhead_ours_{engine}"
    return system


def engine_overheads(overhead: dict[str, dict]) -> None:
    """Add to each of our engines' medians: the in-process cost per file chunk (the sync engine's) and what
    the engine adds beyond that cost split perfectly over its workers."""
    in_process = overhead.get("overhead-ours-sync", {}).get("metrics", {}).get("file_chunk_us")
    for label, row in overhead.items():
        m = row["metrics"]
        if in_process is None or "file_chunk_us" not in m or not label.startswith("overhead-ours-"):
            continue
        m["sync_per_chunk_us"] = in_process
        m["dispatch_per_chunk_us"] = m["file_chunk_us"] - in_process / m.get("parallel", 1)


def _per_task(t: Timer, n: int, seconds: float, name: str = "per_task_us") -> None:
    t.record(name, seconds / n * 1e6)
    if "startup" in t.phases:
        t.record("worker_startup_s", t.phases["startup"])


def raw_pool(spec: RunSpec, t: Timer) -> None:
    """`multiprocessing.Pool.map`, default chunking (the idiom) and chunksize=1 (one message per task)."""
    import multiprocessing

    n = spec.tasks
    with t.phase("startup"):
        pool = multiprocessing.Pool(spec.workers)
        pool.map(noop, range(spec.workers * 4))
    with t.phase("job"):
        pool.map(noop, range(n))
    _per_task(t, n, t.phases["job"])
    _per_task(t, n, timed(pool.map, noop, range(n), chunksize=1), "per_task_us_chunksize1")
    with t.phase("teardown"):
        pool.close()
        pool.join()


def raw_executor(spec: RunSpec, t: Timer) -> None:
    """`ProcessPoolExecutor.submit`, one future per task."""
    from concurrent.futures import ProcessPoolExecutor

    n = spec.tasks
    with t.phase("startup"):
        executor = ProcessPoolExecutor(spec.workers)
        [f.result() for f in [executor.submit(noop, i) for i in range(spec.workers * 4)]]
    with t.phase("job"):
        [f.result() for f in [executor.submit(noop, i) for i in range(n)]]
    _per_task(t, n, t.phases["job"])
    with t.phase("teardown"):
        executor.shutdown()


def raw_joblib(spec: RunSpec, t: Timer) -> None:
    """`joblib.Parallel` (loky, automatic batching)."""
    with t.phase("import"):
        from joblib import Parallel, delayed
    n = spec.tasks
    parallel = Parallel(n_jobs=spec.workers)
    with t.phase("startup"):
        parallel(delayed(noop)(i) for i in range(spec.workers * 4))
    with t.phase("job"):
        parallel(delayed(noop)(i) for i in range(n))
    _per_task(t, n, t.phases["job"])


def raw_dask_threads(spec: RunSpec, t: Timer) -> None:
    """`dask.delayed` tasks on the threaded scheduler."""
    with t.phase("import"):
        import dask
    n = spec.tasks
    with t.phase("job"):
        dask.compute(*[dask.delayed(noop)(i) for i in range(n)], scheduler="threads", num_workers=spec.workers)
    _per_task(t, n, t.phases["job"])


def raw_dask_distributed(spec: RunSpec, t: Timer) -> None:
    """`Client.map` on the LocalCluster every Dask run uses."""
    n = spec.tasks
    with t.phase("startup"):
        cluster, client = start_dask(spec.workers)
        client.gather(client.map(noop, range(spec.workers * 4), pure=False))
    with t.phase("job"):
        client.gather(client.map(noop, range(n), pure=False))
    _per_task(t, n, t.phases["job"])
    with t.phase("teardown"):
        client.close()
        cluster.close()


def raw_ray(spec: RunSpec, t: Timer) -> None:
    """Ray remote functions, `ray.get` of them all."""
    with t.phase("import"):
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        import ray
    n = spec.tasks
    with t.phase("startup"):
        start_ray(spec.workers)
        remote = ray.remote(noop)
        ray.get([remote.remote(i) for i in range(spec.workers * 4)])
    with t.phase("job"):
        ray.get([remote.remote(i) for i in range(n)])
    _per_task(t, n, t.phases["job"])
    with t.phase("teardown"):
        ray.shutdown()
