"""TPC-H queries written as datasets give duckdb's answers on every engine, with pandas stages and with Polars
stages; the comparison catches wrong answers; and `scripts/tpch.py --check` runs end to end. One scale-0.01
dataset is generated per session."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from tpch import check, data  # noqa: E402
from tpch.queries import QUERIES, answer  # noqa: E402
from tpch.stage_sets import FORMATS  # noqa: E402

ON_EVERY_ENGINE = (1, 3, 5, 6, 10, 12, 18)


@pytest.fixture(scope="session")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Scale factor 0.01 in small row groups, so lineitem and orders come in several chunks."""
    return data.generate(tmp_path_factory.mktemp("tpch"), 0.01, row_group_rows=5000)


@pytest.fixture(scope="session")
def references(tables: Path) -> dict[int, tuple[list[str], list[tuple]]]:
    con = check.reference_connection(tables)
    return {number: check.reference(con, number) for number in QUERIES}


@pytest.mark.parametrize("stages", FORMATS)
@pytest.mark.parametrize("number", ON_EVERY_ENGINE)
def test_query_gives_duckdbs_answer(engine, tables: Path, references: dict, number: int, stages: str):
    query = QUERIES[number]
    result = answer(query, tables, engine, stages=stages)
    assert len(result) > 0
    assert check.difference(references[number], check.answer_rows(result), query.order_by) is None


@pytest.mark.parametrize("number", sorted(QUERIES))
def test_every_query_gives_duckdbs_answer_with_polars_stages(tables: Path, references: dict, number: int):
    """All 22 in-process: the Polars stages' expressions, LIKE, CASE and decimal products in every shape."""
    query = QUERIES[number]
    result = answer(query, tables, "sync", stages="polars")
    assert check.difference(references[number], check.answer_rows(result), query.order_by) is None


def test_tables_are_generated_once_for_the_same_settings(tables: Path):
    written = (tables / "lineitem.parquet").stat().st_mtime_ns
    assert data.generate(tables.parent, 0.01, row_group_rows=5000) == tables
    assert (tables / "lineitem.parquet").stat().st_mtime_ns == written


NAMES = ["k", "v"]


def test_difference_finds_a_value_off_by_more_than_the_tolerance():
    expected = (NAMES, [("a", 1.0), ("b", 2.0)])
    assert check.difference(expected, (NAMES, [("a", 1.0), ("b", 2.0 * (1 + 1e-12))]), ["k"]) is None
    found = check.difference(expected, (NAMES, [("a", 1.0), ("b", 2.0 * (1 + 1e-6))]), ["k"])
    assert found is not None and found.startswith("row 1, column v")


def test_difference_finds_missing_rows_wrong_columns_and_exact_kinds():
    expected = (NAMES, [("a", 1), ("b", 2)])
    assert check.difference(expected, (NAMES, [("a", 1)]), []) == "1 rows, expected 2"
    assert check.difference(expected, (["v", "k"], [(1, "a"), (2, "b")]), []) is not None
    assert check.difference(expected, (NAMES, [("a", 1), ("b", "2")]), []) is not None


def test_difference_wants_the_order_by_order_but_any_order_within_ties():
    expected = (NAMES, [("a", 1), ("b", 1), ("c", 2)])
    assert check.difference(expected, (NAMES, [("b", 1), ("a", 1), ("c", 2)]), ["v"]) is None
    assert check.difference(expected, (NAMES, [("c", 2), ("a", 1), ("b", 1)]), ["v"]) is not None
    assert check.difference(expected, (NAMES, [("b", 1), ("a", 1), ("c", 2)]), ["v", "k"]) is not None
    assert check.difference(expected, (NAMES, [("c", 2), ("b", 1), ("a", 1)]), []) is None


def test_script_checks_queries_end_to_end(tmp_path: Path):
    """Its own data folder: the script generates with the default row groups."""
    script = ROOT / "scripts" / "tpch.py"
    command = [sys.executable, str(script), "--sf", "0.01", "--engine", "sync", "--queries", "1,6", "--check",
               "--data", str(tmp_path)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.strip().splitlines()
    assert re.fullmatch(r"Q01  ok  \d+\.\d\ds  4 rows", lines[0]), lines
    assert re.fullmatch(r"Q06  ok  \d+\.\d\ds  1 row", lines[1]), lines
    assert lines[-1] == "2/2 queries expressed, 2 correct"
    assert (tmp_path / "sf0.01" / "lineitem.parquet").exists()
