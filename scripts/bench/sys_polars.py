"""Polars, lazy: scan_parquet → filter → with_columns → group_by().agg(), `workers` threads."""

from __future__ import annotations

import os

import pandas as pd

from bench import job
from bench.spec import RunSpec
from bench.timer import Timer


def lazy(spec: RunSpec, t: Timer) -> pd.DataFrame:
    with t.phase("import"):
        os.environ["POLARS_MAX_THREADS"] = str(spec.workers)  # read once, at import
        import polars as pl
    with t.phase("job"):
        col = pl.col
        minutes = (col("dropoff_at") - col("pickup_at")).dt.total_microseconds() / 60e6
        result = (
            pl.scan_parquet(spec.pattern)
            .select(job.COLUMNS)
            .filter(col("passenger_count").is_not_null() & (col("fare_amount") >= 0) & (col("trip_distance") > 0)
                    & (col("dropoff_at") >= col("pickup_at")) & (col("total_amount") >= 0))
            .with_columns(trip_minutes=minutes)
            .with_columns(mph=col("trip_distance") / (col("trip_minutes") / 60),
                          tip_pct=100 * col("tip_amount") / col("fare_amount"))
            .group_by(job.KEYS)
            .agg(trips=col("fare_amount").count(), mean_fare=col("fare_amount").mean(),
                 mean_tip_pct=col("tip_pct").mean(), total_amount=col("total_amount").sum(),
                 max_distance=col("trip_distance").max())
            .collect()
            .to_pandas()
        )
    return result
