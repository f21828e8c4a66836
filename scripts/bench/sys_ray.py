"""Ray Data: read_parquet → map_batches(the pandas steps) → groupby().aggregate(), defaults otherwise."""

from __future__ import annotations

import os

import pandas as pd

from bench import job
from bench.spec import RunSpec
from bench.sys_ours import start_ray
from bench.timer import Timer


def data(spec: RunSpec, t: Timer) -> pd.DataFrame:
    with t.phase("import"):
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        import ray
        import ray.data
        from ray.data.aggregate import Count, Max, Mean, Sum
    with t.phase("startup"):
        start_ray(spec.workers)
        ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        with t.phase("job"):
            dataset = ray.data.read_parquet(os.path.abspath(spec.data), columns=job.COLUMNS)
            dataset = dataset.map_batches(job.clean_transform, batch_format="pandas", batch_size=None)
            result = dataset.groupby(job.KEYS).aggregate(
                Count("fare_amount", alias_name="trips"),
                Mean("fare_amount", alias_name="mean_fare"),
                Mean("tip_pct", alias_name="mean_tip_pct"),
                Sum("total_amount", alias_name="total_amount"),
                Max("trip_distance", alias_name="max_distance"),
            ).to_pandas()
        return result
    finally:
        with t.phase("teardown"):
            ray.shutdown()
