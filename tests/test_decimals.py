"""Parquet DECIMAL columns, as warehouses write them: read as exact Arrow-backed decimals, usable in expressions
and filters, aggregated exactly (sums equal to Python's Decimal arithmetic, digit for digit), written back as
decimals, and the same through the Polars paths."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import GroupAggregate, Pipeline, declare
from pipeline.batch import convert
from pipeline.io import FileSource
from stages.analyze import aggregate
from stages.clean import filter_rows
from stages.transform import derive

MONEY = pa.decimal128(15, 2)
ROWS = 2_400
REVENUE = "l_extendedprice * (1 - l_discount)"
CHARGE = "l_extendedprice * (1 - l_discount) * (1 + l_tax)"  # three factors: past 38 digits of declared precision


def cents(rng: np.random.Generator, low: int, high: int, rows: int) -> list[Decimal]:
    return [Decimal(int(c)).scaleb(-2) for c in rng.integers(low, high, rows)]


@pytest.fixture(scope="module")
def lineitem() -> dict[str, list]:
    """Columns as Python values: the reference the framework's answers are checked against."""
    rng = np.random.default_rng(7)
    prices = cents(rng, 90_000, 10_494_951, ROWS)
    return {
        "l_returnflag": list(rng.choice(["A", "N", "R"], ROWS)),
        "l_quantity": cents(rng, 100, 5_001, ROWS),
        "l_extendedprice": [None if i % 37 == 0 else p for i, p in enumerate(prices)],
        "l_discount": cents(rng, 0, 11, ROWS),
        "l_tax": cents(rng, 0, 9, ROWS),
    }


