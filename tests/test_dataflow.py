"""Conformance of the dataset-graph API on every engine: joins of every kind and strategy (one and two keys,
same and different key names, SQL null keys), a global sort written as ordered parts, deduplicate,
repartition, apply_groups, top, an aggregate feeding a join, a dataset read by two consumers and several outputs
committed by one run. Inputs are real Parquet files with several row groups, so every dataset has several
chunks; every result is checked against a plain pandas computation over the whole table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.dataset import Dataset, read, run
from pipeline.io import Manifest

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # cluster workers cannot import the tests

HOWS = ("inner", "left", "right", "full", "semi", "anti")
BROADCASTABLE = {"inner", "left", "right", "semi", "anti"}  # a full join has no side that may be broadcast
ROW_GROUP = 100
KEY_TYPES = {  # other types of the customers' int64 key that compare with it by value
    "int32": pa.int32(), "uint16": pa.uint16(), "float64": pa.float64(),
    "decimal(12, 0)": pa.decimal128(12, 0), "decimal(12, 2)": pa.decimal128(12, 2),
}


# ---- data ------------------------------------------------------------------------------------------------


def _keys(rng: np.random.Generator, rows: int, top: int, null_share: float) -> pa.Array:
    values = rng.integers(0, top, rows)
    return pa.array([None if rng.random() < null_share else int(v) for v in values], pa.int64())


def _labels(rng: np.random.Generator, rows: int, null_share: float) -> pa.Array:
    values = rng.choice(["east", "north", "south", "west"], rows)
    return pa.array([None if rng.random() < null_share else str(v) for v in values], pa.string())


def write_parts(table: pa.Table, folder: Path, files: int, row_group: int = ROW_GROUP) -> Path:
    """`table` split over `files` Parquet files of `row_group`-row row groups, named in row order."""
    folder.mkdir(parents=True)
    bounds = np.linspace(0, table.num_rows, files + 1).astype(int)
    for i, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        pq.write_table(table.slice(start, stop - start), folder / f"data-{i:03d}.parquet", row_group_size=row_group)
    return folder


def read_back(folder: Path) -> pd.DataFrame:
    """The table a folder of Parquet files holds, files in name order (the order the framework reads)."""
    files = sorted(folder.glob("*.parquet"))
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Orders (600 rows, 6 chunks) and customers (160 rows, 4 chunks) sharing `okey`/`region` keys with
    nulls and duplicates on both sides, `amount` on both sides (a suffixed clash); the customers again
    with the keys under other names, and with `okey` (or `region`) in other types; and line items with
    their order heads for the aggregate-then-join query."""
    root = tmp_path_factory.mktemp("dataflow")
    rng = np.random.default_rng(7)
    orders = pa.table({
        "id": pa.array(np.arange(600), pa.int64()),
        "okey": _keys(rng, 600, 40, 0.08),
        "region": _labels(rng, 600, 0.1),
        "amount": pa.array(rng.integers(0, 40, 600) / 4),
    })
    customers = pa.table({
        "okey": _keys(rng, 160, 50, 0.08),  # keys 40..49 match no order, orders' keys have some with no customer
        "region": _labels(rng, 160, 0.1),
        "amount": pa.array(rng.integers(0, 40, 160) / 4),
        "rid": pa.array(np.arange(160), pa.int64()),
    })
    renamed = customers.rename_columns(["ckey", "zone", "amount", "rid"])
    lineitem = pa.table({
        "lid": pa.array(np.arange(1200), pa.int64()),
        "okey": pa.array(rng.integers(0, 120, 1200), pa.int64()),
        "qty": pa.array(rng.integers(1, 20, 1200), pa.int64()),
    })
    heads = pa.table({
        "okey": pa.array(np.arange(120), pa.int64()),
        "cust": pa.array([f"c{i % 17}" for i in range(120)]),
        "total": pa.array(rng.integers(100, 900, 120) / 2),
    })
    keys = customers["okey"].to_pylist()
    retyped = {label: customers.set_column(0, "okey", pa.array(keys, kind)) for label, kind in KEY_TYPES.items()}
    retyped["dictionary text"] = customers.set_column(1, "region", customers["region"].dictionary_encode())
    return {
        **{label: write_parts(table, root / label.replace(" ", "_"), files=1, row_group=40)
           for label, table in retyped.items()},
        "orders": write_parts(orders, root / "orders", files=2),
        "customers": write_parts(customers, root / "customers", files=1, row_group=40),
        "renamed": write_parts(renamed, root / "renamed", files=1, row_group=40),
        "lineitem": write_parts(lineitem, root / "lineitem", files=3, row_group=200),
        "heads": write_parts(heads, root / "heads", files=1, row_group=40),
    }


