"""Batch formats a stage can work in: pandas (the default), Arrow tables, Polars frames, lazy Polars frames.

A chunk is read as an Arrow table and converted only where the next consumer wants another format: a
chain of Arrow stages never touches pandas, and a Polars chain converts once in and once out. Polars is
imported only when a batch is converted to or from it. A "polars-lazy" chain is a query, not data: the
source may hand it a scan of the chunk's files (`FileSource.scan`), and nothing runs until a consumer that
wants data (the aggregate's partial, a part write) collects it, so Polars fuses the whole chain and pushes
projections and filters into its own Parquet reader. Its row counts are unknown until then (`rows` is None).
Decimal columns become Arrow-backed pandas columns (`pd.ArrowDtype`), so they stay exact decimals without a
Python object per value, and convert back to the same Arrow decimal type.

>>> import pyarrow as pa
>>> from decimal import Decimal
>>> table = pa.table({"a": [1, 2], "price": pa.array([Decimal("1.10"), None], pa.decimal128(15, 2))})
>>> df = convert(table, "pandas")
>>> format_of(df), rows(table), str(df["price"].dtype), to_arrow(df).schema.field("price").type
('pandas', 2, 'decimal128(15, 2)[pyarrow]', Decimal128Type(decimal128(15, 2)))
"""

from __future__ import annotations

import sys
from typing import Any

import pandas as pd
import pyarrow as pa

FORMATS = ("pandas", "arrow", "polars", "polars-lazy")
Batch = Any  # pd.DataFrame | pa.Table | polars.DataFrame | polars.LazyFrame


def format_of(batch: Batch) -> str:
    if isinstance(batch, pd.DataFrame):
        return "pandas"
    if isinstance(batch, pa.Table):
        return "arrow"
    polars = sys.modules.get("polars")
    if polars is not None and isinstance(batch, polars.DataFrame):
        return "polars"
    if polars is not None and isinstance(batch, polars.LazyFrame):
        return "polars-lazy"
    raise TypeError(f"expected a pandas DataFrame, pyarrow Table or polars DataFrame, got {type(batch).__name__}")


def convert(batch: Batch, to: str) -> Batch:
    """`batch` in format `to`; the same object when it already is."""
    have = format_of(batch)
    if have == to:
        return batch
    if to == "polars-lazy":
        return convert(batch, "polars").lazy()
    if have == "polars-lazy":
        return convert(batch.collect(), to)
    table = to_arrow(batch)
    if to == "pandas":
        return table.to_pandas(types_mapper=pandas_dtype)
    if to == "polars":
        import polars

        return polars.from_arrow(table)
    return table


def pandas_dtype(arrow_type: pa.DataType) -> pd.ArrowDtype | None:
    """The pandas dtype an Arrow column converts to where the default will not do: a decimal or a date stays
    Arrow-backed, where the default makes a Python object per value (a `Decimal`, which arithmetic cannot mix
    with numbers; a `datetime.date`, which compares several times slower). None keeps the default."""
    return pd.ArrowDtype(arrow_type) if pa.types.is_decimal(arrow_type) or pa.types.is_date(arrow_type) else None


def is_decimal(dtype: Any) -> bool:
    """Whether a pandas column of this dtype holds Arrow decimals."""
    return isinstance(dtype, pd.ArrowDtype) and pa.types.is_decimal(dtype.pyarrow_dtype)


def to_arrow(batch: Batch) -> pa.Table:
    have = format_of(batch)
    if have == "arrow":
        return batch
    if have == "pandas":
        return pa.Table.from_pandas(batch, preserve_index=False)
    if have == "polars-lazy":
        return batch.collect().to_arrow()
    return batch.to_arrow()


def rows(batch: Batch) -> int | None:
    """The batch's row count; None for a lazy frame, whose rows exist only once it is collected."""
    if isinstance(batch, pa.Table):
        return batch.num_rows
    if format_of(batch) == "polars-lazy":
        return None
    return len(batch)


def nbytes(batch: Batch) -> int | None:
    """The batch's size in memory, as each library counts it without walking Python objects (pandas' object
    columns count their pointers only); None for a lazy frame."""
    kind = format_of(batch)
    if kind == "arrow":
        return batch.nbytes
    if kind == "pandas":
        return int(batch.memory_usage(index=False, deep=False).sum())
    return None if kind == "polars-lazy" else int(batch.estimated_size())
