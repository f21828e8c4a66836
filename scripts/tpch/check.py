"""Reference answers and the comparison: duckdb runs the official query text (`PRAGMA tpch(N)`) over the
same Parquet files, and an answer is right when it has the same rows, columns and order.

Values compare by kind: floats (decimals as floats) to a relative 1e-9, everything else exactly. With an
ORDER BY, rows compare in order, except that rows tied on the ORDER BY keys may come in any order among
themselves; without one, both answers are sorted first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from tpch.data import TABLES, connect, table_path

RELATIVE = 1e-9
TINY = 1e-12  # floats this close to zero count as equal to it: a relative tolerance has no grip there

Row = tuple[Any, ...]


def reference_connection(where: Path) -> duckdb.DuckDBPyConnection:
    """A duckdb connection with the TPC-H extension and one view per table over its Parquet file."""
    con = connect()
    for table in TABLES:
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{table_path(where, table)}')")
    return con


def reference(con: duckdb.DuckDBPyConnection, number: int) -> tuple[list[str], list[Row]]:
    """duckdb's answer to query `number`: column names and rows."""
    table = con.execute(f"PRAGMA tpch({number})").to_arrow_table()
    return table.column_names, _rows(table)


def _plain(value: Any) -> Any:
    """One value as a comparable Python value: decimals as floats, timestamps at midnight as dates."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime) and value.time() == datetime.min.time():
        return value.date()
    return value


def _rows(table: pa.Table) -> list[Row]:
    columns = [[_plain(v) for v in column.to_pylist()] for column in table.columns]
    return list(zip(*columns)) if columns else []


def answer_rows(df: pd.DataFrame) -> tuple[list[str], list[Row]]:
    """Column names and rows of an answer computed by the framework."""
    return [str(c) for c in df.columns], _rows(pa.Table.from_pandas(df, preserve_index=False))


def same(a: Any, b: Any) -> bool:
    """Equal values: floats within the tolerance, anything else exactly and of the same kind."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
        return numbers and math.isclose(a, b, rel_tol=RELATIVE, abs_tol=TINY)
    return type(a) is type(b) and a == b


def _sort_key(row: Row) -> tuple:
    """A total order over rows that may hold None and values of different kinds."""
    return tuple((v is None, type(v).__name__, v if v is not None else 0) for v in row)


def _tie_groups(rows: list[Row], keys: list[int]) -> list[int]:
    """For each row, the number of its run of rows with equal ORDER BY keys."""
    groups: list[int] = []
    for i, row in enumerate(rows):
        tied = i > 0 and all(row[k] == rows[i - 1][k] for k in keys)
        groups.append(0 if i == 0 else groups[-1] + (not tied))
    return groups


def _arranged(expected: list[Row], actual: list[Row], keys: list[int]) -> tuple[list[Row], list[Row]]:
    """Both answers with rows tied on the ORDER BY keys (all rows, without keys) sorted among themselves."""
    groups = _tie_groups(expected, keys) if keys else [0] * len(expected)

    def arrange(rows: list[Row]) -> list[Row]:
        return [row for _, row in sorted(zip(groups, rows), key=lambda gr: (gr[0], _sort_key(gr[1])))]
    return arrange(expected), arrange(actual)


def _row_difference(names: Sequence[str], i: int, expected: Row, actual: Row) -> str | None:
    for name, e, a in zip(names, expected, actual):
        if not same(e, a):
            return f"row {i}, column {name}: {a!r}, expected {e!r}"
    return None


def difference(expected: tuple[list[str], list[Row]], actual: tuple[list[str], list[Row]],
               order_by: Sequence[str]) -> str | None:
    """The first difference between two answers, or None when they agree; `order_by`: the ORDER BY's
    output columns, in order (none: compared as sets of rows)."""
    (names, want), (got_names, got) = expected, actual
    if got_names != names:
        return f"columns {got_names}, expected {names}"
    if len(got) != len(want):
        return f"{len(got)} rows, expected {len(want)}"
    keys = [names.index(k) for k in order_by]
    for i, (e, a) in enumerate(zip(want, got)):
        if not all(same(e[k], a[k]) for k in keys):
            return f"row {i}: order keys {[a[k] for k in keys]}, expected {[e[k] for k in keys]}"
    want, got = _arranged(want, got, keys)
    for i, (e, a) in enumerate(zip(want, got)):
        found = _row_difference(names, i, e, a)
        if found:
            return found
    return None
