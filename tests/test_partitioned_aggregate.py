"""A keyed aggregate combined per range of keys (`pipeline.partitioned_aggregate`): for any table, chunking and
number of ranges, the ranges in order are pandas' group-by over the whole table, every function exact; on
every engine, from Parquet files, into an output of one part per range in key order, and feeding a join; and
the planner keeps the tree for small inputs."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import exchange as kernel
from pipeline import partitioned_aggregate
from pipeline.aggregate import FUNCTIONS, GroupAggregate
from pipeline.dataset import Output, read
from pipeline.errors import ConfigError
from pipeline.graph_run import describe
from pipeline.io import MemorySink
from stages.analyze import aggregate
from test_aggregate_properties import KEYS, cuts, expected, tables

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # cluster workers cannot import the tests

AGGS = {"n": ["v", "count"], "rows": ["v", "size"], "total": ["v", "sum"], "avg": ["v", "mean"],
        "low": ["v", "min"], "high": ["v", "max"], "head": ["v", "first"], "tail": ["v", "last"],
        "spread": ["v", "std"], "kinds": ["w", "nunique"], "mid": ["w", "median"], "p30": ["w", "quantile", 0.3],
        "money": ["price", "sum"], "cheapest": ["price", "min"]}


def by_ranges(agg: GroupAggregate, chunks: list[pd.DataFrame], n: int) -> list[pd.DataFrame]:
    """What the tasks do, in one process: each chunk's state cut at boundaries from the states' key samples,
    then each range's pieces combined in chunk order and finalised."""
    states = [partitioned_aggregate._pandas_or_arrow(agg, agg.partial(c)) for c in chunks]
    samples = [kernel.sample_keys(partitioned_aggregate._keys(agg, s.frame), agg.keys, 4) for s in states]
    present = [s for s in samples if s.num_rows] or samples[:1]
    bounds = kernel.choose_boundaries(present, agg.keys, [True] * len(agg.keys), n)
    pieces = [partitioned_aggregate._cut(agg, s, n, bounds) for s in states]
    return [agg.finalize(agg.combine([p[r] for p in pieces])) for r in range(n)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(df=tables(), by=st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True),
       n=st.integers(1, 5), data=st.data())
def test_ranges_in_order_are_the_pandas_answer(df: pd.DataFrame, by: list[str], n: int, data: st.DataObject):
    values = [c for c in ("v", "i") if c not in by]
    aggs = {f"{column}_{fn}": [column, fn] for column in values for fn in FUNCTIONS}
    aggs["c_nunique"] = ["c", "nunique"]
    aggs["v_q"] = ["v", "quantile", data.draw(st.floats(0, 1))]
    agg = GroupAggregate(by, aggs)
    bounds = cuts(data.draw, len(df))
    ranges = by_ranges(agg, [df.iloc[a:b] for a, b in zip(bounds, bounds[1:])], n)
    want = expected(df, by, aggs)
    if len(want) == 0:
        assert sum(len(r) for r in ranges) == 0
        return
    result = pd.concat([r for r in ranges if len(r)], ignore_index=True)
    pd.testing.assert_frame_equal(result, want, check_exact=False, rtol=1e-9, atol=1e-9, check_dtype=False)
    exact = [out for out, (_, fn, *_) in aggs.items() if fn not in ("var", "std")]
    pd.testing.assert_frame_equal(result[exact], want[exact], check_exact=True, check_dtype=False)
    whole = agg.apply(df)  # the tree's one result: the same values and the same dtypes
    pd.testing.assert_frame_equal(result[exact], whole[exact], check_exact=True)


