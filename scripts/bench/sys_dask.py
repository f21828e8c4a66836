"""Dask DataFrame: the same pandas steps on a lazy frame, threaded scheduler or a LocalCluster."""

from __future__ import annotations

import pandas as pd

from bench import job
from bench.spec import RunSpec
from bench.sys_ours import start_dask
from bench.timer import Timer


def _query(spec: RunSpec):  # noqa: ANN202 - a lazy dask DataFrame
    import dask.dataframe as dd

    frame = job.clean_transform(dd.read_parquet(spec.data, columns=job.COLUMNS))
    return frame.groupby(job.KEYS, observed=True).agg(**job.named_aggs())


def threads(spec: RunSpec, t: Timer) -> pd.DataFrame:
    with t.phase("import"):
        import dask
        import dask.dataframe  # noqa: F401
    with t.phase("job"):
        with dask.config.set(scheduler="threads", num_workers=spec.workers):
            result = _query(spec).compute()
    return result


def distributed(spec: RunSpec, t: Timer) -> pd.DataFrame:
    with t.phase("import"):
        import dask.dataframe  # noqa: F401
        import distributed as _  # noqa: F401
    with t.phase("startup"):
        cluster, client = start_dask(spec.workers)
    try:
        with t.phase("job"):
            result = client.compute(_query(spec)).result()
        return result
    finally:
        with t.phase("teardown"):
            client.close()
            cluster.close()