def dataset(inputs: dict[str, Path], name: str) -> Dataset:
    """One input as a dataset with one chunk per row group."""
    rows = ROW_GROUP if name == "orders" else 200 if name == "lineitem" else 40
    return read(str(inputs[name]), chunk_rows=rows)


# ---- references ------------------------------------------------------------------------------------------


def canonical(df: pd.DataFrame, keep_order: bool = False) -> pd.DataFrame:
    """Values compared by what they are, not how they are typed: numbers as float64 (an int column with a
    null comes back as float), text as objects with None for missing; rows sorted unless `keep_order`."""
    columns = {}
    for name in df.columns:
        column = df[name]
        if pd.api.types.is_bool_dtype(column.dtype) or pd.api.types.is_numeric_dtype(column.dtype):
            columns[name] = column.astype("float64").reset_index(drop=True)
        else:
            column = column.astype(object)
            columns[name] = column.where(column.notna(), None).reset_index(drop=True)
    frame = pd.DataFrame(columns, columns=list(df.columns))
    if not keep_order:
        frame = frame.sort_values(list(frame.columns), na_position="last", kind="stable")
    return frame.reset_index(drop=True)


def assert_same_rows(result: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(result.columns) == list(expected.columns)
    assert len(result) == len(expected)
    pd.testing.assert_frame_equal(canonical(result), canonical(expected))


def expected_join(left: pd.DataFrame, right: pd.DataFrame, left_on: list[str], right_on: list[str], how: str,
                  suffixes: tuple[str, str] = ("", "_right")) -> pd.DataFrame:
    """The SQL join in pandas. pandas matches missing keys with each other, so only rows whose keys are all
    present are merged; a row with a missing key is added as unmatched to the sides an outer join keeps
    (anti keeps it too: it has no match)."""
    left_null = left[left_on].isna().any(axis=1).to_numpy()
    right_null = right[right_on].isna().any(axis=1).to_numpy()
    lk, rk = left[~left_null], right[~right_null]
    keys = {"on": left_on} if left_on == right_on else {"left_on": left_on, "right_on": right_on}
    if how in ("semi", "anti"):
        present = rk[right_on].drop_duplicates().set_axis(left_on, axis=1)
        marked = lk.merge(present, on=left_on, how="left", indicator=True)
        if how == "semi":
            return marked[marked["_merge"] == "both"][list(left.columns)]
        unmatched = marked[marked["_merge"] == "left_only"][list(left.columns)]
        return pd.concat([unmatched, left[left_null]], ignore_index=True)
    merged = pd.merge(lk, rk, how="outer" if how == "full" else how, suffixes=suffixes, **keys)
    parts = [merged]
    if how in ("left", "full") and left_null.any():
        parts.append(pd.merge(left[left_null], right.iloc[:0], how="left", suffixes=suffixes, **keys))
    if how in ("right", "full") and right_null.any():
        parts.append(pd.merge(left.iloc[:0], right[right_null], how="right", suffixes=suffixes, **keys))
    frames = [canonical(p, keep_order=True) for p in parts]  # one typing, so the pieces concatenate cleanly
    return pd.concat(frames, ignore_index=True)[list(merged.columns)]


# ---- joins -----------------------------------------------------------------------------------------------

KEYS = {  # (right input, left keys, right keys)
    "one key": ("customers", ["okey"], ["okey"]),
    "two keys": ("customers", ["okey", "region"], ["okey", "region"]),
    "one key, other name": ("renamed", ["okey"], ["ckey"]),
    "two keys, other names": ("renamed", ["okey", "region"], ["ckey", "zone"]),
}
CASES = [(how, strategy, keys) for how in HOWS for strategy in ("broadcast", "shuffle") for keys in KEYS
         if strategy == "shuffle" or how in BROADCASTABLE]


@pytest.mark.parametrize(("how", "strategy", "keys"), CASES)
def test_join_equals_pandas_with_sql_null_keys(engine, inputs: dict[str, Path], how: str, strategy: str, keys: str):
    right_name, left_on, right_on = KEYS[keys]
    left, right = dataset(inputs, "orders"), dataset(inputs, right_name)
    if left_on == right_on:
        joined = left.join(right, on=left_on if len(left_on) > 1 else left_on[0], how=how, strategy=strategy)
    else:
        joined = left.join(right, left_on=left_on, right_on=right_on, how=how, strategy=strategy)
    result = joined.collect(engine)
    expected = expected_join(read_back(inputs["orders"]), read_back(inputs[right_name]), left_on, right_on, how)
    assert len(expected) > 0
    assert_same_rows(result, expected)


@pytest.mark.parametrize("retyped", [*KEY_TYPES, "dictionary text"])
@pytest.mark.parametrize(("how", "strategy"), [("inner", "broadcast"), ("inner", "shuffle"), ("full", "shuffle")])
def test_join_keys_of_other_types_match_by_value(engine, inputs: dict[str, Path], retyped: str, how: str,
                                                 strategy: str):
    """The customers' `okey` (or `region`, dictionary-encoded) in another type: the same rows match."""
    keys = ["okey", "region"]
    result = dataset(inputs, "orders").join(dataset(inputs, retyped), on=keys, how=how, strategy=strategy)
    expected = expected_join(read_back(inputs["orders"]), read_back(inputs["customers"]), keys, keys, how)
    assert_same_rows(result.collect(engine), expected)


def test_join_with_own_suffixes_on_every_strategy(engine, inputs: dict[str, Path]):
    left, right = dataset(inputs, "orders"), dataset(inputs, "customers")
    expected = expected_join(read_back(inputs["orders"]), read_back(inputs["customers"]), ["okey"], ["okey"],
                             "inner", suffixes=("_o", "_c"))
    assert {"region_o", "region_c", "amount_o", "amount_c"} <= set(expected.columns)
    for strategy in ("broadcast", "shuffle"):
        result = left.join(right, on="okey", suffixes=("_o", "_c"), strategy=strategy).collect(engine)
        assert_same_rows(result, expected)


def test_join_written_to_a_directory_commits_every_part(engine, inputs: dict[str, Path], tmp_path: Path):
    out = tmp_path / "joined"
    joined = dataset(inputs, "orders").join(dataset(inputs, "customers"), on="okey", how="full", strategy="shuffle")
    manifest = joined.write(str(out)).run(engine)
    expected = expected_join(read_back(inputs["orders"]), read_back(inputs["customers"]), ["okey"], ["okey"], "full")
    assert_same_rows(read_back(out), expected)
    marker = json.loads((out / "_SUCCESS").read_text())
    assert marker["rows"] == manifest.rows == len(expected)
    assert sorted(f["file"] for f in marker["files"]) == sorted(p.name for p in out.glob("*.parquet"))
    assert [p.name for p in tmp_path.iterdir()] == ["joined"]  # no staging or scratch folder left


# ---- sort, top, deduplicate, repartition, apply_groups ---------------------------------------------------


def test_sort_written_as_parts_in_order_is_the_stable_pandas_sort(engine, inputs: dict[str, Path], tmp_path: Path):
    out = tmp_path / "sorted"
    by, ascending = ["region", "amount"], [True, False]  # few regions, coarse amounts: many ties, and nulls
    manifest = dataset(inputs, "orders").sort(by, ascending=ascending).write(str(out)).run(engine)

    table = read_back(inputs["orders"])
    expected = table.sort_values(by, ascending=ascending, kind="stable", na_position="last").reset_index(drop=True)
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) > 1  # the sort really ran over several partitions
    result = pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)
    assert result["id"].tolist() == expected["id"].tolist()  # the exact row order, ties in input order
    pd.testing.assert_frame_equal(canonical(result, keep_order=True), canonical(expected, keep_order=True))
    marker = json.loads((out / "_SUCCESS").read_text())
    assert [f["file"] for f in marker["files"]] == [p.name for p in parts]
    assert marker["rows"] == manifest.rows == len(table)


