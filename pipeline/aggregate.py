"""Exact group-by aggregation as a tree reduction.

Each chunk becomes a small *state* frame indexed by the group keys (one row per group seen in the chunk):
sums and counts for sum/mean, count + mean + M2 for var/std (combined with the parallel-variance formula),
min/max/first/last of each chunk, the distinct (key, value) pairs for nunique, and how often each value occurs
per group for median and quantile (whose order statistics need every value: these tables grow with the number
of distinct values, not with the rows). States are combined in chunk order, so first/last stay exact, and
finalised into the same frame pandas gives for `df.groupby(by, observed=True).agg(**aggs).reset_index()` over
the whole table (floating-point sums can differ in the last bits, as any change of summation order does).

Without `by` the whole table is one group under a constant internal key, dropped at the end: one row, as
pandas' reductions of whole columns give (`df[column].sum()`, `.quantile(q)`, ...), on an empty table too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import aggregate_arrow, aggregate_polars, aggregate_ranges
from pipeline.aggregate_arrow import arrow_combine, arrow_partial
from pipeline.aggregate_dense import dense_partial
from pipeline.aggregate_polars import polars_partial
from pipeline.batch import Batch, convert, format_of, is_decimal, pandas_dtype

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
    "median": (),
    "quantile": (),
}
FUNCTIONS = tuple(STATES)
ORDERED = ("median", "quantile")  # kept as per-(group, value) counts
# how two states of the same kind combine
_COMBINE = {"count": "sum", "size": "sum", "sum": "sum", "min": "min", "max": "max", "first": "first", "last": "last"}
_ZERO_WHEN_EMPTY = ("", "count", "size", "sum")  # state kinds that are 0, not missing, over no rows
KEY = "\0all"  # the constant key of an aggregate without `by`; a NUL character, so no column is named so
COUNT = "\0n"  # the count column of a value-count table


class Spec(NamedTuple):
    """One output: the function `fn` of `column`; `q` for a quantile."""

    column: str
    fn: str
    q: float | None = None


@dataclass
class AggState:
    """The partial result of a chunk or of several: state columns per group, distinct (key, value) pairs for
    nunique, (key, value, count) tables for median and quantile. A chunk's partial computed by Polars keeps
    its Polars frame until combined (see `aggregate_polars`)."""

    frame: Any  # pd.DataFrame (keys as the index) or a Polars partial frame
    distinct: dict[str, pd.DataFrame] = field(default_factory=dict)
    counts: dict[str, pd.DataFrame] = field(default_factory=dict)


@dataclass(frozen=True)
class GroupAggregate:
    """`by` key columns (none: one row over the whole table), `aggs` output -> [column, function] in pandas'
    named-aggregation style, or [column, "quantile", q] (q from 0 to 1; without it, 0.5).

    >>> agg = GroupAggregate(by=["k"], aggs={"n": ["v", "count"], "avg": ["v", "mean"], "mid": ["v", "median"]})
    >>> df = pd.DataFrame({"k": ["a", "b", "a"], "v": [1.0, 2.0, 4.0]})
    >>> agg.finalize(agg.combine([agg.partial(df[:2]), agg.partial(df[2:])]))
       k  n  avg  mid
    0  a  2  2.5  2.5
    1  b  1  2.0  2.0
    >>> GroupAggregate(aggs={"rows": ["v", "size"], "total": ["v", "sum"], "top": ["v", "max"]}).apply(df[:0])
       rows  total  top
    0     0    0.0  NaN
    """

    by: Sequence[str] = ()
    aggs: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    partitions: int | None = None  # key ranges to combine in (see `partitioned_aggregate`); None: chosen

    def __post_init__(self) -> None:
        by = [self.by] if isinstance(self.by, str) else list(self.by or ())
        if not all(isinstance(k, str) for k in by):
            raise ValueError("'by' must be a list of column names (none for one row over the whole table)")
        if not isinstance(self.aggs, Mapping) or not self.aggs:
            raise ValueError("'aggs' must be a non-empty table: output = [column, function]")
        if self.partitions is not None and (isinstance(self.partitions, bool) or not isinstance(self.partitions, int)
                                            or self.partitions < 1):
            raise ValueError(f"'partitions' must be a positive integer, got {self.partitions!r}")
        object.__setattr__(self, "by", tuple(by))
        object.__setattr__(self, "aggs", {out: _spec(out, spec) for out, spec in self.aggs.items()})

    @property
    def keys(self) -> tuple[str, ...]:
        """What the states are grouped by: `by`, or a constant key that makes the whole table one group."""
        return self.by or (KEY,)

    @property
    def columns(self) -> list[str]:
        """The input columns this aggregate reads."""
        return list(dict.fromkeys([*self.by, *(spec.column for spec in self.aggs.values())]))

    def levels(self, column: str) -> list[str]:
        """The columns of `column`'s distinct-pair or value-count table: the keys, then the value."""
        return list(dict.fromkeys([*self.keys, column]))

    batch = "any"  # takes pandas, Arrow or Polars chunks as they come (see `partial`)

    def partial(self, df: Batch) -> AggState:
        """The chunk's state. A Polars chunk is reduced by Polars; the common functions over numbers by numpy
        where a pandas chunk's keys have few possible values (`aggregate_dense`), else by Arrow
        (`aggregate_arrow`); anything else by pandas."""
        if format_of(df) in ("polars", "polars-lazy"):
            return polars_partial(self, df)
        by_numbers = dense_partial(self, df)
        if by_numbers is not None:
            return by_numbers
        by_arrow = arrow_partial(self, df)
        if by_arrow is not None:
            return by_arrow
        df = convert(df, "pandas")
        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            raise KeyError(f"aggregate needs column(s) {missing} not in the data (has {list(df.columns)})")
        if not self.by:
            df = df.assign(**{KEY: 0})
        grouped = df.groupby(list(self.keys), sort=False, observed=True, dropna=True)
        states: dict[str, pd.Series] = {"": grouped.size()}
        distinct: dict[str, pd.DataFrame] = {}
        counts: dict[str, pd.DataFrame] = {}
        for column, fn, _ in self.aggs.values():
            if fn == "nunique" and column not in distinct:
                distinct[column] = _distinct(df[self.levels(column)].dropna())
            if fn in ORDERED and column not in counts:
                counts[column] = _value_counts(df[self.levels(column)].dropna())
            for kind in STATES[fn]:
                key = f"{column}\0{kind}"
                if key not in states:
                    states[key] = _state(grouped[column], kind)
        return AggState(pd.DataFrame(states), distinct, counts)

    def combine(self, parts: Sequence[AggState]) -> AggState:
        """Merge states. Where the data is sorted or clustered by the first key, only the groups in key ranges
        two states share are merged, and the rest concatenated (see `aggregate_ranges`)."""
        if len(parts) == 1 and isinstance(parts[0].frame, (pa.Table, pd.DataFrame)):
            return parts[0]  # already one row per group
        key = self.keys[0]
        intervals = aggregate_ranges.shared_intervals([p.frame for p in parts], key)
        if intervals is None:
            return self._merge(parts)
        halves = [_split(p, key, intervals) for p in parts] if intervals else [(p, None) for p in parts]
        shared = [s for _, s in halves if s is not None]
        if 2 * sum(len(s.frame) for s in shared) > sum(len(p.frame) for p in parts):
            return self._merge(parts)  # keys in no order: most groups need merging anyway
        return self._concatenated([*(own for own, _ in halves), *([self._merge(shared)] if shared else [])])

    def _concatenated(self, parts: Sequence[AggState]) -> AggState:
        """States that share no group, as one."""
        frames = [p.frame for p in parts]
        if all(isinstance(f, pa.Table) for f in frames):
            frame = pa.concat_tables(frames, promote_options="permissive")
        else:
            frame = _concat(aggregate_arrow.as_pandas(self, frames))
        return AggState(frame, {c: _concat([p.distinct[c] for p in parts]) for c in parts[0].distinct},
                        {c: _concat([p.counts[c] for p in parts]) for c in parts[0].counts})

    def _merge(self, parts: Sequence[AggState]) -> AggState:
        """States as one, each group's states merged by their combine."""
        frames = [p.frame for p in parts if len(p.frame)] or [parts[0].frame]
        if all(isinstance(f, pa.Table) for f in frames):  # Arrow's states stay Arrow (see `aggregate_arrow`)
            return arrow_combine(self, frames)
        if not all(isinstance(f, pd.DataFrame) for f in frames):  # partials Polars or Arrow computed
            frames = aggregate_arrow.as_pandas(self, aggregate_polars.as_pandas(self, frames))
        frame = _concat(frames)
        grouped = frame.groupby(level=list(range(len(self.keys))), sort=False, observed=True)
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
            column: _distinct(_concat([p.distinct[column] for p in parts])) for column in parts[0].distinct
        }
        counts = {column: self._summed([p.counts[column] for p in parts], column) for column in parts[0].counts}
        return AggState(pd.DataFrame(out), distinct, counts)

    def finalize(self, part: AggState) -> pd.DataFrame:
        part = self.combine([part])
        if isinstance(part.frame, pa.Table):
            if self.by and not set(self.by) & set(self.aggs):
                return aggregate_arrow.finalize(self, part.frame)
            part = AggState(aggregate_arrow.as_pandas(self, [part.frame])[0])
        state = part.frame if self.by else _one_row(part.frame)
        result = pd.DataFrame(index=state.index)
        for out, spec in self.aggs.items():
            result[out] = self._final(state, part, spec)
        if not self.by:
            return result.reset_index(drop=True)
        # pandas' group order: by each key in turn, categories in category order
        return result.reset_index().sort_values(list(self.by), ignore_index=True)

    def apply(self, df: pd.DataFrame) -> pd.DataFrame:
        """The whole-frame result: one chunk, no tree."""
        return self.finalize(self.partial(df))

    def _summed(self, tables: Sequence[pd.DataFrame], column: str) -> pd.DataFrame:
        """Value-count tables as one: the counts of equal (key, value) rows added."""
        if len(tables) == 1:
            return tables[0]
        levels = self.levels(column)
        return _concat(tables).groupby(levels, sort=False, observed=True)[COUNT].sum().reset_index()

    def _final(self, state: pd.DataFrame, part: AggState, spec: Spec) -> pd.Series:
        column, fn, q = spec
        col = f"{column}\0"
        if fn == "mean":
            return state[col + "sum"].astype("float64") / state[col + "count"]  # a decimal sum too
        if fn in ("var", "std"):
            n = state[col + "count"]
            var = (state[col + "m2"] / (n - 1)).where(n > 1)
            return np.sqrt(var) if fn == "std" else var
        if fn == "nunique":
            pairs = part.distinct[column]
            counts = pairs.groupby(list(self.keys), sort=False, observed=True).size()
            return counts.reindex(state.index, fill_value=0).astype("int64")
        if fn in ORDERED:
            table = part.counts[column]
            return _order_statistic(table, state.index, list(self.keys), column, q, whole=not self.by)
        return state[col + STATES[fn][0]]