@pytest.fixture(scope="module")
def warehouse(lineitem: dict[str, list], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two Parquet files of decimal(15,2) columns in 300-row row groups."""
    folder = tmp_path_factory.mktemp("warehouse") / "lineitem"
    folder.mkdir()
    table = pa.table({name: pa.array(values, pa.string() if name == "l_returnflag" else MONEY)
                      for name, values in lineitem.items()})
    for i, start in enumerate((0, ROWS // 2)):
        pq.write_table(table.slice(start, ROWS // 2), folder / f"part-{i}.parquet", row_group_size=300)
    return folder


def by_flag(lineitem: dict[str, list], value) -> dict[str, list]:
    """value(row) for each row with a price, grouped by return flag."""
    groups: dict[str, list] = defaultdict(list)
    rows = [dict(zip(lineitem, values)) for values in zip(*lineitem.values())]
    for row in rows:
        if row["l_extendedprice"] is not None:
            groups[row["l_returnflag"]].append(value(row))
    return dict(sorted(groups.items()))


def test_a_chunk_reads_as_exact_arrow_backed_decimals(warehouse: Path, lineitem: dict[str, list]):
    source, chunks = FileSource(str(warehouse)).discover()
    table = source.read(chunks[0])
    assert table.schema.field("l_extendedprice").type == MONEY
    df = convert(table, "pandas")
    assert df["l_extendedprice"].dtype == pd.ArrowDtype(MONEY)
    assert not any(dtype == object for dtype in df.dtypes)  # no Python object per value
    assert df["l_discount"].tolist() == lineitem["l_discount"][: len(df)]
    assert convert(df, "arrow").schema.field("l_tax").type == MONEY


def test_derive_and_filter_compute_exact_decimals(warehouse: Path, lineitem: dict[str, list]):
    source, chunks = FileSource(str(warehouse)).discover()
    df = convert(source.read(chunks[0]), "pandas")
    out = derive(df, {"revenue": REVENUE, "charge": CHARGE, "cheap": "l_extendedprice < 1000 and l_tax > 0"})
    rows = len(df)
    prices, discounts, taxes = (lineitem[c][:rows] for c in ("l_extendedprice", "l_discount", "l_tax"))
    want = [None if p is None else p * (1 - d) for p, d in zip(prices, discounts)]
    assert [None if pd.isna(v) else v for v in out["revenue"]] == want
    charged = [None if p is None else p * (1 - d) * (1 + t) for p, d, t in zip(prices, discounts, taxes)]
    assert [None if pd.isna(v) else v for v in out["charge"]] == charged
    assert out["revenue"].dtype == pd.ArrowDtype(pa.decimal128(38, 4))
    assert out["charge"].dtype == pd.ArrowDtype(pa.decimal128(38, 6))  # the same type whatever the values
    kept = filter_rows(df, "l_discount >= 0.05 and l_quantity * 2 < 30")
    assert kept.index.tolist() == [i for i in range(rows)
                                   if lineitem["l_discount"][i] >= Decimal("0.05") and lineitem["l_quantity"][i] < 15]


AGGS = {
    "revenue": ["revenue", "sum"],
    "charge": ["charge", "sum"],
    "quantity": ["l_quantity", "sum"],
    "lowest": ["l_extendedprice", "min"],
    "highest": ["l_extendedprice", "max"],
    "first": ["l_extendedprice", "first"],
    "last": ["l_extendedprice", "last"],
    "priced": ["l_extendedprice", "count"],
    "average": ["l_extendedprice", "mean"],
    "spread": ["l_extendedprice", "std"],
    "middle": ["l_extendedprice", "median"],
    "p90": ["l_extendedprice", "quantile", 0.9],
}


def test_pipeline_aggregates_decimals_exactly(warehouse: Path, lineitem: dict[str, list], tmp_path: Path):
    pipeline = Pipeline().then(derive, columns={"revenue": REVENUE, "charge": CHARGE})
    pipeline = pipeline.then(filter_rows, where="l_extendedprice > 0").then(aggregate, by=["l_returnflag"], aggs=AGGS)
    pipeline.run(FileSource(str(warehouse), chunk_rows=300), str(tmp_path / "out.parquet"), engine="sync")
    result = pq.read_table(tmp_path / "out.parquet")
    types = {name: str(result.schema.field(name).type) for name in AGGS}
    assert types == {"revenue": "decimal128(38, 4)", "charge": "decimal128(38, 6)", "quantity": "decimal128(38, 2)",
                     "lowest": "decimal128(15, 2)", "highest": "decimal128(15, 2)", "first": "decimal128(15, 2)",
                     "last": "decimal128(15, 2)", "priced": "int64", "average": "double", "spread": "double",
                     "middle": "double", "p90": "double"}
    got = result.to_pydict()
    assert got["l_returnflag"] == ["A", "N", "R"]
    revenue = by_flag(lineitem, lambda r: r["l_extendedprice"] * (1 - r["l_discount"]))
    charge = by_flag(lineitem, lambda r: r["l_extendedprice"] * (1 - r["l_discount"]) * (1 + r["l_tax"]))
    prices = by_flag(lineitem, lambda r: r["l_extendedprice"])
    quantity = by_flag(lineitem, lambda r: r["l_quantity"])
    assert got["revenue"] == [sum(v) for v in revenue.values()]  # Decimal == Decimal: every digit
    assert got["charge"] == [sum(v) for v in charge.values()]
    assert got["quantity"] == [sum(v) for v in quantity.values()]
    assert got["lowest"] == [min(v) for v in prices.values()]
    assert got["highest"] == [max(v) for v in prices.values()]
    assert got["first"] == [v[0] for v in prices.values()]
    assert got["last"] == [v[-1] for v in prices.values()]
    assert got["priced"] == [len(v) for v in prices.values()]
    assert got["average"] == pytest.approx([float(sum(v) / len(v)) for v in prices.values()], rel=1e-15)
    floats = pd.DataFrame({"flag": [f for f, v in prices.items() for _ in v],
                           "price": [float(p) for v in prices.values() for p in v]}).groupby("flag")["price"]
    assert got["middle"] == floats.median().tolist()  # the float64 of each decimal, ordered: pandas' median
    assert got["p90"] == floats.quantile(0.9).tolist()
    assert got["spread"] == pytest.approx(floats.std().tolist(), rel=1e-12)


def test_whole_table_decimal_sums_are_exact_and_zero_on_no_rows(warehouse: Path, lineitem: dict[str, list]):
    source, chunks = FileSource(str(warehouse), chunk_rows=300).discover()
    frames = [convert(source.read(chunk), "pandas") for chunk in chunks]
    agg = GroupAggregate(aggs={"quantity": ["l_quantity", "sum"], "tax": ["l_tax", "max"]})
    result = agg.finalize(agg.combine([agg.partial(frame) for frame in frames]))
    assert result.to_dict("list") == {"quantity": [sum(lineitem["l_quantity"])], "tax": [max(lineitem["l_tax"])]}
    empty = agg.apply(frames[0].iloc[:0])
    assert empty["quantity"].tolist() == [Decimal("0.00")] and pd.isna(empty["tax"].iloc[0])
    assert empty["quantity"].dtype == pd.ArrowDtype(pa.decimal128(38, 2))


@pytest.mark.parametrize("by", [["l_returnflag"], []])
def test_polars_partials_give_the_pandas_answer_on_decimals(warehouse: Path, by: list[str]):
    source, chunks = FileSource(str(warehouse), chunk_rows=300).discover()
    tables = [source.read(chunk) for chunk in chunks]
    aggs = {name: spec for name, spec in AGGS.items() if spec[0] not in ("revenue", "charge")}
    agg = GroupAggregate(by, aggs)
    expected = agg.finalize(agg.combine([agg.partial(convert(t, "pandas")) for t in tables]))
    polars = agg.finalize(agg.combine([agg.partial(pl.from_arrow(t)) for t in tables]))
    mixed = agg.finalize(agg.combine([agg.partial(pl.from_arrow(t) if i % 2 else t) for i, t in enumerate(tables)]))
    exact = [c for c in expected.columns if c not in ("average", "spread")]
    for result in (polars, mixed):
        pd.testing.assert_frame_equal(result[exact], expected[exact], check_exact=True)
        pd.testing.assert_frame_equal(result, expected, check_exact=False, rtol=1e-12)


@declare(batch="polars-lazy")
def priced(df: pl.LazyFrame) -> pl.LazyFrame:
    return df.filter(pl.col("l_extendedprice").is_not_null())


def test_lazy_polars_chain_then_aggregate_on_decimals(warehouse: Path, tmp_path: Path):
    aggs = {"quantity": ["l_quantity", "sum"], "lowest": ["l_extendedprice", "min"],
            "middle": ["l_extendedprice", "median"], "rows": ["l_tax", "size"]}
    lazy = Pipeline().then(priced).then(aggregate, by=["l_returnflag"], aggs=aggs)
    lazy.run(FileSource(str(warehouse), chunk_rows=300), str(tmp_path / "lazy.parquet"), engine="sync")
    plain = Pipeline().then(filter_rows, where="l_extendedprice > 0").then(aggregate, by=["l_returnflag"], aggs=aggs)
    plain.run(FileSource(str(warehouse), chunk_rows=300), str(tmp_path / "plain.parquet"), engine="sync")
    assert pq.read_table(tmp_path / "lazy.parquet").equals(pq.read_table(tmp_path / "plain.parquet"))


def test_derived_decimals_are_written_back_as_decimals(warehouse: Path, lineitem: dict[str, list], tmp_path: Path):
    pipeline = Pipeline().then(derive, columns={"revenue": REVENUE})
    pipeline.run(FileSource(str(warehouse), chunk_rows=300), str(tmp_path / "parts"), engine="sync")
    written = pq.read_table(tmp_path / "parts")
    assert written.schema.field("l_extendedprice").type == MONEY
    assert written.schema.field("revenue").type == pa.decimal128(38, 4)
    assert written.column("revenue").to_pylist() == [
        None if p is None else p * (1 - d) for p, d in zip(lineitem["l_extendedprice"], lineitem["l_discount"])
    ]


def test_a_quotient_of_decimal_expressions_is_computed():
    """Dividing decimal expressions would need more than 38 digits of precision: it comes back as float64."""
    from stages.transform import derive

    money = pd.ArrowDtype(pa.decimal128(15, 2))
    df = pd.DataFrame({"price": pd.array([Decimal("10.00"), Decimal("3.30")], dtype=money),
                       "discount": pd.array([Decimal("0.05"), Decimal("0.10")], dtype=money)})
    out = derive(df, {"share": "price * (1 - discount) / (price * (1 + discount))"})
    assert out["share"].tolist() == pytest.approx([0.95 / 1.05, 0.9 / 1.1], rel=1e-12)