def test_sort_collected_keeps_the_order(engine, inputs: dict[str, Path]):
    by, ascending = ["okey", "region", "id"], [False, True, False]
    result = dataset(inputs, "orders").sort(by, ascending=ascending).collect(engine)
    table = read_back(inputs["orders"])
    expected = table.sort_values(by, ascending=ascending, kind="stable", na_position="last")
    pd.testing.assert_frame_equal(canonical(result, keep_order=True), canonical(expected, keep_order=True))


@pytest.mark.parametrize(("k", "by", "ascending"), [(7, ["amount"], False), (25, ["okey", "id"], [True, False])])
def test_top_equals_the_head_of_a_stable_sort(engine, inputs: dict[str, Path], k: int, by: list[str], ascending):
    result = dataset(inputs, "orders").top(k, by=by, ascending=ascending).collect(engine)
    table = read_back(inputs["orders"])
    expected = table.sort_values(by, ascending=ascending, kind="stable", na_position="last").head(k)
    pd.testing.assert_frame_equal(canonical(result, keep_order=True), canonical(expected, keep_order=True))


@pytest.mark.parametrize(("by", "keep", "order_by"), [
    (["okey"], "first", None),
    (["okey"], "last", "amount"),
    (["okey", "region"], "last", None),
    (["region"], "first", "amount"),
])
def test_deduplicate_equals_pandas(engine, inputs: dict[str, Path], by: list[str], keep: str, order_by: str | None):
    result = dataset(inputs, "orders").deduplicate(by, keep=keep, order_by=order_by).collect(engine)
    table = read_back(inputs["orders"])
    ordered = table.sort_values(order_by, kind="stable", na_position="last") if order_by else table
    expected = ordered.drop_duplicates(by, keep=keep)
    assert_same_rows(result, expected)