def _spec(out: str, spec: Any) -> Spec:
    """An output's [column, function] or [column, "quantile", q], checked before any data is read."""
    if isinstance(spec, str) or not isinstance(spec, Sequence) or len(spec) not in (2, 3):
        raise ValueError(f"aggs.{out} must be [column, function] or [column, 'quantile', q], got {spec!r}")
    column, fn, *rest = spec
    if not isinstance(fn, str) or fn not in STATES:
        raise ValueError(f"aggs.{out}: unknown function {fn!r}; expected one of {', '.join(FUNCTIONS)}")
    if fn != "quantile":
        if rest:
            raise ValueError(f"aggs.{out} must be [column, function]; only quantile takes a third value, got {spec!r}")
        return Spec(column, fn)
    q = rest[0] if rest else 0.5  # pandas' default
    if isinstance(q, bool) or not isinstance(q, Real) or not 0 <= q <= 1:
        raise ValueError(f"aggs.{out}: quantile's q must be a number from 0 to 1, got {q!r}")
    return Spec(column, fn, float(q))


def _state(values: "pd.core.groupby.SeriesGroupBy", kind: str) -> pd.Series:
    """One state column: counts as int64 however the column is backed; the moments in float64 (a decimal
    column's mean would otherwise be rounded to its scale)."""
    if kind in ("count", "size"):
        return getattr(values, kind)().astype("int64")
    if kind == "mean":
        return values.sum().astype("float64") / _state(values, "count")
    if kind == "m2":
        return values.var(ddof=0).astype("float64") * _state(values, "count")
    return getattr(values, kind)()