# ---- through the engines ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lines(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """4,000 line items over 4 Parquet files of 250-row row groups: an order key with 900 values and nulls, a
    category, floats with NaN, small integers, and an exact decimal price."""
    rng = np.random.default_rng(3)
    rows = 4000
    table = pa.table({
        "order": pa.array([None if rng.random() < 0.03 else int(k) for k in rng.integers(0, 900, rows)], pa.int64()),
        "kind": pa.array(rng.choice(["air", "rail", "ship"], rows)),
        "v": pa.array(np.where(rng.random(rows) < 0.1, np.nan, rng.integers(-40, 40, rows) / 4)),
        "w": pa.array(rng.integers(0, 6, rows), pa.int64()),
        "price": pa.array([Decimal(int(p)) / 100 for p in rng.integers(100, 99999, rows)], pa.decimal128(12, 2)),
    })
    folder = tmp_path_factory.mktemp("lines") / "lines"
    folder.mkdir()
    for i, start in enumerate(range(0, rows, rows // 4)):
        pq.write_table(table.slice(start, rows // 4), folder / f"part-{i}.parquet", row_group_size=250)
    return folder, table.to_pandas(types_mapper={pa.decimal128(12, 2): pd.ArrowDtype(pa.decimal128(12, 2))}.get)


def test_every_engine_writes_one_part_per_key_range_in_key_order(engine, lines, tmp_path: Path):
    folder, table = lines
    out = tmp_path / "per_order"
    manifest = (read(str(folder), chunk_rows=250).aggregate(by=["order", "kind"], aggs=AGGS, partitions=4)
                .write(str(out)).run(engine))
    parts = [pd.read_parquet(f) for f in sorted(out.glob("*.parquet"))]
    assert len(parts) == 4 and all(len(p) for p in parts)
    assert all(a["order"].max() <= b["order"].min() for a, b in zip(parts, parts[1:]))  # ranges, in order
    want = aggregate(table, by=["order", "kind"], aggs=AGGS)
    result = pd.concat(parts, ignore_index=True)
    exact = [out for out, (_, fn, *_) in AGGS.items() if fn != "std"]
    pd.testing.assert_frame_equal(result[exact], want[exact], check_exact=True, check_dtype=False)
    pd.testing.assert_series_equal(result["spread"], want["spread"], rtol=1e-9)
    assert result["money"].map(type).eq(Decimal).all()  # the decimal sum stays exact
    assert manifest.rows == len(want)


def over(df: pd.DataFrame, column: str, threshold: float) -> pd.DataFrame:
    return df[df[column] > threshold]


def test_ranges_feed_a_join_on_every_engine(engine, lines):
    """Orders whose items' prices add up to more than 2,000, joined back to their items."""
    folder, table = lines
    items = read(str(folder), chunk_rows=250)
    big = items.aggregate(by="order", aggs={"spent": ["price", "sum"]}, partitions=3).then(
        over, column="spent", threshold=2000)
    result = items.join(big, on="order").collect(engine)
    sums = table.groupby("order").agg(spent=("price", "sum")).reset_index()
    kept = sums[sums["spent"] > 2000]
    assert 0 < len(kept) < len(sums)
    want = table.merge(kept, on="order")
    key = ["order", "v", "w", "price"]
    pd.testing.assert_frame_equal(result.sort_values(key, ignore_index=True)[want.columns],
                                  want.sort_values(key, ignore_index=True), check_dtype=False)


# ---- when the planner cuts by ranges ---------------------------------------------------------------------


def notes(dataset) -> str:
    return describe([Output(dataset, MemorySink())]).describe()


def test_small_inputs_keep_the_tree_and_large_ones_are_cut_by_rows(lines, monkeypatch: pytest.MonkeyPatch):
    folder, _ = lines
    items = read(str(folder), chunk_rows=250)  # 16 chunks, 4,000 rows
    per_order = items.aggregate(by="order", aggs={"n": ["v", "count"]})
    assert "combined 8 at a time" in notes(per_order)
    monkeypatch.setattr(partitioned_aggregate, "ROWS_PER_PARTITION", 1000)
    assert "combined in 4 key ranges" in notes(per_order)
    assert "combined 8 at a time" in notes(items.aggregate(aggs={"n": ["v", "count"]}))  # no keys: one row
    assert "combined 8 at a time" in notes(items.aggregate(by="order", aggs={"n": ["v", "count"]}, partitions=1))
    assert "combined in 6 key ranges" in notes(items.aggregate(by="order", aggs={"n": ["v", "count"]},
                                                               partitions=6))


@pytest.mark.parametrize("partitions", [0, -2, 1.5, True, "4"])
def test_a_bad_partition_count_is_refused_naming_it(lines, partitions):
    folder, _ = lines
    with pytest.raises((ConfigError, ValueError), match="partitions"):
        read(str(folder)).aggregate(by="order", aggs={"n": ["v", "count"]}, partitions=partitions).collect()


def test_few_groups_over_many_rows_are_not_cut_unless_ranges_are_asked_for(lines, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch):
    """Ranges chosen by rows, but the states turn out to hold few groups: the first range takes them all."""
    folder, table = lines
    monkeypatch.setattr(partitioned_aggregate, "ROWS_PER_PARTITION", 1000)  # 4,000 rows: 4 ranges
    want = aggregate(table, by="kind", aggs={"n": ["v", "count"]})

    def parts(out: Path, **asked) -> list[pd.DataFrame]:
        read(str(folder), chunk_rows=250).aggregate(by="kind", aggs={"n": ["v", "count"]}, **asked).write(
            str(out)).run("sync")
        return [pd.read_parquet(f) for f in sorted(out.glob("*.parquet"))]

    few = parts(tmp_path / "few")
    assert [len(p) for p in few] == [3, 0, 0, 0]
    pd.testing.assert_frame_equal(few[0], want)
    monkeypatch.setattr(partitioned_aggregate, "FEW_GROUPS", 2)
    cut = parts(tmp_path / "cut")
    assert len(cut) == 4 and sum(1 for p in cut if len(p)) > 1
    pd.testing.assert_frame_equal(pd.concat(cut, ignore_index=True), want)
    monkeypatch.setattr(partitioned_aggregate, "FEW_GROUPS", 500_000)
    asked = parts(tmp_path / "asked", partitions=3)
    assert sum(1 for p in asked if len(p)) > 1  # asked for: cut however few
