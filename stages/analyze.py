"""Analysis stages: reductions computed exactly over the whole table, chunk by chunk."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from pipeline.aggregate import GroupAggregate
from pipeline.reduction import reduction
from pipeline.topk import TopK


@reduction(GroupAggregate)
def aggregate(
    df: pd.DataFrame, by: Sequence[str] = (), aggs: Mapping[str, Sequence[Any]] | None = None,
    partitions: int | None = None,
) -> pd.DataFrame:
    """Group `df` by the `by` columns and compute `aggs` (output = [column, function], or
    [column, "quantile", q] with q from 0 to 1); keys come back as columns. Without `by`, one row over the
    whole table, as `select sum(x), count(x) from t` gives: on no rows, counts, sizes, sums and nunique are 0,
    the rest missing. In a pipeline it runs as per-chunk partials combined in a tree, with the same result as
    this whole-frame call. In a graph of datasets, a keyed aggregate over many rows (or one given `partitions`)
    is combined per range of keys instead, so no task holds every group; the result then comes in that many
    parts, in key order.

    Functions: count, size, sum, mean, min, max, var, std, nunique, first, last, median, quantile. Median and
    quantile are exact, with pandas' linear interpolation (keyless: `Series.quantile`'s); they keep a count of
    each distinct value per group, so they suit columns with repeats better than unique floats. A decimal
    column's sum, min, max, first and last stay exact decimals; mean, var, std, median and quantile are float64.

    >>> df = pd.DataFrame({"carrier": ["AA", "UA", "AA"], "delay": [10.0, 5.0, None]})
    >>> aggregate(df, by=["carrier"], aggs={"flights": ["delay", "size"], "mean_delay": ["delay", "mean"]})
      carrier  flights  mean_delay
    0      AA        2        10.0
    1      UA        1         5.0
    >>> aggregate(df, aggs={"flights": ["delay", "size"], "p90": ["delay", "quantile", 0.9]})
       flights  p90
    0        3  9.5
    """
    return GroupAggregate(by, aggs or {}, partitions).apply(df)


@reduction(TopK)
def top(df: pd.DataFrame, k: int, by: str | Sequence[str], ascending: bool | Sequence[bool] = False) -> pd.DataFrame:
    """The `k` rows with the largest `by` values (smallest with `ascending`; one flag, or one per column), in
    that order, missing values last and equal keys in table order: exactly
    `df.sort_values(by, ascending=ascending, kind="stable", na_position="last").head(k)`, computed chunk by chunk
    from each chunk's best k rows, never sorting the whole table.

    >>> df = pd.DataFrame({"trip": [1, 2, 3, 4], "fare": [5.0, 9.0, None, 9.0]})
    >>> top(df, 3, "fare")
       trip  fare
    0     2   9.0
    1     4   9.0
    2     1   5.0
    """
    return TopK(k, by, ascending).apply(df)