def count_per_key(df: pd.DataFrame, key: str) -> pd.DataFrame:
    """Rows per key in this part alone: right over the table only when every row of a key is in one part."""
    return df.groupby(key, dropna=False).size().rename("rows").reset_index()


def test_repartition_brings_every_row_of_a_key_into_one_part(engine, inputs: dict[str, Path], tmp_path: Path):
    out = tmp_path / "counts"
    counted = dataset(inputs, "orders").repartition("okey").then(count_per_key, key="okey")
    counted.write(str(out)).run(engine)

    parts = [pq.read_table(p).to_pandas() for p in sorted(out.glob("part-*.parquet"))]
    assert sum(1 for p in parts if len(p)) > 1  # the keys really were spread over several parts
    result = pd.concat(parts, ignore_index=True)
    assert not result["okey"].duplicated().any()  # each key (the null key too) counted in exactly one part
    table = read_back(inputs["orders"])
    expected = table.groupby("okey", dropna=False).size().rename("rows").reset_index()
    assert_same_rows(result, expected)


def rank_in_group(group: pd.DataFrame, column: str) -> pd.DataFrame:
    """Each row's rank by `column` within its group (ties by id), and the group's size."""
    ordered = group.sort_values([column, "id"], kind="stable")
    return ordered.assign(rank=np.arange(1, len(ordered) + 1), size=len(ordered))


