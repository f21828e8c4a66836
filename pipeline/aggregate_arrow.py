"""The group-by partials and their combines computed by Arrow's hash aggregation, for the common functions
over numeric columns: one pass that hashes the keys once for every output, where pandas' group-by of
Arrow-backed columns (decimals, strings) factorizes the keys and runs a separate aggregation per column. This
matters most for many groups (an aggregate by order key), whose combines are as large as their inputs.

The states are the pandas partial's, with pandas' rules: NaN counts as missing, rows with a missing key are
dropped, the sum over no values is 0. They stay Arrow tables through the combines; `as_pandas` converts them
where the pandas side takes over (finalize, or a combine that also holds pandas states).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.batch import Batch, format_of, pandas_dtype

if TYPE_CHECKING:
    from pipeline.aggregate import AggState, GroupAggregate

FUNCTIONS = {"count", "size", "sum", "mean", "min", "max"}
_PARTIAL = {"count": "count", "sum": "sum", "min": "min", "max": "max"}
_COMBINE = {"": "sum", "count": "sum", "size": "sum", "sum": "sum", "min": "min", "max": "max"}
_ALL = pc.CountOptions(mode="all")


def arrow_partial(agg: "GroupAggregate", batch: Batch) -> "AggState | None":
    """The chunk's state by Arrow, or None when pandas must do it (another function, or a key or value type
    whose pandas semantics differ from Arrow's: categories, objects, booleans, times)."""
    from pipeline.aggregate import KEY, AggState

    if any(fn not in FUNCTIONS for _, fn, _ in agg.aggs.values()) or _pandas_key_not_plain(batch, agg.by):
        return None
    table = _table(batch, agg.columns)
    if table is None:
        return None
    types = table.schema
    if not all(_is_number(types.field(c).type) for c, _, _ in agg.aggs.values() if c not in agg.by):
        return None
    if not all(is_plain_key(types.field(c).type) for c in agg.by):
        return None
    table = _nan_as_null(table, [c for c in agg.columns if pa.types.is_floating(types.field(c).type)])
    if agg.by:
        table = table.filter(functools.reduce(pc.and_, (pc.is_valid(table[k]) for k in agg.by)))
    else:
        table = table.append_column(KEY, pa.array([0] * table.num_rows, pa.int64()))
    names = state_names(agg)
    grouped = _group(table, agg.keys, [_partial(name, agg.keys[0]) for name in names], names)
    return AggState(grouped)


def arrow_combine(agg: "GroupAggregate", frames: Sequence[pa.Table]) -> "AggState":
    """Several Arrow states as one: their groups merged, each state column by its own combine."""
    from pipeline.aggregate import AggState

    whole = pa.concat_tables(frames, promote_options="permissive")
    names = state_names(agg)
    return AggState(_group(whole, agg.keys, [(name, _COMBINE[name.partition("\0")[2]]) for name in names], names))


def finalize(agg: "GroupAggregate", state: pa.Table) -> pd.DataFrame:
    """The result of a keyed aggregate's Arrow state, as pandas' group-by gives it. Its keys are plain and
    none is missing, so Arrow's sort is pandas' group order, several keys sorted many times faster than a
    frame; the state converts once, with no index of the keys built and reset."""
    from pipeline.aggregate import STATES

    frame = state.sort_by([(key, "ascending") for key in agg.by]).to_pandas(types_mapper=pandas_dtype)
    columns = {key: frame[key] for key in agg.by}
    for out, (column, fn, _) in agg.aggs.items():
        if fn == "mean":  # a decimal sum too; as pandas converts it (Arrow's cast rounds some values otherwise)
            columns[out] = frame[f"{column}\0sum"].astype("float64") / frame[f"{column}\0count"]
        else:
            columns[out] = frame[f"{column}\0{STATES[fn][0]}"]
    return pd.DataFrame(columns)