def _split(part: AggState, key: str, intervals: Sequence[aggregate_ranges.Interval]) -> tuple[AggState, AggState]:
    """A state as (groups whose first key is in none of `intervals`, groups whose key is in one)."""
    frame = part.frame
    if isinstance(frame, pa.Table):
        mask = aggregate_ranges.inside(frame[key], intervals)
        own, shared = frame.filter(pc.invert(mask)), frame.filter(mask)
    else:
        rows = aggregate_ranges.inside(frame.index.get_level_values(key), intervals)
        own, shared = frame[~rows], frame[rows]
    tables = [part.distinct, part.counts]
    masks = [{c: aggregate_ranges.inside(t[key], intervals) for c, t in kind.items()} for kind in tables]
    return (AggState(own, *({c: t[~m[c]] for c, t in kind.items()} for kind, m in zip(tables, masks))),
            AggState(shared, *({c: t[m[c]] for c, t in kind.items()} for kind, m in zip(tables, masks))))


def _distinct(rows: pd.DataFrame) -> pd.DataFrame:
    """The distinct rows, in no particular order (they are only counted). Arrow's hash group-by where every
    column is a plain key type: several times faster than pandas' `drop_duplicates` on millions of pairs."""
    try:
        table = pa.Table.from_pandas(rows, preserve_index=False)
    except (pa.ArrowException, ValueError, TypeError):
        return rows.drop_duplicates()
    if len(rows) < 2 or not all(aggregate_arrow.is_plain_key(kind) for kind in table.schema.types):
        return rows.drop_duplicates()
    distinct = table.group_by(list(rows.columns), use_threads=False).aggregate([])
    return distinct.select(list(rows.columns)).to_pandas(types_mapper=pandas_dtype)