def test_apply_groups_equals_pandas_groupby_apply(engine, inputs: dict[str, Path]):
    result = dataset(inputs, "orders").apply_groups(rank_in_group, by="region", column="amount").collect(engine)
    table = read_back(inputs["orders"])
    expected = pd.concat([rank_in_group(g, "amount") for _, g in table.groupby("region", dropna=False)])
    assert set(result["size"]) == set(expected["size"])
    assert_same_rows(result, expected)


# ---- graphs: an aggregate feeding a join, a diamond, several outputs -------------------------------------


def over(df: pd.DataFrame, column: str, threshold: float) -> pd.DataFrame:
    return df[df[column] > threshold]


@pytest.mark.parametrize("strategy", ["auto", "broadcast", "shuffle"])
def test_aggregate_feeding_joins_like_large_volume_customers(engine, inputs: dict[str, Path], tmp_path: Path,
                                                             strategy: str):
    """Sum per order, keep the big sums, join the order heads to them and back to the line items."""
    lineitem, heads = dataset(inputs, "lineitem"), dataset(inputs, "heads")
    big = lineitem.aggregate(by="okey", aggs={"qty_sum": ["qty", "sum"]}).then(over, column="qty_sum", threshold=110)
    query = heads.join(big, on="okey", how="semi", strategy=strategy).join(lineitem, on="okey", strategy=strategy)
    out = tmp_path / "q.parquet"
    manifest = query.write(str(out)).run(engine)

    items, orders = read_back(inputs["lineitem"]), read_back(inputs["heads"])
    sums = items.groupby("okey").agg(qty_sum=("qty", "sum")).reset_index()
    kept = sums[sums["qty_sum"] > 110]
    assert 0 < len(kept) < len(sums)
    expected = orders[orders["okey"].isin(kept["okey"])].merge(items, on="okey")
    result = pd.read_parquet(out)
    assert_same_rows(result, expected)
    assert manifest.rows == len(expected)
    assert json.loads((tmp_path / "q.parquet._SUCCESS").read_text())["rows"] == len(expected)


def with_band(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(band=(df["amount"] // 2.5).astype("int64"))


def test_diamond_and_several_outputs_each_committed(engine, inputs: dict[str, Path], tmp_path: Path):
    base = dataset(inputs, "orders").then(with_band)
    per_region = base.aggregate(by="region", aggs={"orders": ["id", "size"], "total": ["amount", "sum"]})
    enriched = base.join(per_region, on="region", how="left", strategy="shuffle")
    by_band = base.sort(["band", "id"], ascending=[False, True])
    paths = {"per_region": tmp_path / "per_region.parquet", "enriched": tmp_path / "enriched",
             "by_band": tmp_path / "by_band"}
    manifests = run(per_region.write(str(paths["per_region"])), enriched.write(str(paths["enriched"])),
                    by_band.write(str(paths["by_band"])), engine=engine)

    table = with_band(read_back(inputs["orders"]))
    regions = table.groupby("region").agg(orders=("id", "size"), total=("amount", "sum")).reset_index()
    assert set(manifests) == {str(p) for p in paths.values()}
    assert all(isinstance(m, Manifest) for m in manifests.values())

    assert_same_rows(pd.read_parquet(paths["per_region"]), regions)
    assert json.loads((tmp_path / "per_region.parquet._SUCCESS").read_text())["rows"] == len(regions)

    expected = expected_join(table, regions, ["region"], ["region"], "left")
    assert_same_rows(read_back(paths["enriched"]), expected)
    assert json.loads((paths["enriched"] / "_SUCCESS").read_text())["rows"] == len(table)
    assert manifests[str(paths["enriched"])].rows == len(table)

    ordered = table.sort_values(["band", "id"], ascending=[False, True], kind="stable")
    result = read_back(paths["by_band"])
    assert result["id"].tolist() == ordered["id"].tolist()
    assert json.loads((paths["by_band"] / "_SUCCESS").read_text())["rows"] == len(table)

    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["by_band", "enriched", "per_region.parquet", "per_region.parquet._SUCCESS"]
