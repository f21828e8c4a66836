"""Every measurable system by name, imported only in the process that runs it."""

from __future__ import annotations

import importlib
from collections.abc import Callable

# name -> "module:attribute" or "module:factory(argument)"
JOB_SYSTEMS: dict[str, str] = {
    "ours-sync": "bench.sys_ours:local(sync)",
    "ours-threads": "bench.sys_ours:local(threads)",
    "ours-processes": "bench.sys_ours:local(processes)",
    "ours-joblib": "bench.sys_ours:local(joblib)",
    "ours-dask": "bench.sys_ours:dask",
    "ours-ray": "bench.sys_ours:ray",
    "ours-polars-stages": "bench.sys_ours:polars_stages(processes)",
    "ours-polars-lazy-threads": "bench.sys_ours:polars_stages(threads-lazy)",
    "pool": "bench.sys_pool:pool",
    "pandas-whole": "bench.sys_pandas:whole",
    "pandas-files": "bench.sys_pandas:files",
    "dask-threads": "bench.sys_dask:threads",
    "dask-distributed": "bench.sys_dask:distributed",
    "ray-data": "bench.sys_ray:data",
    "polars": "bench.sys_polars:lazy",
    "duckdb": "bench.sys_duckdb:sql",
}
OURS = "ours-processes"
REFERENCE = "pandas-whole"  # the answer every other system must match

OVERHEAD_SYSTEMS: dict[str, str] = {
    **{f"overhead-ours-{e}": f"bench.overhead:ours({e})" for e in ("sync", "threads", "processes", "joblib",
                                                                    "dask", "ray")},
    "overhead-raw-pool": "bench.overhead:raw_pool",
    "overhead-raw-executor": "bench.overhead:raw_executor",
    "overhead-raw-joblib": "bench.overhead:raw_joblib",
    "overhead-raw-dask-threads": "bench.overhead:raw_dask_threads",
    "overhead-raw-dask-distributed": "bench.overhead:raw_dask_distributed",
    "overhead-raw-ray": "bench.overhead:raw_ray",
}
ALL = {**JOB_SYSTEMS, **OVERHEAD_SYSTEMS}


def resolve(name: str) -> Callable:
    """The system function for `name` (`fn(spec, timer) -> DataFrame | None`)."""
    target = ALL[name]
    module, _, attribute = target.partition(":")
    found = importlib.import_module(module)
    if attribute.endswith(")"):
        factory, _, argument = attribute[:-1].partition("(")
        return getattr(found, factory)(argument)
    return getattr(found, attribute)
