"""Every system the TPC-H suite measures: a name → a context manager that starts what the system needs
(the "startup" phase) and yields `query(number) -> DataFrame`; leaving it tears down ("teardown").

Each system runs all the queries asked of it in one fresh process, so a cluster's start-up is paid once per
system, as a user's session pays it, and never inside a query's time.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.timer import Timer

Query = Callable[[int], pd.DataFrame]


@dataclass(frozen=True)
class TpchSpec:
    data: str  # the folder of `{table}.parquet`
    workers: int
    scratch: str  # a private folder for this run: progress, answers
    queries: tuple[int, ...]


def _peer(module: str) -> Callable[[int, str], pd.DataFrame]:
    queries = importlib.import_module(f"bench.tpch_peers.{module}").QUERIES
    return lambda number, data: queries[number](data)


@contextlib.contextmanager
def ours_local(spec: TpchSpec, t: Timer, engine_name: str = "processes", stages: str = "pandas") -> Iterator[Query]:
    """This framework on a local engine with its per-chunk stages in the `stages` batch format, its workers
    started once for all the queries."""
    with t.phase("import"):
        from pipeline.engines import get_engine
        from tpch.queries import QUERIES, answer
    with t.phase("startup"):
        engine = get_engine(engine_name, workers=spec.workers)
        engine.__enter__()
    try:
        yield lambda n: answer(QUERIES[n], Path(spec.data), engine, stages=stages)
    finally:
        with t.phase("teardown"):
            engine.__exit__(None, None, None)


def ours_polars(spec: TpchSpec, t: Timer) -> contextlib.AbstractContextManager[Query]:
    """This framework on `processes` with Polars stages (`tpch.polars_stages`)."""
    return ours_local(spec, t, stages="polars")


@contextlib.contextmanager
def ours_dask(spec: TpchSpec, t: Timer) -> Iterator[Query]:
    """This framework on the same LocalCluster shape the Dask DataFrame anchor gets."""
    with t.phase("import"):
        from pipeline.engines import get_engine
        from tpch.queries import QUERIES, answer
    with _dask(spec, t) as client:
        engine = get_engine("dask", workers=spec.workers, client=client)
        yield lambda n: answer(QUERIES[n], Path(spec.data), engine)


@contextlib.contextmanager
def _dask(spec: TpchSpec, t: Timer) -> Iterator[object]:
    """The LocalCluster every Dask run gets (`bench.sys_ours.start_dask`), yielding its client."""
    from bench.sys_ours import start_dask

    with t.phase("startup"):
        cluster, client = start_dask(spec.workers)
    try:
        yield client
    finally:
        with t.phase("teardown"):
            client.close()
            cluster.close()


@contextlib.contextmanager
def ours_ray(spec: TpchSpec, t: Timer) -> Iterator[Query]:
    """This framework on the same private Ray the Ray Data anchor gets."""
    with _ray(spec, t):
        from tpch.queries import QUERIES, answer

        yield lambda n: answer(QUERIES[n], Path(spec.data), "ray")


@contextlib.contextmanager
def _ray(spec: TpchSpec, t: Timer) -> Iterator[None]:
    with t.phase("import"):
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        import ray
        import ray.data

        from bench.sys_ours import start_ray
    with t.phase("startup"):
        start_ray(spec.workers)
        ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield
    finally:
        with t.phase("teardown"):
            ray.shutdown()


@contextlib.contextmanager
def duckdb(spec: TpchSpec, t: Timer) -> Iterator[Query]:
    """DuckDB running the official query text over views of the Parquet files, `workers` threads."""
    with t.phase("import"):
        from tpch.check import reference_connection
    with t.phase("startup"):
        con = reference_connection(Path(spec.data))
        con.execute(f"SET threads = {int(spec.workers)}")
    try:
        yield lambda n: con.execute(f"PRAGMA tpch({n})").df()
    finally:
        con.close()


@contextlib.contextmanager
def polars(spec: TpchSpec, t: Timer) -> Iterator[Query]:
    """Polars lazy queries, `workers` threads."""
    with t.phase("import"):
        os.environ["POLARS_MAX_THREADS"] = str(spec.workers)  # read once, at import
        run = _peer("lazy_polars")
    yield lambda n: run(n, spec.data)


@contextlib.contextmanager
def pandas_whole(spec: TpchSpec, t: Timer) -> Iterator[Query]:
    """Plain pandas over whole tables, one process."""
    with t.phase("import"):
        run = _peer("pandas_whole")
    yield lambda n: run(n, spec.data)


@contextlib.contextmanager
def dask_threads(spec: TpchSpec, t: Timer) -> Iterator[Query]:
    """Dask DataFrame on its threaded scheduler with `workers` threads."""
    with t.phase("import"):
        import dask

        run = _peer("dask_frame")
    with dask.config.set(scheduler="threads", num_workers=spec.workers):
        yield lambda n: run(n, spec.data)


@contextlib.contextmanager
def dask_distributed(spec: TpchSpec, t: Timer) -> Iterator[Query]:
    """Dask DataFrame on a LocalCluster, one single-threaded worker process per core."""
    with t.phase("import"):
        run = _peer("dask_frame")
    with _dask(spec, t):
        yield lambda n: run(n, spec.data)


@contextlib.contextmanager
def ray_data(spec: TpchSpec, t: Timer) -> Iterator[Query]:
    """Ray Data on a private Ray with `workers` CPUs."""
    with _ray(spec, t):
        run = _peer("ray_data")
        yield lambda n: run(n, spec.data)


FLOAT64 = "-float64"  # a label ending so runs over the copy of the data with decimals stored as float64

SYSTEMS: dict[str, Callable[[TpchSpec, Timer], contextlib.AbstractContextManager[Query]]] = {
    "ours-processes": ours_local,
    "ours-processes-polars": ours_polars,
    "ours-dask": ours_dask,
    "ours-ray": ours_ray,
    "duckdb": duckdb,
    "polars": polars,
    "pandas-whole": pandas_whole,
    "dask-threads": dask_threads,
    "dask-distributed": dask_distributed,
    "ray-data": ray_data,
}
# each target's two systems run one after the other: a machine whose speed drifts over a half-hour run (by
# 20-30% here) then skews their ratio least
DEFAULT_LABELS = ("ours-processes", "ours-processes" + FLOAT64, "duckdb", "ours-processes-polars", "polars",
                  "pandas-whole", "dask-threads",
                  "ours-dask", "dask-distributed", "ours-ray", "ray-data")


def system_of(label: str) -> str:
    """The system a label runs (`ours-processes-float64` runs `ours-processes`)."""
    return label.removesuffix(FLOAT64)
