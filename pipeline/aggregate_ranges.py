"""Combining group-by states of data sorted or clustered by the first key (an order key, a date): most groups
are then in one state only, and only those in key ranges that two states share need merging.

A chunk of a table sorted by order key holds a run of orders; the next chunk starts where it ended, so two
states share at most the order cut in two. Merging a million such groups by hashing them all again is most of
an aggregate's time; here each state is split into the rows whose first key lies in a range another state
also covers (merged as usual) and the rest (only concatenated). Only for integer, date and decimal keys, whose
order is plain; for other keys, or when most rows are shared (keys in no order), the caller merges everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

Interval = tuple[Any, Any]  # lowest and highest key, both included


def shared_intervals(frames: Sequence[Any], key: str) -> list[Interval] | None:
    """The key ranges covered by more than one of the frames, coalesced; None when this does not apply (a key
    type without a plain order, or a frame that is neither Arrow nor pandas)."""
    ranges = []
    for frame in frames:
        found = _range(frame, key)
        if found is False:
            return None
        if found is not None:
            ranges.append(found)
    ranges.sort(key=lambda r: r[0])
    shared: list[Interval] = []
    for i, (low, high) in enumerate(ranges):
        for other_low, other_high in ranges[i + 1 :]:
            if other_low > high:
                break
            shared.append((other_low, min(high, other_high)))
    shared.sort(key=lambda r: r[0])
    coalesced: list[Interval] = []
    for low, high in shared:
        if coalesced and low <= coalesced[-1][1]:
            coalesced[-1] = (coalesced[-1][0], max(high, coalesced[-1][1]))
        else:
            coalesced.append((low, high))
    return coalesced


def inside(values: Any, intervals: Sequence[Interval]) -> Any:
    """Which of `values` lie in any of `intervals` (at least one, sorted and disjoint, as `shared_intervals`
    gives them): an Arrow mask for an Arrow column, a numpy one for a pandas index level or column."""
    if (found := _inside_integers(values, intervals)) is not None:
        return found
    if isinstance(values, (pa.ChunkedArray, pa.Array)):
        mask = None
        for low, high in intervals:
            one = pc.and_(pc.greater_equal(values, low), pc.less_equal(values, high))
            mask = one if mask is None else pc.or_(mask, one)
        return mask
    mask = None
    for low, high in intervals:
        one = (values >= low) & (values <= high)
        mask = one if mask is None else mask | one
    return mask.to_numpy(dtype=bool) if hasattr(mask, "to_numpy") else mask


def _inside_integers(values: Any, intervals: Sequence[Interval]) -> Any:
    """`inside` for integers without nulls: one binary search of the intervals' starts per value instead of
    two comparisons per value per interval (a range piece of a state meets dozens of intervals). None for
    other values."""
    if isinstance(values, (pa.ChunkedArray, pa.Array)):
        if not pa.types.is_integer(values.type) or values.null_count:
            return None
        numbers = values.to_numpy() if isinstance(values, pa.Array) else values.combine_chunks().to_numpy()
    elif isinstance(values.dtype, np.dtype) and values.dtype.kind in "iu":  # not a nullable extension type
        numbers = values.to_numpy()
    else:
        return None
    if numbers.dtype == np.uint64:  # compared with signed bounds as floats: inexact past 2**53
        return None
    lows, highs = (np.array([int(bound[i]) for bound in intervals], dtype=np.int64) for i in (0, 1))
    at = np.searchsorted(lows, numbers, side="right") - 1  # the last interval starting at or below
    mask = (at >= 0) & (numbers <= highs[np.maximum(at, 0)])
    return pa.array(mask) if isinstance(values, (pa.ChunkedArray, pa.Array)) else mask


def _range(frame: Any, key: str) -> Interval | None | bool:
    """(lowest, highest) first key of a frame; None when it has no rows; False when its key type (or the
    frame) does not qualify."""
    if isinstance(frame, pa.Table):
        column = frame[key]
        if not _ordered(column.type):
            return False
        if column.length() == 0:
            return None
        low, high = pc.min_max(column).values()
        return low.as_py(), high.as_py()
    if isinstance(frame, pd.DataFrame):
        level = frame.index.get_level_values(key)
        kind = level.dtype
        plain = (_ordered(kind.pyarrow_dtype) if isinstance(kind, pd.ArrowDtype)
                 else pd.api.types.is_integer_dtype(kind))
        if not plain:
            return False
        return (level.min(), level.max()) if len(level) else None
    return False


def _ordered(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_date(kind) or pa.types.is_decimal(kind)
