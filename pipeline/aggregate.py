"""Exact group-by aggregation as a tree reduction.

Each chunk becomes a small *state* frame indexed by the group keys (one row per group seen in the chunk):
sums and counts for sum/mean, count + mean + M2 for var/std (combined with the parallel-variance formula),
min/max/first/last of each chunk, and the distinct (key, value) pairs for nunique. States are combined in
chunk order, so first/last stay exact, and finalised into the same frame pandas gives for
`df.groupby(by, observed=True).agg(**aggs).reset_index()` over the whole table (floating-point sums can
differ in the last bits, as any change of summation order does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.aggregate_polars import as_pandas, polars_partial
from pipeline.batch import Batch, convert, format_of

# function -> the per-chunk state columns it needs
STATES: dict[str, tuple[str, ...]] = {
    "count": ("count",),
    "size": ("size",),
    "sum": ("sum",),
    "mean": ("sum", "count"),
    "min": ("min",),
    "max": ("max",),
    "first": ("first",),
    "last": ("last",),
    "var": ("count", "mean", "m2"),
    "std": ("count", "mean", "m2"),
    "nunique": (),
}
FUNCTIONS = tuple(STATES)
# how two states of the same kind combine
_COMBINE = {"count": "sum", "size": "sum", "sum": "sum", "min": "min", "max": "max", "first": "first", "last": "last"}


@dataclass
class AggState:
    """The partial result of a chunk or of several: state columns per group, distinct pairs for nunique.
    A chunk's partial computed by Polars keeps its Polars frame until combined (see `aggregate_polars`)."""

    frame: Any  # pd.DataFrame (keys as the index) or a Polars partial frame
    distinct: dict[str, pd.DataFrame] = field(default_factory=dict)


@dataclass(frozen=True)
class GroupAggregate:
    """`by` key columns, `aggs` output -> (column, function), pandas named-aggregation style.

    >>> agg = GroupAggregate(by=["k"], aggs={"n": ["v", "count"], "avg": ["v", "mean"]})
    >>> df = pd.DataFrame({"k": ["a", "b", "a"], "v": [1.0, 2.0, 4.0]})
    >>> agg.finalize(agg.combine([agg.partial(df[:2]), agg.partial(df[2:])]))
       k  n  avg
    0  a  2  2.5
    1  b  1  2.0
    """

    by: Sequence[str]
    aggs: Mapping[str, Sequence[str]]

    def __post_init__(self) -> None:
        by = [self.by] if isinstance(self.by, str) else list(self.by)
        if not by or not all(isinstance(k, str) for k in by):
            raise ValueError("'by' must be a non-empty list of column names")
        if not isinstance(self.aggs, Mapping) or not self.aggs:
            raise ValueError("'aggs' must be a non-empty table: output = [column, function]")
        aggs = {}
        for out, spec in self.aggs.items():
            if isinstance(spec, str) or len(spec) != 2:
                raise ValueError(f"aggs.{out} must be [column, function], got {spec!r}")
            column, fn = spec
            if fn not in STATES:
                raise ValueError(f"aggs.{out}: unknown function {fn!r}; expected one of {', '.join(FUNCTIONS)}")
            aggs[out] = (column, fn)
        object.__setattr__(self, "by", tuple(by))
        object.__setattr__(self, "aggs", aggs)

    @property
    def columns(self) -> list[str]:
        """The input columns this aggregate reads."""
        return list(dict.fromkeys([*self.by, *(c for c, _ in self.aggs.values())]))

    batch = "any"  # takes pandas, Arrow or Polars chunks as they come (see `partial`)

    def partial(self, df: Batch) -> AggState:
        """The chunk's state. A Polars chunk is reduced by Polars; anything else by pandas."""
        if format_of(df) in ("polars", "polars-lazy"):
            return polars_partial(self, df)
        df = convert(df, "pandas")
        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            raise KeyError(f"aggregate needs column(s) {missing} not in the data (has {list(df.columns)})")
        grouped = df.groupby(list(self.by), sort=False, observed=True, dropna=True)
        states: dict[str, pd.Series] = {"": grouped.size()}
        distinct: dict[str, pd.DataFrame] = {}
        for column, fn in self.aggs.values():
            if fn == "nunique":
                pairs = df[list(dict.fromkeys([*self.by, column]))].dropna()
                distinct[column] = pairs.drop_duplicates()
                continue
            for kind in STATES[fn]:
                key = f"{column}\0{kind}"
                if key not in states:
                    states[key] = _state(grouped[column], kind)
        return AggState(pd.DataFrame(states), distinct)

    def combine(self, parts: Sequence[AggState]) -> AggState:
        frames = [p.frame for p in parts if len(p.frame)] or [parts[0].frame]
        if not all(isinstance(f, pd.DataFrame) for f in frames):  # partials Polars computed
            frames = as_pandas(self, frames)
        frame = _concat(frames)
        grouped = frame.groupby(level=list(range(len(self.by))), sort=False, observed=True)
        out: dict[str, pd.Series] = {}
        for key in frame.columns:
            column, _, kind = key.partition("\0")
            if kind in ("mean", "m2"):
                continue
            if kind == "count" and f"{column}\0m2" in frame.columns:
                out[key], out[f"{column}\0mean"], out[f"{column}\0m2"] = _combine_moments(frame, grouped, column)
            else:
                out[key] = getattr(grouped[key], _COMBINE.get(kind, "sum"))()
        distinct = {
            column: _concat([p.distinct[column] for p in parts]).drop_duplicates() for column in parts[0].distinct
        }
        return AggState(pd.DataFrame(out), distinct)

    def finalize(self, part: AggState) -> pd.DataFrame:
        state = self.combine([part]).frame
        result = pd.DataFrame(index=state.index)
        for out, (column, fn) in self.aggs.items():
            result[out] = self._final(state, part.distinct, column, fn)
        # pandas' group order: by each key in turn, categories in category order
        return result.reset_index().sort_values(list(self.by), ignore_index=True)

    def apply(self, df: pd.DataFrame) -> pd.DataFrame:
        """The whole-frame result: one chunk, no tree."""
        return self.finalize(self.partial(df))

    def _final(self, state: pd.DataFrame, distinct: dict[str, pd.DataFrame], column: str, fn: str) -> pd.Series:
        col = f"{column}\0"
        if fn == "mean":
            return state[col + "sum"] / state[col + "count"]
        if fn in ("var", "std"):
            n = state[col + "count"]
            var = (state[col + "m2"] / (n - 1)).where(n > 1)
            return np.sqrt(var) if fn == "std" else var
        if fn == "nunique":
            pairs = distinct[column]
            counts = pairs.groupby(list(self.by), sort=False, observed=True).size()
            return counts.reindex(state.index, fill_value=0).astype("int64")
        return state[col + STATES[fn][0]]


