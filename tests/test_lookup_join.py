"""A broadcast probe by lookup (`pipeline.lookup_join`) gives the hash join's rows for every kind of join it
answers, null keys, repeated keys and keys of other integer widths included, and declines what it cannot
answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import joining
from pipeline.dataset import Output, read
from pipeline.graph_run import describe
from pipeline.io import MemorySink
from pipeline.join import JoinSpec, join_tables
from pipeline.lookup_join import SmallSide, matched_rows
from stages.transform import select


def _sorted(table: pa.Table) -> list[tuple]:
    rows = list(zip(*(c.to_pylist() for c in table.columns)))
    return sorted(rows, key=lambda row: tuple((v is None, v if v is not None else 0) for v in row))


def _tables(seed: int) -> tuple[pa.Table, pa.Table]:
    rng = np.random.default_rng(seed)
    keys = rng.permutation(np.arange(0, 60))[:40]  # unique, some big-side keys find nothing
    small = pa.table({"id": pa.array(keys, pa.int32()), "name": [f"n{k}" for k in keys],
                      "v": rng.random(40)})
    big_keys = rng.integers(-5, 70, 300)
    nulls = rng.random(300) < 0.1
    big = pa.table({"ref": pa.array(big_keys, pa.int64(), mask=nulls), "v": rng.random(300)})
    return small, big


def _repeated(seed: int) -> tuple[pa.Table, pa.Table]:
    """A small side whose keys repeat (0 to 4 times each) and are sometimes null."""
    rng = np.random.default_rng(seed)
    keys = np.repeat(rng.permutation(np.arange(0, 30)), rng.integers(0, 5, 30))
    nulls = rng.random(len(keys)) < 0.1
    small = pa.table({"id": pa.array(keys, pa.int16(), mask=nulls), "w": np.arange(len(keys), dtype=np.int64)})
    big = pa.table({"ref": pa.array(rng.integers(-3, 35, 200), pa.int64(), mask=rng.random(200) < 0.1),
                    "v": np.arange(200, dtype=np.int64)})
    return small, big


TABLES = {"unique": _tables, "repeated": _repeated}  # a hash index; the small side's rows sorted by key


@pytest.mark.parametrize("keys", list(TABLES))
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("how", ["inner", "left", "semi", "anti"])
def test_small_right_side_gives_the_hash_joins_rows(how: str, seed: int, keys: str):
    small, big = TABLES[keys](seed)
    spec = JoinSpec.of(left_on="ref", right_on="id", how=how)
    side = SmallSide(small)
    rows = matched_rows(side, big, spec, small_is_left=False)
    assert rows is not None and isinstance(side.index("id"), pd.Index) == (keys == "unique")
    assert _sorted(join_tables(big, small, spec, rows)) == _sorted(join_tables(big, small, spec))


@pytest.mark.parametrize("keys", list(TABLES))
@pytest.mark.parametrize("how", ["inner", "right"])
def test_small_left_side_gives_the_hash_joins_rows(how: str, keys: str):
    small, big = TABLES[keys](7)
    spec = JoinSpec.of(left_on="id", right_on="ref", how=how)
    rows = matched_rows(SmallSide(small), big, spec, small_is_left=True)
    assert rows is not None
    expected = join_tables(small, big, spec)
    assert join_tables(small, big, spec, rows).schema == expected.schema
    assert _sorted(join_tables(small, big, spec, rows)) == _sorted(expected)


def test_declines_what_a_lookup_cannot_answer():
    small, big = _tables(1)
    spec = JoinSpec.of(left_on="ref", right_on="id")
    named = pa.table({"id": ["a", "b"]})
    assert matched_rows(SmallSide(named), big.set_column(0, "ref", pa.array(["a"] * 300)), spec, False) is None
    two_keys = JoinSpec.of(left_on=["ref", "v"], right_on=["id", "v"])
    assert matched_rows(SmallSide(small), big, two_keys, small_is_left=False) is None
    assert matched_rows(SmallSide(small), big, JoinSpec.of(left_on="id", right_on="ref", how="full"), True) is None


def test_a_small_side_of_only_null_keys_matches_nothing():
    small = pa.table({"id": pa.array([None, None], pa.int64())})
    big = pa.table({"ref": pa.array([1, None], pa.int64())})
    for how, expected in (("inner", 0), ("left", 2), ("semi", 0), ("anti", 2)):
        spec = JoinSpec.of(left_on="ref", right_on="id", how=how)
        rows = matched_rows(SmallSide(small), big, spec, small_is_left=False)
        assert join_tables(big, small, spec, rows).num_rows == expected == join_tables(big, small, spec).num_rows


# ---- when the planner broadcasts a side for a lookup -----------------------------------------------------


@pytest.fixture
def sides(tmp_path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Parquet inputs: 1,000 line rows (and again with float keys); 300 orders keyed by an integer, by a
    string, and with a text column; a 500-row table.
    The broadcast bounds are scaled down with them (100 rows; 400 rows and 5,000 bytes for a lookup)."""
    monkeypatch.setattr(joining, "BROADCAST_ROWS", 100)
    monkeypatch.setattr(joining, "LOOKUP_ROWS", 400)
    monkeypatch.setattr(joining, "LOOKUP_BYTES", 5000)  # 300 rows of two int64 columns: 4,800 bytes
    paths = {}
    tables = {"lines": pa.table({"okey": np.arange(1000) % 300, "v": np.arange(1000)}),
              "orders": pa.table({"okey": np.arange(300), "day": np.arange(300) % 7}),
              "named": pa.table({"okey": [str(k) for k in range(300)], "day": np.arange(300) % 7}),
              "wide": pa.table({"okey": np.arange(300), "note": [f"order {k}" for k in range(300)]}),
              "half": pa.table({"okey": np.arange(500) % 300, "w": np.arange(500)}),
              "floats": pa.table({"okey": (np.arange(1000) % 300).astype(float), "v": np.arange(1000)})}
    for name, table in tables.items():
        paths[name] = str(tmp_path / f"{name}.parquet")
        pq.write_table(table, paths[name])
    return paths


def _how(left: str, right: str, **join) -> str:
    plan = describe([Output(read(left).join(read(right), on="okey", **join), MemorySink())])
    return next(note for note in plan.notes if " join of " in note)


def test_a_side_with_one_integer_key_is_broadcast_up_to_the_lookup_bound(sides: dict[str, str]):
    assert "orders broadcast (300 rows at most)" in _how(sides["lines"], sides["orders"])
    assert "orders broadcast" in _how(sides["lines"], sides["orders"], how="semi")
    assert "by shuffle" in _how(sides["half"], sides["orders"])  # the other side is not twice as big
    assert "by shuffle" in _how(sides["floats"], sides["orders"])  # float keys probe no integer lookup
    assert "by shuffle" in _how(sides["lines"], sides["wide"])  # a text column: estimated over the bytes bound
    lines = read(sides["lines"]).then(select, columns=["okey", "v"])  # its key's type unknown until run
    plan = describe([Output(lines.join(read(sides["named"]), on="okey"), MemorySink())])
    assert any("by shuffle" in note for note in plan.notes)  # a string key: a hash join per part would rebuild
    assert "by shuffle" in _how(sides["orders"], sides["lines"], how="left")  # the big side cannot be broadcast
