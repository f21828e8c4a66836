"""Hive-partitioned output: a part's rows are split by the values of the partition columns, and each group is
written as `col=value/.../part-NNNNN.<format>` without those columns, whose values live in the path.

Values are written as Arrow casts them to text (ints, dates `2013-01-05`, booleans `true`) and percent-encoded
(`a/b c` → `a%2Fb%20c`), so a value can never add a folder level; a null is `__HIVE_DEFAULT_PARTITION__`.
That is the layout hive-aware readers decode back into columns.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.errors import ConfigError, SinkError
from pipeline.io.manifest import SUCCESS, Manifest

NULL_VALUE = "__HIVE_DEFAULT_PARTITION__"
_ROWS = "__rows"  # the row-number column grouped alongside the keys; partition names cannot start with "_"


def check_partition_by(columns: Sequence[str] | None) -> tuple[str, ...] | None:
    """The partition columns as a tuple (None: not partitioned), refusing before anything runs what could not
    make a tree that reads back: no column, a repeated one, or a name that is not a plain folder name (readers
    skip folders starting with '.' or '_')."""
    if columns is None:
        return None
    if isinstance(columns, str):
        raise ConfigError(f"sink.partition_by: expected a list of column names, got {columns!r}")
    names = tuple(columns)
    if not names:
        raise ConfigError("sink.partition_by: expected at least one column (or leave partition_by out)")
    for name in names:
        if not isinstance(name, str) or not name or name.startswith((".", "_")) or any(c in name for c in "/=\\"):
            raise ConfigError(
                f"sink.partition_by: {name!r} cannot name a partition folder "
                "(expected a non-empty name without '/', '\\' or '=', not starting with '.' or '_')"
            )
    if len(set(names)) < len(names):
        raise ConfigError(f"sink.partition_by: a column is listed twice in {list(names)}")
    return names


def check_appended_layout(path: str, partition_by: tuple[str, ...] | None) -> None:
    """Appended parts must follow the existing tree's partitioning, or it would no longer read as one table."""
    if not os.path.isfile(os.path.join(path, SUCCESS)):
        return
    refuse_other_layout(path, Manifest.read(path).partition_by, partition_by)


def refuse_other_layout(path: str, existing: Sequence[str], partition_by: Sequence[str] | None) -> None:
    """SinkError unless the committed output's partitioning (`existing`, from its manifest) is `partition_by`."""
    existing, wanted = list(existing or ()), list(partition_by or ())
    if existing != wanted:
        raise SinkError(
            f"output {path} is partitioned by {existing or 'nothing'}; "
            f"cannot append parts partitioned by {wanted or 'nothing'}"
        )


def split_partitions(table: pa.Table, columns: tuple[str, ...], chunk: int | None) -> list[tuple[str, pa.Table]]:
    """(folder, rows without the partition columns) for each distinct combination of partition values, in the
    order they first appear; rows keep their order within a folder. A chunk without rows has no folders."""
    _check_columns(table, columns, chunk)
    keys = table.select(list(columns)).append_column(_ROWS, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    try:
        groups = keys.group_by(list(columns), use_threads=False).aggregate([(_ROWS, "list")])
        folders = _folders(groups, columns)
    except pa.ArrowException as exc:
        where = f"the output of chunk {chunk} by {list(columns)}"
        raise SinkError(f"sink.partition_by: cannot partition {where}: {exc}") from None
    data = table.drop_columns(list(columns))
    rows = groups.column(f"{_ROWS}_list").combine_chunks()
    return [(folder, data.take(rows[i].values)) for i, folder in enumerate(folders)]


def _check_columns(table: pa.Table, columns: tuple[str, ...], chunk: int | None) -> None:
    """Only the written data tells whether it has the columns: a stage may add or drop them."""
    missing = [name for name in columns if name not in table.column_names]
    if missing:
        raise SinkError(
            f"sink.partition_by: column {missing[0]!r} is not in the output of chunk {chunk} "
            f"(its columns: {', '.join(table.column_names)})"
        )
    if len(table.column_names) == len(columns):
        raise SinkError(
            f"sink.partition_by: every column of chunk {chunk}'s output is a partition column; "
            "its files would hold no columns (and so no rows)"
        )


def _folders(groups: pa.Table, columns: tuple[str, ...]) -> list[str]:
    """`col=value/col=value` for each group."""
    segments = [_segments(groups.column(name), name) for name in columns]
    return ["/".join(parts) for parts in zip(*segments)]


def _segments(values: pa.ChunkedArray, name: str) -> list[str]:
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    text = pc.cast(values, pa.string()).to_pylist()
    return [f"{name}={NULL_VALUE if value is None else quote(value, safe='')}" for value in text]
