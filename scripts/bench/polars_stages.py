"""The taxi job's clean and transform as Polars stages: what a user who thinks in Polars writes, eager (each
stage gets a DataFrame) and lazy (each stage extends a query over the chunk's files, which Polars runs once,
at the group-by). The group-by is the framework's own `aggregate`, which reduces Polars chunks with Polars."""

from __future__ import annotations

from collections.abc import Callable
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


def _declared(fn: Callable[[Frame], Frame], batch: str, name: str) -> Callable[[Frame], Frame]:
    """`fn` as a stage of one batch format, under `name` (the format is an attribute of the function object)."""
    def stage(df: Frame) -> Frame:
        return fn(df)

    stage.__name__ = stage.__qualname__ = name
    return declare(batch=batch)(stage)


clean = _declared(_clean, "polars", "clean")
transform = _declared(_transform, "polars", "transform")
clean_lazy = _declared(_clean, "polars-lazy", "clean_lazy")
transform_lazy = _declared(_transform, "polars-lazy", "transform_lazy")
