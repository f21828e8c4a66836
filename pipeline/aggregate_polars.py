"""The group-by partial computed by Polars, for chunks that are already Polars frames, eager or lazy:
the same state columns as the pandas partial, so partials combine and finalise alike. The small per-group
result stays a Polars frame until it is combined (`as_pandas`): a combine converts all its Polars partials in
one go rather than one conversion per chunk (pandas work that would hold the GIL in every chunk task)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    import polars as pl

    from pipeline.aggregate import AggState, GroupAggregate


def polars_partial(agg: "GroupAggregate", df: "pl.DataFrame | pl.LazyFrame") -> "AggState":
    import polars as pl

    from pipeline.aggregate import AggState

    schema = df.collect_schema()  # a lazy frame's columns are known without running it
    missing = [c for c in agg.columns if c not in schema]
    if missing:
        raise KeyError(f"aggregate needs column(s) {missing} not in the data (has {schema.names()})")
    by = list(agg.by)
    # Through the lazy engine, which runs this about 40% faster than the same steps eagerly, and for a lazy
    # chunk runs the whole chain of stages and the read in one Polars query.
    floats = [c for c in agg.columns if schema[c].is_float() and c not in by]
    rows = (df.lazy().select(agg.columns)  # only what the aggregate reads
            .with_columns(pl.col(floats).fill_nan(None)).drop_nulls(by))  # pandas: NaN is missing, null keys dropped
    distinct: dict[str, pd.DataFrame] = {}
    for column, fn in agg.aggs.values():
        if fn == "nunique":
            pairs = rows.select(list(dict.fromkeys([*by, column]))).drop_nulls().unique(maintain_order=True)
            distinct[column] = pairs.collect().to_pandas()
    exprs = _state_exprs(agg)
    # group order is free: combine regroups by key and finalize sorts; first/last follow row order regardless.
    # Columns s0, s1, ...: state names hold NUL characters, which Polars cannot hand to pandas.
    grouped = rows.group_by(by).agg(**{f"s{i}": e for i, e in enumerate(exprs.values())}).collect()
    return AggState(grouped, distinct)


def _state_exprs(agg: "GroupAggregate") -> dict[str, "pl.Expr"]:
    """State name -> Polars expression, in the pandas partial's column order."""
    import polars as pl

    from pipeline.aggregate import STATES

    exprs = {"": pl.len().cast(pl.Int64)}  # counts as int64, as pandas has them
    for column, fn in agg.aggs.values():
        for kind in STATES[fn]:
            exprs.setdefault(f"{column}\0{kind}", _state(pl.col(column), kind))
    return exprs


def as_pandas(agg: "GroupAggregate", frames: list[Any]) -> list[pd.DataFrame]:
    """Partial frames as pandas states (keys as the index), in order; each run of Polars partials is
    concatenated in Polars and converted once."""
    import polars as pl

    out: list[pd.DataFrame] = []
    run: list[pl.DataFrame] = []
    for frame in [*frames, None]:
        if isinstance(frame, pl.DataFrame):
            run.append(frame)
            continue
        if run:
            out.append(_converted(agg, pl.concat(run, how="vertical_relaxed")))
            run = []
        if frame is not None:
            out.append(frame)
    return out


def _converted(agg: "GroupAggregate", grouped: "pl.DataFrame") -> pd.DataFrame:
    frame = grouped.to_pandas().set_index(list(agg.by))
    frame.columns = list(_state_exprs(agg))
    return frame


def _state(values: "pl.Expr", kind: str) -> "pl.Expr":
    import polars as pl

    if kind == "m2":
        return values.var(ddof=0) * values.count()
    if kind == "first":
        return values.drop_nulls().first()
    if kind == "last":
        return values.drop_nulls().last()
    if kind == "size":
        return values.len().cast(pl.Int64)
    if kind == "count":
        return values.count().cast(pl.Int64)
    return getattr(values, kind)()  # sum, min, max, mean
