"""A broadcast join's probe by lookup: when the small side has one integer key whose values are unique (a
dimension table: customer by c_custkey), it is indexed once per worker process, and each part of the big side
finds its match with one vectorised lookup, where a hash join would rebuild the small side's table for every
part (measured at TPC-H SF 1: 45 ms a part against 8 ms). Any other join runs the hash join as before.

Each big-side row matches at most one small-side row, so the matched row numbers follow directly from the
lookup; the join kernel (`pipeline.join`) builds the output columns from them, with the same semantics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.join import JoinSpec

Rows = tuple[pa.Array, pa.Array | None]
_BIG_IS_LEFT = ("inner", "left", "semi", "anti")  # the joins a lookup answers, big side on the left
_BIG_IS_RIGHT = ("inner", "right")  # ... big side on the right


@dataclass
class SmallSide:
    """A broadcast side as read, with its lookup index made on first use."""

    table: pa.Table
    _indexes: dict[str, pd.Index | None] = field(default_factory=dict)

    def index(self, key: str) -> pd.Index | None:
        """The unique integer values of `key` as an index, or None when a lookup cannot answer the join."""
        if key not in self._indexes:
            self._indexes[key] = _unique_index(self.table.column(key))
        return self._indexes[key]


def _is_integer(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) and t != pa.uint64()  # uint64 does not fit the int64 lookup


def _unique_index(column: pa.ChunkedArray) -> pd.Index | None:
    if not _is_integer(column.type) or column.null_count:
        return None
    index = pd.Index(column.to_numpy().astype(np.int64, copy=False))
    return index if index.is_unique else None


def matched_rows(small: SmallSide, big: pa.Table, spec: JoinSpec, small_is_left: bool) -> Rows | None:
    """Row numbers of each output row on the left and the right side, or None when the hash join must run."""
    if len(spec.left_on) != 1 or spec.how not in (_BIG_IS_RIGHT if small_is_left else _BIG_IS_LEFT):
        return None
    small_key, big_key = (spec.left_on[0], spec.right_on[0]) if small_is_left else (spec.right_on[0], spec.left_on[0])
    keys = big.column(big_key)
    index = small.index(small_key)
    if index is None or not _is_integer(keys.type):
        return None
    found = index.get_indexer(pc.fill_null(keys, 0).to_numpy().astype(np.int64, copy=False))
    if keys.null_count:  # a null key never matches
        found[pc.is_null(keys).to_numpy(zero_copy_only=False)] = -1
    hit = found >= 0
    everyone = np.arange(big.num_rows, dtype=np.int64)
    if spec.how in ("left", "right"):  # every big-side row, its partner null where there is none
        partner = pa.array(found, mask=~hit)
        return (partner, pa.array(everyone)) if small_is_left else (pa.array(everyone), partner)
    if spec.how == "anti":
        return pa.array(everyone[~hit]), None
    rows = pa.array(everyone[hit])
    if spec.how == "semi":
        return rows, None
    partner = pa.array(found[hit])
    return (partner, rows) if small_is_left else (rows, partner)
