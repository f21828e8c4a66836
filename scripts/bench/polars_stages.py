"""The taxi job's clean and transform as Polars stages: what a user who thinks in Polars writes. The group-by
is the framework's own `aggregate`, which reduces Polars chunks with Polars."""

from __future__ import annotations

import polars as pl

from pipeline.stage import declare

col = pl.col


@declare(batch="polars")
def clean(df: pl.DataFrame) -> pl.DataFrame:
    return df.filter(col("passenger_count").is_not_null() & (col("fare_amount") >= 0) & (col("trip_distance") > 0)
                     & (col("dropoff_at") >= col("pickup_at")) & (col("total_amount") >= 0))


@declare(batch="polars")
def transform(df: pl.DataFrame) -> pl.DataFrame:
    minutes = (col("dropoff_at") - col("pickup_at")).dt.total_microseconds() / 60e6
    return df.with_columns(trip_minutes=minutes).with_columns(
        mph=col("trip_distance") / (col("trip_minutes") / 60), tip_pct=100 * col("tip_amount") / col("fare_amount"))
