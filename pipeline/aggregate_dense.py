"""Group-by partials for keys with few possible values — categoricals, and integers in a small range — by
numpy: each row's group is a number computed from its keys (mixed radix: zone × payment types + payment),
and every state is one `bincount` (or `minimum.at` / `maximum.at`) over those numbers, with no hashing and no
sort. For the common functions over float columns this is several times faster than pandas' group-by of the
same chunk, which factorizes the keys again for each call.

The states are the pandas partial's (`aggregate.GroupAggregate.partial`), with pandas' rules: NaN is missing,
rows with a missing key are dropped, the sum over no values is 0, the min or max over none is NaN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from pipeline.aggregate import AggState, GroupAggregate

FUNCTIONS = {"count", "size", "sum", "mean", "min", "max"}
# Possible key combinations. Beyond, Arrow's hash aggregation takes over: its states stay Arrow tables through
# the combines, which matters once there are many groups (see `aggregate_arrow`).
MOST_GROUPS = 1 << 16


class Key(NamedTuple):
    """A key column as numbers from 0 to `n` - 1 (-1: missing), and how to turn them back into values."""

    codes: np.ndarray
    n: int
    dtype: object
    offset: int  # integers: the smallest value (codes are value - offset); categoricals: 0


def dense_partial(agg: "GroupAggregate", df: object) -> "AggState | None":
    """The chunk's state, or None when this path does not apply (not pandas, other functions or types, keys
    with too many possible values): then pandas or Arrow computes it."""
    from pipeline.aggregate import STATES, AggState

    if not isinstance(df, pd.DataFrame) or not agg.by or len(df) == 0:
        return None
    if any(fn not in FUNCTIONS or column not in df.columns for column, fn, _ in agg.aggs.values()):
        return None
    if any(df[column].dtype != np.float64 for column, fn, _ in agg.aggs.values() if fn != "size"):
        return None
    keys = [_key(df[column]) if column in df.columns else None for column in agg.by]
    if any(k is None for k in keys) or np.prod([float(k.n) for k in keys]) > MOST_GROUPS:
        return None
    code, valid = _combined(keys)
    total = int(np.prod([k.n for k in keys]))
    size = np.bincount(code, minlength=total)
    groups = np.flatnonzero(size)
    states: dict[str, np.ndarray] = {"": size[groups]}
    for column, fn, _ in agg.aggs.values():
        kinds = [kind for kind in STATES[fn] if f"{column}\0{kind}" not in states]
        if kinds:
            states.update(_states(df[column], column, kinds, code, valid, groups, total, size))
    return AggState(pd.DataFrame(states, index=_index(keys, groups, agg.by)))


def _key(column: pd.Series) -> Key | None:
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return Key(column.cat.codes.to_numpy(), len(dtype.categories), dtype, 0)
    if isinstance(dtype, np.dtype) and dtype.kind in "iu":
        values = column.to_numpy()
        low, high = int(values.min()), int(values.max())
        if high - low >= MOST_GROUPS or high >= 2**63:  # (an unsigned 64-bit value would wrap in int64)
            return None
        return Key(values.astype(np.int64) - low, high - low + 1, dtype, low)
    return None


def _combined(keys: list[Key]) -> tuple[np.ndarray, np.ndarray | None]:
    """Each row's group number, for the rows whose keys are all present (and which rows those are, if not all)."""
    code = keys[0].codes.astype(np.int64)
    for key in keys[1:]:
        code = code * key.n + key.codes
    missing = np.zeros(len(code), dtype=bool)
    for key in keys:
        if key.codes.min() < 0:
            missing |= key.codes < 0
    if not missing.any():
        return code, None
    return code[~missing], ~missing


def _states(column: pd.Series, name: str, kinds: list[str], code: np.ndarray, valid: np.ndarray | None,
            groups: np.ndarray, total: int, size: np.ndarray) -> dict[str, np.ndarray]:
    """The state columns `kinds` of one value column, per group present."""
    out: dict[str, np.ndarray] = {}
    if kinds == ["size"]:
        return {f"{name}\0size": size[groups]}
    values = column.to_numpy()
    if valid is not None:
        values = values[valid]
    present = ~np.isnan(values)
    if present.all():  # the common case: no copies, and every row counts
        at, counts = code, size[groups]
    else:
        at, values = code[present], values[present]
        counts = np.bincount(at, minlength=total)[groups]
    for kind in kinds:
        if kind in ("count", "size"):
            out[f"{name}\0{kind}"] = counts if kind == "count" else size[groups]
        elif kind == "sum":
            sums = np.bincount(at, weights=values, minlength=total)  # int64 zeros when no value is present
            out[f"{name}\0sum"] = sums[groups].astype(np.float64, copy=False)
        else:
            extreme = np.full(total, np.inf if kind == "min" else -np.inf)
            (np.minimum if kind == "min" else np.maximum).at(extreme, at, values)
            out[f"{name}\0{kind}"] = np.where(counts > 0, extreme[groups], np.nan)
    return out


def _index(keys: list[Key], groups: np.ndarray, names: tuple[str, ...]) -> pd.Index:
    """The groups' key values, decoded from their numbers."""
    levels = []
    rest = groups
    for key in reversed(keys):
        rest, codes = np.divmod(rest, key.n)
        if isinstance(key.dtype, pd.CategoricalDtype):
            levels.append(pd.Categorical.from_codes(codes, dtype=key.dtype))
        else:
            levels.append((codes + key.offset).astype(key.dtype))
    levels.reverse()
    if len(levels) == 1:
        return pd.Index(levels[0], name=names[0])
    return pd.MultiIndex.from_arrays(levels, names=list(names))
