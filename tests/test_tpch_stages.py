"""The TPC-H queries' Polars stages do what their pandas counterparts do, on the same chunk: the same rows, the
same values, decimals exact; and an expression they cannot read is refused by name."""

from __future__ import annotations

import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

pytest.importorskip("polars")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from pipeline.batch import convert  # noqa: E402
from pipeline.stage import Stage  # noqa: E402
from tpch.stage_sets import stage_set  # noqa: E402

CHUNK = pa.table({
    "price": pa.array([Decimal("21168.23"), Decimal("45983.16"), None, Decimal("0.01")], pa.decimal128(15, 2)),
    "discount": pa.array([Decimal("0.04"), Decimal("0.05"), Decimal("0.07"), Decimal("0.10")], pa.decimal128(15, 2)),
    "quantity": pa.array([17, 36, 8, 24], pa.int64()),
    "mode": ["MAIL", "SHIP", None, "AIR.REG"],
    "comment": ["special requests", "nothing", "special \n requests here", "a.b_c%d"],
    "shipped": pa.array([date(1994, 1, 2), date(1995, 6, 30), date(1996, 12, 31), None], pa.date32()),
})

CASES = [
    ("derive", {"columns": {"volume": "price * (1 - discount)", "twice": "volume * discount * 2"}}),
    ("derive", {"columns": {"share": "price / quantity", "half": "0.5 * quantity", "neg": "-quantity + 1"}}),
    ("derive", {"columns": {"urgent": "mode == 'MAIL' or mode == 'SHIP'", "other": "not urgent"}}),
    ("filter_rows", {"where": "discount >= 0.05 and discount <= 0.07 and quantity < 24"}),
    ("filter_rows", {"where": "mode in ['MAIL', 'AIR.REG'] or quantity > 30"}),
    ("filter_rows", {"where": "mode not in ['MAIL'] and 10 < quantity <= 36"}),
    ("filter_rows", {"where": "price > quantity * 1000"}),  # a missing price is no match
    ("like", {"column": "comment", "pattern": "%special%requests%"}),
    ("like", {"column": "comment", "pattern": "%special%requests%", "negate": True}),
    ("like", {"column": "comment", "pattern": "a.b_c%"}),  # `.` literal, `_` any one character
    ("like", {"column": "mode", "pattern": "AIR._EG"}),
    ("substring", {"column": "mode", "out": "two", "start": 2, "length": 2}),
    ("extract_datetime", {"column": "shipped", "parts": ["year"], "prefix": "l_"}),
    ("rename", {"columns": {"mode": "shipmode"}}),
    ("select", {"columns": ["quantity", "mode"]}),
]


def _run(stage_fn, params: dict) -> list[dict]:
    """The stage's output rows as Python values (a decimal's precision aside, as SQL compares them)."""
    return convert(Stage(stage_fn, params=params).apply(CHUNK), "arrow").to_pylist()


@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_polars_stage_gives_the_pandas_stages_rows(name: str, params: dict):
    expected = _run(getattr(stage_set("pandas"), name), params)
    assert expected  # every case keeps a row, so the rows compared are never both empty
    assert _run(getattr(stage_set("polars"), name), params) == expected


def test_a_product_of_decimals_keeps_every_place():
    """Polars alone rounds a product to the larger scale of its factors (20321.50); SQL keeps them all."""
    out = Stage(stage_set("polars").derive, params={"columns": {"volume": "price * (1 - discount)"}}).apply(CHUNK)
    volume = convert(out, "arrow").column("volume").to_pylist()
    assert volume[:2] == [Decimal("21168.23") * Decimal("0.96"), Decimal("45983.16") * Decimal("0.95")]
    assert volume[0] == Decimal("20321.5008")


@pytest.mark.parametrize(("where", "message"), [
    ("missing > 1", "missing column 'missing'"),
    ("quantity ** 2 > 1", "not supported"),
    ("mode in other", "list of constants"),
])
def test_an_expression_it_cannot_read_is_refused_by_name(where: str, message: str):
    with pytest.raises((KeyError, ValueError), match=message):
        Stage(stage_set("polars").filter_rows, params={"where": where}).apply(CHUNK)


def test_an_unknown_stage_set_is_refused():
    with pytest.raises(ValueError, match="no TPC-H stages in batch format 'spark'"):
        stage_set("spark")
