"""The data side of a shuffle ("exchange"): map tasks split their chunk by partition into one Arrow IPC file
each, reduce tasks read one partition back from every map file. Files sit at the boundary so any engine
(threads, processes, a cluster) can run either side, a retried map task just rewrites its file, and a reduce
task touches only its own rows (the files are memory-mapped). Partition ids depend only on key values, never
on the process or its hash seed.

    map task 0: chunk 0 -> hash/range_partitions -> write_map_output -> exchange/map-0.arrow --+
    map task 1: chunk 1 -> hash/range_partitions -> write_map_output -> exchange/map-1.arrow --+
                                                                                               |
    reduce task 2: read_partition([map-0, map-1], 2) <-----------------------------------------+
                   (partition 2 of map-0, then of map-1, each in row order)

    exchange/map-0.arrow
    +---------------------------------------------------------------+
    | Arrow IPC stream: schema, batch, batch   partition 0, in order |
    | Arrow IPC stream: schema                 partition 1 (empty)   |
    | Arrow IPC stream: schema, batch          partition 2           |
    | footer: where each stream starts (int64 × n+1), n, magic       |  (a file of pieces: io/indexed.py)
    +---------------------------------------------------------------+

A stream per partition, not one IPC file: a reduce task opens every map file for its one partition, and an
IPC file's footer lists every batch of every partition, which costs more to parse than the partition's own
stream does to read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.io import indexed

BATCH_ROWS = 65_536  # a reader can go through a big partition in pieces of at most this many rows...
BATCH_BYTES = 4 * 1024**2  # ...or about this many bytes
# times to microseconds, dates to days: (multiply by, then divide by)
_COMMON_UNIT = {"s": (10**6, 1), "ms": (1000, 1), "us": (1, 1), "ns": (1, 1000), None: (1, 1), "date64": (1, 86400000)}
_MIX = np.uint64(0x9E3779B97F4A7C15)
_PLAIN = {pa.string_view(): pa.large_string(), pa.binary_view(): pa.large_binary()}
_TEXT = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view, pa.types.is_binary,
         pa.types.is_large_binary, pa.types.is_binary_view)


@dataclass
class MapOutput:
    """What a map task hands back: small, so it travels cheaply to the planner."""

    path: str
    rows: list[int]  # rows per partition
    bytes: list[int]  # approximate bytes per partition


# ---- hash partitioning -------------------------------------------------------------------------------------


def hash_partitions(
    table: pa.Table, keys: Sequence[str], n: int, as_types: Sequence[pa.DataType | None] | None = None
) -> np.ndarray:
    """Partition id (0..n-1) of each row, equal for equal keys in any process and across tables whose key
    columns differ only in number type (ints of any width, floats and decimals of any scale agree by value,
    as a join compares them; exactly up to 2**53), string kind or dictionary encoding, or timestamp unit.
    `as_types` casts keys first. A row with a null (or NaN) key goes to partition 0.

    >>> hash_partitions(pa.table({"k": [5, None]}), ["k"], 4)[1]
    np.int64(0)
    """
    combined = np.zeros(table.num_rows, dtype=np.uint64)
    null = np.zeros(table.num_rows, dtype=bool)
    for i, key in enumerate(keys):
        column = table[key] if as_types is None or as_types[i] is None else pc.cast(table[key], as_types[i])
        parts = [_hash_array(chunk) for chunk in column.chunks]  # chunks may carry different dictionaries
        if parts:
            combined = combined * _MIX + np.concatenate([hashes for hashes, _ in parts])
            null |= np.concatenate([nulls for _, nulls in parts])
    ids = (combined % np.uint64(n)).astype(np.int64)
    ids[null] = 0
    return ids


def _hash_array(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(uint64 hash, null mask) per value, the hash from a canonical form so allowed type variants agree."""
    kind = array.type
    if pa.types.is_dictionary(kind):
        return _spread(*_hash_array(array.dictionary), array.indices)
    if any(test(kind) for test in _TEXT):  # only the distinct values become Python objects
        encoded = pc.dictionary_encode(_plain_text(array))
        values = encoded.dictionary.to_numpy(zero_copy_only=False)
        return _spread(pd.util.hash_array(values, categorize=False), np.zeros(len(values), bool), encoded.indices)
    null = array.is_null(nan_is_null=True).to_numpy(zero_copy_only=False)
    if pa.types.is_null(kind):
        return np.zeros(len(array), dtype=np.uint64), null
    if pa.types.is_decimal(kind):  # by value, as a join compares it with an int or float key
        array = array.cast(pa.float64())
    return pd.util.hash_array(_canonical_int64(array)), null


