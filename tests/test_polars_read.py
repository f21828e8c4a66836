"""Parquet chunks decoded by Polars' reader come back exactly as pyarrow's reader gives them (types, values,
nulls, row order, filters), and where Polars may not read a file it is left to pyarrow, errors included."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipeline.errors import InputError
from pipeline.io import FileSource, polars_read
from pipeline.io.source import _parquet_fragment

pytest.importorskip("polars")
ROWS = 2_000


def _table(rows: int) -> pa.Table:
    """Every plain type, each with nulls; strings repeat (dictionary-encoded in the file) or are unique."""
    n = range(rows)
    return pa.table({
        "id": pa.array(n, pa.int64()),
        "small": pa.array([None if i % 7 == 0 else i % 100 for i in n], pa.int32()),
        "byte": pa.array([i % 256 for i in n], pa.uint8()),
        "x": pa.array([None if i % 11 == 0 else float("nan") if i % 13 == 0 else i / 3 for i in n], pa.float64()),
        "flag": pa.array([None if i % 5 == 0 else i % 2 == 0 for i in n], pa.bool_()),
        "kind": pa.array([None if i % 17 == 0 else ["MAIL", "SHIP", "AIR", "ÄÖÜ €"][i % 4] for i in n]),
        "text": pa.array([None if i % 19 == 0 else "" if i % 23 == 0 else f"comment {i} ✓" for i in n]),
        "day": pa.array([None if i % 29 == 0 else dt.date(1992, 1, 1) + dt.timedelta(days=i) for i in n]),
        "price": pa.array([None if i % 31 == 0 else Decimal(i * 7919 % 100000) / 100 for i in n],
                          pa.decimal128(15, 2)),
        "rate": pa.array([Decimal(i) / 10**10 for i in n], pa.decimal128(38, 10)),
    })


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("plain")
    whole = _table(ROWS)
    pq.write_table(whole.slice(0, ROWS // 2), folder / "part-0.parquet", row_group_size=300)
    pq.write_table(whole.slice(ROWS // 2), folder / "part-1.parquet", row_group_size=250)
    return folder


@pytest.fixture
def polars_reads():
    """Polars' reader on in this process for the test (a worker's start-up turns it on for good)."""
    polars_read.enable()
    try:
        yield
    finally:
        polars_read._enabled = False


def _same(got: pa.Table, expected: pa.Table) -> bool:
    """Equal tables, NaN equal to NaN (Arrow's `equals` never finds a NaN equal) but not to a null."""
    def plain(table: pa.Table) -> pa.Table:
        columns = [pc.if_else(pc.is_nan(c), -1.0, c) if pa.types.is_floating(c.type) else c for c in table.columns]
        nans = [pc.is_nan(c) for c in table.columns if pa.types.is_floating(c.type)]
        return pa.table(columns + nans, names=table.column_names + [f"nan {i}" for i in range(len(nans))])

    return got.schema == expected.schema and plain(got).equals(plain(expected))


def _chunks(source: FileSource, enabled: bool) -> list[pa.Table]:
    polars_read._enabled = enabled
    source, chunks = source.discover()
    return [source.read(chunk) for chunk in chunks]


FILTERS = [
    None,
    [("small", ">", 40)],  # a projected column
    [("day", ">=", dt.date(1993, 6, 1)), ("day", "<", dt.date(1995, 1, 1))],  # a column not projected
    [[("kind", "in", ["MAIL", "ÄÖÜ €"])], [("price", "<", Decimal("100.00"))]],  # OR of two clauses
    [("kind", "not in", ["MAIL"]), ("flag", "!=", True), ("small", "<=", 90)],  # nulls in each column
    [("x", ">=", 100.0)],  # NaN: Arrow filters floats
    [("price", "<", 100.0), ("small", "==", 7.0)],  # values not of their column's kind: Arrow filters
]
BY_POLARS = [None, True, True, True, True, False, False]  # whether Polars applies each filter itself
COLUMNS = [None, ["id", "x", "kind", "price"], ["text", "flag", "rate"]]


@pytest.mark.parametrize("chunk_rows", [250, 700, 10**9])
@pytest.mark.parametrize("filters", FILTERS, ids=["none", "projected", "unprojected", "or", "nulls", "nan", "mixed"])
@pytest.mark.parametrize("columns", COLUMNS, ids=["all", "some", "others"])
def test_polars_reads_what_pyarrow_reads(files: Path, polars_reads, chunk_rows: int, filters, columns):
    source = FileSource(str(files), columns=columns, filters=filters, chunk_rows=chunk_rows)
    fast, plain = _chunks(source, True), _chunks(source, False)
    assert sum(t.num_rows for t in plain) > 0
    assert [t.schema for t in fast] == [t.schema for t in plain]
    for got, expected in zip(fast, plain, strict=True):
        assert _same(got, expected)


@pytest.mark.parametrize(("filters", "by_polars"), list(zip(FILTERS[1:], BY_POLARS[1:])))
def test_polars_applies_the_filters_it_applies_alike(files: Path, filters, by_polars: bool):
    """Which of the filters compared above Polars applies itself, so the comparison covers both ways."""
    source, _ = FileSource(str(files)).discover()
    clauses = filters if isinstance(filters[0], list) else [filters]
    assert (polars_read._predicate(clauses, source.schema) is not None) == by_polars


def test_each_chunk_is_decoded_by_polars(files: Path, polars_reads):
    """The comparison above compares two readers: here Polars gives a table for every piece itself."""
    source, chunks = FileSource(str(files), columns=["id", "kind"], chunk_rows=700).discover()
    for piece in (piece for chunk in chunks for piece in chunk.pieces):
        fragment = _parquet_fragment(piece.path, piece.partition)
        table = polars_read.read(piece.path, fragment, piece.row_groups, source.schema, ["id", "kind"], None)
        assert table is not None and table.num_rows == piece.rows


def test_what_polars_may_not_read_is_left_to_pyarrow(tmp_path: Path, polars_reads):
    """A timestamp column (its unit and zone are pyarrow's to decide), row groups that are not consecutive,
    and a filter given as an expression (its columns unknown) all read through pyarrow."""
    stamps = pa.table({"id": [1, 2], "at": pa.array([dt.datetime(2020, 1, 1), None], pa.timestamp("us"))})
    pq.write_table(stamps, tmp_path / "stamps.parquet")
    source, chunks = FileSource(str(tmp_path / "stamps.parquet")).discover()
    piece = chunks[0].pieces[0]
    fragment = _parquet_fragment(piece.path, piece.partition)
    assert polars_read.read(piece.path, fragment, None, source.schema, ["id", "at"], None) is None
    assert source.read(chunks[0]).equals(stamps)
    assert polars_read.read(piece.path, fragment, [0], source.schema, ["id"], None) is not None
    assert polars_read.read(piece.path, fragment, [0, 2], source.schema, ["id"], None) is None
    import pyarrow.dataset as ds

    by_expression = FileSource(str(tmp_path / "stamps.parquet"), filters=ds.field("id") > 1)
    assert _chunks(by_expression, True)[0].column("id").to_pylist() == [2]


def test_a_corrupt_file_is_named_as_without_polars(files: Path, tmp_path: Path, polars_reads):
    good = (files / "part-0.parquet").read_bytes()
    bad = tmp_path / "bad.parquet"
    source, chunks = FileSource(str(files / "part-0.parquet")).discover()
    bad.write_bytes(good)
    source, chunks = FileSource(str(bad)).discover()  # the footer is sound: the row data is not
    bad.write_bytes(good[:4] + b"\xff" * (len(good) // 2 - 4) + good[len(good) // 2:])
    with pytest.raises(InputError, match="bad.parquet"):
        for chunk in chunks:
            source.read(chunk)