def _state(values: "pd.core.groupby.SeriesGroupBy", kind: str) -> pd.Series:
    if kind == "m2":
        return values.var(ddof=0) * values.count()
    return getattr(values, kind)()


def _combine_moments(frame: pd.DataFrame, grouped, column: str) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Merge (count, mean, M2) per group with the parallel-variance formula; empty states weigh nothing."""
    n = frame[f"{column}\0count"]
    mean = frame[f"{column}\0mean"].where(n > 0, 0.0)
    m2 = frame[f"{column}\0m2"].where(n > 0, 0.0)
    levels = list(range(frame.index.nlevels))
    total = grouped[f"{column}\0count"].sum()
    weighted = (n * mean).groupby(level=levels, sort=False, observed=True).sum()
    group_mean = weighted / total
    row_mean = (n * mean).groupby(level=levels, sort=False, observed=True).transform("sum") / n.groupby(
        level=levels, sort=False, observed=True
    ).transform("sum")
    spread = (m2 + n * (mean - row_mean) ** 2).where(n > 0, 0.0)
    return total, group_mean, spread.groupby(level=levels, sort=False, observed=True).sum().where(total > 0)


def _concat(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate keeping categorical keys categorical: identical categories stay, differing ones are unioned
    (sorted), where a plain concat would fall back to object."""
    if len(frames) == 1:
        return frames[0]
    frames = [_with_categories(f, frames) for f in frames]
    return pd.concat(frames)


def _with_categories(frame: pd.DataFrame, frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    frame = frame.copy(deep=False)
    for name in [n for n in (frame.index.names or []) if n is not None]:
        level = frame.index.get_level_values(name)
        if isinstance(level.dtype, pd.CategoricalDtype):
            dtype = _union_dtype([f.index.get_level_values(name).dtype for f in frames])
            frame.index = _set_level(frame.index, name, level.astype(dtype))
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = frame[name].astype(_union_dtype([f[name].dtype for f in frames]))
    return frame


def _union_dtype(dtypes: Sequence) -> pd.CategoricalDtype:
    first = dtypes[0]
    if all(d == first for d in dtypes):
        return first
    values = pd.Index([]).append([pd.Index(d.categories) for d in dtypes if isinstance(d, pd.CategoricalDtype)])
    return pd.CategoricalDtype(values.unique().sort_values())


def _set_level(index: pd.Index, name: str, values: pd.Index) -> pd.Index:
    if isinstance(index, pd.MultiIndex):
        arrays = [values if n == name else index.get_level_values(n) for n in index.names]
        return pd.MultiIndex.from_arrays(arrays, names=index.names)
    return pd.CategoricalIndex(values, name=name)