def _spread(hashes: np.ndarray, nulls: np.ndarray, indices: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of dictionary values handed to the rows that point at them (a null index points past the end)."""
    positions = indices.cast(pa.int64()).fill_null(len(hashes)).to_numpy()
    return np.append(hashes, np.uint64(0))[positions], np.append(nulls, True)[positions]


def _plain_text(array: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """View types as their large kin, the same values: not every kernel (take, rank) takes views."""
    return array.cast(_PLAIN[array.type]) if array.type in _PLAIN else array


def _without_views(table: pa.Table) -> pa.Table:
    return table.cast(pa.schema([field.with_type(_PLAIN.get(field.type, field.type)) for field in table.schema]))


def _canonical_int64(array: pa.Array) -> np.ndarray:
    """Numbers, booleans and times as int64: integral floats as their integer, times in microseconds (equal
    instants agree whatever the unit; wrapping arithmetic keeps that true out of range), dates in days."""
    kind = array.type
    if pa.types.is_floating(kind):
        values = array.cast(pa.float64()).fill_null(0).to_numpy(zero_copy_only=False) + 0.0  # -0.0 -> 0.0
        integral = np.isfinite(values) & (values == np.round(values)) & (np.abs(values) < 2.0**63)
        return np.where(integral, np.where(integral, values, 0.0).astype(np.int64), values.view(np.int64))
    if pa.types.is_temporal(kind) and kind.bit_width in (32, 64):
        raw = array.view(pa.int32() if kind.bit_width == 32 else pa.int64()).fill_null(0).to_numpy()
        multiply, divide = _COMMON_UNIT["date64" if pa.types.is_date64(kind) else getattr(kind, "unit", None)]
        return raw.astype(np.int64) * multiply // divide
    if pa.types.is_boolean(kind):
        array = array.cast(pa.int8())
    elif not pa.types.is_integer(kind):
        raise TypeError(f"cannot hash keys of type {kind}")
    return array.fill_null(0).to_numpy().astype(np.int64)


# ---- range partitioning (global sort) ----------------------------------------------------------------------


def range_partitions(
    table: pa.Table, keys: Sequence[str], ascending: Sequence[bool], boundaries: pa.Table
) -> np.ndarray:
    """Partition id of each row for a global sort: partition i holds the rows after boundary i-1 up to and
    including boundary i, so rows equal to a boundary stay together and a stable sort stays stable. Nulls
    (and NaN) sort last in every column, whatever the direction; a categorical key sorts in the order of its
    categories, as pandas does, which every map piece must then share."""
    if (found := _by_binary_search(table, keys, ascending, boundaries)) is not None:
        return found
    categories = _categories(table, keys)
    ordered = [_key_columns(boundaries, keys, categories), _key_columns(table, keys, categories)]
    ranks = _sort_key(pa.concat_tables(ordered, promote_options="permissive"), keys, ascending)
    cut = boundaries.num_rows
    return np.searchsorted(np.unique(ranks[:cut]), ranks[cut:], side="left").astype(np.int64)


def _by_binary_search(table: pa.Table, keys: Sequence[str], ascending: Sequence[bool],
                      boundaries: pa.Table) -> np.ndarray | None:
    """`range_partitions` of one ascending integer key with no nulls on either side, by a binary search of
    the boundaries: ranking every value takes a hash table of them, several times slower. None otherwise."""
    if len(keys) != 1 or not ascending[0]:
        return None
    column, bounds = table[keys[0]], boundaries[keys[0]]
    signed = pa.types.is_signed_integer
    if not all(pa.types.is_integer(c.type) for c in (column, bounds)) or signed(column.type) != signed(bounds.type):
        return None
    if column.null_count or bounds.null_count:
        return None
    values = column.to_numpy() if column.num_chunks != 1 else column.chunk(0).to_numpy()
    return np.searchsorted(np.unique(bounds.to_numpy()), values, side="left").astype(np.int64)


def sample_keys(table: pa.Table, keys: Sequence[str], size: int) -> pa.Table:
    """Up to `size` evenly spaced rows of the key columns (no randomness: a retried task samples the same)."""
    count = min(size, table.num_rows)
    positions = (np.arange(count) * 2 + 1) * table.num_rows // max(2 * count, 1)
    return _without_views(table.select(list(keys)).replace_schema_metadata(None)).take(positions)


def choose_boundaries(
    samples: pa.Table | Sequence[pa.Table], keys: Sequence[str], ascending: Sequence[bool], n: int
) -> pa.Table:
    """At most n-1 distinct boundary rows (plain values, no dictionaries) cutting the sorted samples at even
    quantiles; fewer when keys repeat: fewer, fuller partitions rather than empty ones."""
    if not isinstance(samples, pa.Table):
        samples = pa.concat_tables([s.select(list(keys)) for s in samples], promote_options="permissive")
    values = _key_columns(samples, keys, {})
    if n <= 1 or samples.num_rows == 0:
        return values.slice(0, 0)
    ranks = _sort_key(_key_columns(samples, keys, _categories(samples, keys)), keys, ascending)
    order = np.argsort(ranks, kind="stable")
    positions = order[np.arange(1, n) * samples.num_rows // n]
    _, first = np.unique(ranks[positions], return_index=True)
    return values.take(positions[first])


def _categories(table: pa.Table, keys: Sequence[str]) -> dict[str, pa.Array]:
    """The categories, in order, of each dictionary-encoded key."""
    found = {}
    for key in keys:
        if pa.types.is_dictionary(table[key].type):
            column = _one_dictionary(table[key])
            found[key] = column.chunk(0).dictionary if column.num_chunks else pa.array([], column.type.value_type)
    return found


def _key_columns(table: pa.Table, keys: Sequence[str], categories: dict[str, pa.Array]) -> pa.Table:
    """The key columns in a form the sort kernels take, ordered as pandas orders them: dictionaries decoded,
    and a key in `categories` as each value's position there; views as plain strings; NaN as null."""
    columns = []
    for key in keys:
        column = table[key]
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if key in categories:
            column = pc.index_in(column, value_set=categories[key])
        column = _plain_text(column)
        if pa.types.is_floating(column.type):
            column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
        columns.append(column)
    return pa.table(columns, names=list(keys))


def _one_dictionary(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A dictionary column whose chunks all share one dictionary."""
    return pa.table({"k": column}).unify_dictionaries()["k"]


def _sort_key(table: pa.Table, keys: Sequence[str], ascending: Sequence[bool]) -> np.ndarray:
    """One int64 per row that orders rows as the sort does (equal rows equal): the column ranks packed into
    one number when they fit, else ranked together."""
    columns = [_column_rank(table[key], up) for key, up in zip(keys, ascending)]
    widths = [int(c.max(initial=0)) + 1 for c in columns]
    if math.prod(widths) < 2**62:
        packed = np.zeros(table.num_rows, dtype=np.int64)
        for column, width in zip(columns, widths):
            packed = packed * width + column
        return packed
    order = np.lexsort(columns[::-1])
    ordered = np.stack([c[order] for c in columns])
    ranks = np.empty(table.num_rows, dtype=np.int64)
    ranks[order] = np.concatenate([[0], np.cumsum(np.any(ordered[:, 1:] != ordered[:, :-1], axis=0))])
    return ranks


def _column_rank(column: pa.ChunkedArray, ascending: bool) -> np.ndarray:
    """Dense rank of each value, nulls last: only the distinct values get sorted (sorting whole string
    columns is several times slower), then each row takes its value's rank."""
    if pa.types.is_null(column.type) or len(column) == 0:  # all alike
        return np.zeros(len(column), dtype=np.int64)
    encoded = _one_dictionary(pc.dictionary_encode(column))
    values = encoded.chunk(0).dictionary
    ranks = pc.rank(values, sort_keys="ascending" if ascending else "descending", tiebreaker="dense")
    ranks = np.append(ranks.to_numpy().astype(np.int64), len(values) + 1)  # the last for null
    indices = pa.chunked_array([chunk.indices for chunk in encoded.chunks]).fill_null(len(values))
    return ranks[indices.to_numpy()]


# ---- map files ---------------------------------------------------------------------------------------------


def write_map_output(path: str, table: pa.Table, partitions: np.ndarray, n: int) -> MapOutput:
    """Write `table`'s rows grouped by partition, each partition's rows in their original order (a later
    stable sort relies on it), into one file at `path` (see the module docstring), replacing any earlier
    attempt at once."""
    partitions = np.asarray(partitions, dtype=np.int64)
    if len(partitions) != table.num_rows or (len(partitions) and not 0 <= partitions.min() <= partitions.max() < n):
        raise ValueError(f"need one partition id in 0..{n - 1} per row")
    narrow = np.uint16 if n <= 1 << 16 else np.int64  # a stable sort of 16-bit numbers is a radix sort
    order = np.argsort(partitions.astype(narrow), kind="stable")
    plain = _without_views(table.replace_schema_metadata(None))
    grouped = plain.take(order).unify_dictionaries()  # one dictionary per column in every stream
    rows = np.bincount(partitions, minlength=n)
    starts = np.concatenate([[0], np.cumsum(rows)])
    row_bytes = grouped.nbytes / max(grouped.num_rows, 1)  # the sizes of slices, estimated once: measuring
    pieces = [_pieces(grouped.slice(starts[p], rows[p]), row_bytes) for p in range(n)]  # each costs more
    _write_map_file(path, grouped.schema, pieces)
    return MapOutput(path, rows.tolist(), [round(r * row_bytes) for r in rows.tolist()])


def _pieces(part: pa.Table, row_bytes: float) -> list[pa.RecordBatch]:
    """One partition's rows as batches of at most BATCH_ROWS rows and about BATCH_BYTES, evenly sized."""
    count = max(math.ceil(part.num_rows / BATCH_ROWS), math.ceil(part.num_rows * row_bytes / BATCH_BYTES), 1)
    size = max(math.ceil(part.num_rows / count), 1)
    return [batch for batch in part.to_batches(max_chunksize=size) if batch.num_rows]


def _write_map_file(path: str, schema: pa.Schema, pieces: list[list[pa.RecordBatch]]) -> None:
    """A stream per partition, as a file of pieces (`indexed`): written whole, and a retry replaces it."""

    def write_stream(sink: pa.NativeFile, partition: int) -> None:
        with pa.ipc.new_stream(sink, schema) as writer:
            for batch in pieces[partition]:
                writer.write_batch(batch)

    indexed.write_pieces(path, len(pieces), write_stream)


def read_partition(paths: Sequence[str], partition: int, schema: pa.Schema | None = None) -> pa.Table:
    """All rows of `partition`, in map-file order then row order, as one table. Schemas that differ across
    files only in nullability or width are promoted and dictionaries unified; `schema`, when given, is the
    exact result schema (and that of the empty table when there are no files)."""
    parts = [_file_part(path, partition) for path in paths]
    if not parts:
        return (schema or pa.schema([])).empty_table()
    table = pa.concat_tables(parts, promote_options="permissive").unify_dictionaries()
    return table.select(schema.names).cast(schema) if schema is not None else table


def read_maps(paths: Sequence[str]) -> pa.Table:
    """Every row of the map files at `paths`, each file read once: a whole exchanged side, as a broadcast."""
    parts = [_stream(piece) for path in paths for piece in indexed.read_pieces(path)]
    return pa.concat_tables(parts, promote_options="permissive").unify_dictionaries()


def partition_sizes(outputs: Sequence[MapOutput], n: int) -> tuple[list[int], list[int]]:
    """Total (rows, bytes) per partition over all map outputs: how the planner spots a skewed partition."""
    return [sum(o.rows[p] for o in outputs) for p in range(n)], [sum(o.bytes[p] for o in outputs) for p in range(n)]


def _file_part(path: str, partition: int) -> pa.Table:
    """One file's rows of `partition`: only the footer and this partition's stream are read, and the rows
    stay valid after the file is closed (or replaced by a retry)."""
    return _stream(indexed.read_piece(path, partition))


def _stream(piece: pa.Buffer) -> pa.Table:
    """A map file's piece: one partition's Arrow stream."""
    with pa.ipc.open_stream(piece) as reader:
        return reader.read_all().replace_schema_metadata(None)
