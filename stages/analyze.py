"""Analysis stages: reductions computed exactly over the whole table, chunk by chunk."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from pipeline.aggregate import GroupAggregate
from pipeline.reduction import reduction


@reduction(GroupAggregate)
def aggregate(df: pd.DataFrame, by: Sequence[str], aggs: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Group `df` by the `by` columns and compute `aggs` (output = [column, function]); keys come back as
    columns. In a pipeline it runs as per-chunk partials combined in a tree, with the same result as this
    whole-frame call.

    Functions: count, size, sum, mean, min, max, var, std, nunique, first, last.

    >>> df = pd.DataFrame({"carrier": ["AA", "UA", "AA"], "delay": [10.0, 5.0, None]})
    >>> aggregate(df, by=["carrier"], aggs={"flights": ["delay", "size"], "mean_delay": ["delay", "mean"]})
      carrier  flights  mean_delay
    0      AA        2        10.0
    1      UA        1         5.0
    """
    return GroupAggregate(by, aggs).apply(df)