def _value_counts(rows: pd.DataFrame) -> pd.DataFrame:
    """How often each distinct row occurs, as a table of the rows' columns plus COUNT."""
    counts = rows.groupby(list(rows.columns), sort=False, observed=True).size()
    return counts.rename(COUNT).reset_index()


def _one_row(state: pd.DataFrame) -> pd.DataFrame:
    """A whole-table state as exactly one row, also when no chunk had a row: counts and sums 0, the rest missing."""
    index = pd.Index([0], name=KEY)
    return pd.DataFrame(
        {
            name: state[name].reindex(index, fill_value=0) if name.partition("\0")[2] in _ZERO_WHEN_EMPTY
            else state[name].reindex(index)
            for name in state.columns
        },
        index=index,
    )


def _order_statistic(
    table: pd.DataFrame, index: pd.Index, keys: list[str], column: str, q: float | None, whole: bool
) -> pd.Series:
    """The median (`q` None) or q-quantile of `column` for each group of `index`, from its value counts: with
    pandas' group-by arithmetic, or for the whole table (`whole`) with that of `Series.quantile` (numpy's), so
    either equals pandas bit for bit. All groups at once: values sorted by (group, value), each group's order
    statistics found by position among the running counts."""
    values, ends, sizes = _sorted_counts(table, index, keys, column)
    starts = np.cumsum(sizes) - sizes
    result = np.full(len(index), np.nan)
    seen = sizes > 0

    def at(offsets: np.ndarray) -> np.ndarray:
        """Each seen group's value at `offsets` (0-based, in value order, counting repeats)."""
        return values[np.searchsorted(ends, starts[seen] + offsets, side="right")]

    with np.errstate(over="ignore", invalid="ignore"):  # inf - inf is NaN here as in pandas, without a warning
        if q is None:
            result[seen] = _median(at, sizes[seen])
        else:
            result[seen] = (_numpy_quantile if whole else _pandas_quantile)(at, sizes[seen], q)
    return pd.Series(result, index=index)


