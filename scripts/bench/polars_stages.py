"""The taxi job's clean and transform as Polars stages: what a user who thinks in Polars writes, eager (each
stage gets a DataFrame) and lazy (each stage extends a query over the chunk's file, which Polars runs once,
at the group-by). The group-by is the framework's own `aggregate`, which reduces Polars chunks with Polars."""

from __future__ import annotations

from typing import TypeVar

import polars as pl

from pipeline.stage import declare

col = pl.col
Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


def _clean(df: Frame) -> Frame:
    return df.filter(col("passenger_count").is_not_null() & (col("fare_amount") >= 0) & (col("trip_distance") > 0)
                     & (col("dropoff_at") >= col("pickup_at")) & (col("total_amount") >= 0))


def _transform(df: Frame) -> Frame:
    minutes = (col("dropoff_at") - col("pickup_at")).dt.total_microseconds() / 60e6
    return df.with_columns(trip_minutes=minutes).with_columns(
        mph=col("trip_distance") / (col("trip_minutes") / 60), tip_pct=100 * col("tip_amount") / col("fare_amount"))


@declare(batch="polars")
def clean(df: pl.DataFrame) -> pl.DataFrame:
    return _clean(df)


@declare(batch="polars")
def transform(df: pl.DataFrame) -> pl.DataFrame:
    return _transform(df)


@declare(batch="polars-lazy")
def clean_lazy(df: pl.LazyFrame) -> pl.LazyFrame:
    return _clean(df)


@declare(batch="polars-lazy")
def transform_lazy(df: pl.LazyFrame) -> pl.LazyFrame:
    return _transform(df)