def state_names(agg: "GroupAggregate") -> list[str]:
    """The state columns, in the pandas partial's order: rows per group, then each output's states."""
    from pipeline.aggregate import STATES

    return list(dict.fromkeys(["", *(f"{c}\0{kind}" for c, fn, _ in agg.aggs.values() for kind in STATES[fn])]))


def _group(table: pa.Table, keys: Sequence[str], aggregations: list[tuple], names: list[str]) -> pa.Table:
    grouped = table.group_by(list(keys), use_threads=False).aggregate(aggregations)
    n = len(keys)  # the keys come first or last, by Arrow version; the aggregations in the order asked
    first = grouped.column_names[:n] == list(keys)
    key_columns, states = (grouped.columns[:n], grouped.columns[n:]) if first else (grouped.columns[-n:],
                                                                                   grouped.columns[:-n])
    columns = [_zero_for_sum(column, name) for column, name in zip(states, names)]
    # one contiguous array per column: Arrow's group-by returns slices of shared buffers, and a pickled slice
    # carries its whole buffer (a combine's 32 MB state pickled to 1 GB on its way to the next task)
    return pa.table([*key_columns, *columns], names=[*keys, *names]).combine_chunks()


def _partial(name: str, key: str) -> tuple:
    """The Arrow aggregation of one state column over rows: rows per group (size) are counted over a key."""
    column, _, kind = name.partition("\0")
    if kind in ("", "size"):
        return (key, "count", _ALL)
    return (column, _PARTIAL[kind])


def _table(batch: Batch, columns: list[str]) -> pa.Table | None:
    kind = format_of(batch)
    if kind == "arrow":
        return batch.select(columns) if all(c in batch.column_names for c in columns) else None
    if kind == "pandas":
        if any(c not in batch.columns for c in columns):
            return None  # the pandas path names what is missing
        try:
            return pa.Table.from_pandas(batch[columns], preserve_index=False)  # NaN becomes null here
        except (pa.ArrowException, ValueError, TypeError):
            return None
    return None


def _pandas_key_not_plain(batch: Batch, by: Sequence[str]) -> bool:
    """Whether a pandas chunk has a key that will not convert to a plain key type (categories, booleans,
    floats, times): then the chunk is not converted to Arrow at all, which would cost as much as the group-by."""
    if format_of(batch) != "pandas":
        return False
    dtypes = [batch[c].dtype for c in by if c in batch.columns]
    return any(isinstance(d, pd.CategoricalDtype) or (isinstance(d, np.dtype) and d.kind in "bfmM") for d in dtypes)


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def is_plain_key(kind: pa.DataType) -> bool:
    """A key type whose Arrow grouping is pandas' (not categories, objects, booleans, floats or times)."""
    return (pa.types.is_integer(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)
            or pa.types.is_date(kind) or pa.types.is_decimal(kind))


def _nan_as_null(table: pa.Table, floats: list[str]) -> pa.Table:
    for name in floats:
        column = table[name]
        if pc.any(pc.is_nan(column)).as_py():
            table = table.set_column(table.schema.get_field_index(name), name,
                                     pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column))
    return table


def _zero_for_sum(column: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    """A sum over no values is 0 in pandas, where Arrow gives null."""
    if name.partition("\0")[2] != "sum" or not column.null_count:
        return column
    return pc.fill_null(column, pa.scalar(0, pa.int64()).cast(column.type))


def as_pandas(agg: "GroupAggregate", frames: list[Any]) -> list[Any]:
    """Partial frames with each run of Arrow states concatenated and converted once to a pandas state (keys
    as the index), in order; other frames as they are."""
    out: list[Any] = []
    run: list[pa.Table] = []
    for frame in [*frames, None]:
        if isinstance(frame, pa.Table):
            run.append(frame)
            continue
        if run:
            whole = pa.concat_tables(run, promote_options="permissive")
            out.append(whole.to_pandas(types_mapper=pandas_dtype).set_index(list(agg.keys)))
            run = []
        if frame is not None:
            out.append(frame)
    return out