def _sorted_counts(
    table: pd.DataFrame, index: pd.Index, keys: list[str], column: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The table's values sorted by (group, value) with groups in `index` order; the running count of values up
    to and including each; and the number of values in each group of `index`."""
    groups = pd.Index(table[keys[0]]) if len(keys) == 1 else pd.MultiIndex.from_frame(table[keys])
    codes = index.get_indexer(groups)  # every counted group has a state row
    values = _numbers(table[column])
    repeats = table[COUNT].to_numpy(dtype=np.int64)
    sizes = np.bincount(codes, weights=repeats, minlength=len(index)).astype(np.int64)
    order = np.lexsort((values, codes))
    return values[order], np.cumsum(repeats[order]), sizes


def _numbers(values: pd.Series) -> np.ndarray:
    """A value column as numpy numbers: integers stay integers (numpy interpolates them so), the rest float64
    (a decimal's median or quantile is a float64)."""
    dtype = values.dtype
    if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        raise TypeError(f"median and quantile need a numeric column; {values.name!r} is {dtype}")
    integer = pd.api.types.is_integer_dtype(dtype) and not is_decimal(dtype)
    return values.to_numpy(dtype=np.int64 if integer else np.float64)


def _median(at: Callable[[np.ndarray], np.ndarray], n: np.ndarray) -> np.ndarray:
    """pandas' median: the middle value, or the mean of the two middle ones, in float64."""
    lower, upper = at((n - 1) // 2).astype(np.float64), at(n // 2).astype(np.float64)
    return np.where(n % 2 == 1, upper, (upper + lower) / 2)


def _pandas_quantile(at: Callable[[np.ndarray], np.ndarray], n: np.ndarray, q: float) -> np.ndarray:
    """pandas' group-by quantile: values in float64, `lower + (upper - lower) * fraction` unless on a value."""
    position = q * (n - 1).astype(np.float64)
    below = position.astype(np.int64)  # truncated
    fraction = np.fmod(position, 1.0)
    lower = at(below).astype(np.float64)
    upper = at(np.minimum(below + 1, n - 1)).astype(np.float64)
    return np.where(fraction == 0, lower, lower + (upper - lower) * fraction)


def _numpy_quantile(at: Callable[[np.ndarray], np.ndarray], n: np.ndarray, q: float) -> np.ndarray:
    """numpy's linear quantile, as `Series.quantile` uses it, with its index and weight arithmetic: at or past
    the last position it takes the last value, its weight measured from index -1."""
    virtual = (n - 1) * q
    previous = np.floor(virtual)
    last = virtual >= n - 1
    below = np.where(last, n - 1, previous.astype(np.int64))
    above = np.where(last, n - 1, below + 1)
    return _lerp(at(below), at(above), virtual - np.where(last, -1, previous))


def _lerp(lower: np.ndarray, upper: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy's interpolation between two values, operation for operation (from the nearer end)."""
    diff = upper - lower
    return np.where(t >= 0.5, upper - diff * (1 - t), lower + diff * t)


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
    first = frames[0]
    levels = {name: _union_dtype([_level_dtype(f.index, name) for f in frames])
              for name in (first.index.names or []) if name is not None
              and isinstance(_level_dtype(first.index, name), pd.CategoricalDtype)}
    columns = {name: _union_dtype([f[name].dtype for f in frames])
               for name in first.columns if isinstance(first[name].dtype, pd.CategoricalDtype)}
    return pd.concat([_with_categories(f, levels, columns) for f in frames])


def _level_dtype(index: pd.Index, name: str) -> Any:
    """The dtype of one key of an index, without materialising its values."""
    return index.levels[index.names.index(name)].dtype if isinstance(index, pd.MultiIndex) else index.dtype


def _with_categories(frame: pd.DataFrame, levels: dict[str, pd.CategoricalDtype],
                     columns: dict[str, pd.CategoricalDtype]) -> pd.DataFrame:
    """`frame` with its categorical keys and columns of the given categories (itself if they are already)."""
    levels = {n: d for n, d in levels.items() if _level_dtype(frame.index, n) != d}
    columns = {n: d for n, d in columns.items() if frame[n].dtype != d}
    if not levels and not columns:
        return frame
    frame = frame.copy(deep=False)
    for name, dtype in levels.items():
        frame.index = _set_level(frame.index, name, frame.index.get_level_values(name).astype(dtype))
    for name, dtype in columns.items():
        frame[name] = frame[name].astype(dtype)
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
