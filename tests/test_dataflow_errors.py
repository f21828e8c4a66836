"""Bad dataset graphs are refused, and failures are named, with nothing committed: a join key missing from
one side and keys whose types cannot be compared are refused before anything runs, naming the datasets and
keys; a stage failing after a shuffle join names the stage and the partition; a failing run with several
outputs commits none of them; an output over an input is refused. No staging or scratch folder is left."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.dataset import Dataset, Output, read, run
from pipeline.errors import ConfigError, PipelineError, SinkError, StageError
from pipeline.exchange import hash_partitions
from pipeline.graph_run import describe

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # cluster workers cannot import the tests

POISON_KEY = 17


def write_table(table: pa.Table, folder: Path, row_group: int) -> Path:
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "data-000.parquet", row_group_size=row_group)
    return folder


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    """Orders (300 rows, 6 row groups) and customers (60 rows, 3 row groups) keyed by an int `okey`, and
    customers whose `okey` is text."""
    rng = np.random.default_rng(3)
    orders = pa.table({"id": pa.array(np.arange(300), pa.int64()),
                       "okey": pa.array(rng.integers(0, 40, 300), pa.int64()),
                       "amount": pa.array(rng.integers(0, 100, 300) / 4)})
    customers = pa.table({"okey": pa.array(np.arange(60) % 40, pa.int64()),
                          "name": pa.array([f"c{i}" for i in range(60)])})
    texts = customers.set_column(0, "okey", customers["okey"].cast(pa.string()))
    return {"orders": write_table(orders, tmp_path / "orders", 50),
            "customers": write_table(customers, tmp_path / "customers", 20),
            "texts": write_table(texts, tmp_path / "texts", 20)}


def orders_and(inputs: dict[str, Path], right: str) -> tuple[Dataset, Dataset]:
    return read(str(inputs["orders"]), chunk_rows=50), read(str(inputs[right]), chunk_rows=20)


def leftovers(folder: Path) -> list[str]:
    """Entries a run may leave beside its outputs: staging, scratch or moved-aside folders."""
    return sorted(p.name for p in folder.iterdir() if re.search(r"\.(staging|scratch|old)-", p.name))


def run_watched(*outputs: Output, seen: list[str]) -> None:
    """Run `outputs` on the sync engine; `seen` gets "plan" once a plan is handed to the engine, then the
    key of every task that finishes."""

    def on_progress(plan: object) -> object:
        seen.append("plan")
        return lambda task: seen.append(task.key)

    run(*outputs, engine="sync", on_progress=on_progress)


def keep(df: pd.DataFrame) -> pd.DataFrame:
    return df


def poison(df: pd.DataFrame, key: int) -> pd.DataFrame:
    if (df["okey"] == key).any():
        raise ValueError(f"key {key} is poisoned")
    return df


# ---- refused before anything runs ------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["auto", "broadcast", "shuffle"])
@pytest.mark.parametrize(("left_on", "right_on", "named"), [
    ("amount", "amount", "customers"),  # on both in name, but only the orders have it
    ("nokey", "okey", "orders"),
])
def test_missing_join_key_is_refused_before_anything_runs(inputs: dict[str, Path], tmp_path: Path, strategy: str,
                                                          left_on: str, right_on: str, named: str):
    orders, customers = orders_and(inputs, "customers")
    joined = orders.join(customers, left_on=left_on, right_on=right_on, strategy=strategy)
    out = tmp_path / "out"
    seen: list[str] = []
    with pytest.raises(ConfigError) as caught:
        run_watched(joined.write(str(out)), seen=seen)
    message = str(caught.value)
    missing = left_on if named == "orders" else right_on
    assert f"join orders ⋈ customers: key {missing!r} is not a column of {named}" in message
    assert seen == []  # nothing was run
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("strategy", ["broadcast", "shuffle"])
def test_missing_key_on_the_side_without_stages_is_refused_before_anything_runs(inputs: dict[str, Path],
                                                                                 tmp_path: Path, strategy: str):
    """The orders go through a stage first, so their columns are known only once it runs; the customers'
    columns are known from the files, and they lack the key."""
    orders, customers = orders_and(inputs, "customers")
    joined = orders.then(keep).join(customers, left_on="okey", right_on="cust", strategy=strategy)
    out = tmp_path / "out"
    seen: list[str] = []
    with pytest.raises(ConfigError) as caught:
        run_watched(joined.write(str(out)), seen=seen)
    assert "key 'cust' is not a column of customers" in str(caught.value)
    assert seen == []  # nothing was run
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("strategy", ["auto", "broadcast", "shuffle"])
def test_int_and_text_keys_are_refused_naming_both(inputs: dict[str, Path], tmp_path: Path, strategy: str):
    orders, texts = orders_and(inputs, "texts")
    out = tmp_path / "out.parquet"
    seen: list[str] = []
    with pytest.raises(ConfigError) as caught:
        run_watched(orders.join(texts, on="okey", strategy=strategy).write(str(out)), seen=seen)
    message = str(caught.value)
    assert "key types differ" in message
    assert "orders.okey is int64" in message and "texts.okey is string" in message
    assert seen == []  # nothing was run
    assert not out.exists() and leftovers(tmp_path) == []


def test_bad_key_in_one_output_stops_every_output(inputs: dict[str, Path], tmp_path: Path):
    orders, customers = orders_and(inputs, "customers")
    good = orders.sort("id").write(str(tmp_path / "sorted"))
    bad = orders.join(customers, on="name").write(str(tmp_path / "joined"))
    seen: list[str] = []
    with pytest.raises(ConfigError, match="key 'name' is not a column of orders"):
        run_watched(good, bad, seen=seen)
    assert seen == []  # nothing was run
    assert not (tmp_path / "sorted").exists() and not (tmp_path / "joined").exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"on": "okey", "how": "outer"}, "outer"),
    ({"on": "okey", "strategy": "fastest"}, "fastest"),
    ({"on": "okey", "left_on": "okey"}, "on="),
    ({"left_on": ["okey", "id"], "right_on": "okey"}, "2 keys"),
    ({"on": "okey", "suffixes": ("_x", "_x")}, "suffixes"),
])
def test_a_bad_join_is_refused_when_built(inputs: dict[str, Path], kwargs: dict, named: str):
    orders, customers = orders_and(inputs, "customers")
    with pytest.raises((ValueError, ConfigError), match=re.escape(named)):
        orders.join(customers, **kwargs)


# ---- failures while running ------------------------------------------------------------------------------


def test_stage_failing_after_a_shuffle_join_names_stage_and_partition(engine, inputs: dict[str, Path],
                                                                      tmp_path: Path):
    orders, customers = orders_and(inputs, "customers")
    joined = orders.join(customers, on="okey", strategy="shuffle").then(poison, name="poison", key=POISON_KEY)
    out = tmp_path / "out"
    notes = " ".join(describe([joined.write(str(out))]).notes)
    partitions = int(re.search(r"by shuffle, both exchanged by hash of the keys into (\d+) partitions", notes)[1])
    where = int(hash_partitions(pa.table({"okey": pa.array([POISON_KEY], pa.int64())}), ["okey"], partitions)[0])

    with pytest.raises(StageError) as caught:
        joined.write(str(out)).run(engine)
    error = caught.value
    assert error.stage == "poison"
    assert error.chunk == where
    assert f"partition {where}" in error.source and "orders ⋈ customers" in error.source
    assert f"stage 'poison' failed on chunk {where}" in str(error) and f"partition {where}" in str(error)
    assert f"ValueError: key {POISON_KEY} is poisoned" in str(error)
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("failing_first", [False, True])
def test_failing_run_commits_none_of_its_outputs(engine, inputs: dict[str, Path], tmp_path: Path,
                                                 failing_first: bool):
    orders, customers = orders_and(inputs, "customers")
    good = orders.sort("id").write(str(tmp_path / "sorted"))
    total = orders.aggregate(aggs={"n": ["id", "size"]}).write(str(tmp_path / "total.parquet"))
    bad = (orders.join(customers, on="okey", strategy="shuffle").then(poison, name="poison", key=POISON_KEY)
           .write(str(tmp_path / "joined")))
    outputs = (bad, good, total) if failing_first else (good, total, bad)
    with pytest.raises(StageError, match="poison"):
        run(*outputs, engine=engine)
    for name in ("sorted", "total.parquet", "total.parquet._SUCCESS", "joined"):
        assert not (tmp_path / name).exists()
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["customers", "orders", "texts"]


# ---- outputs over inputs ---------------------------------------------------------------------------------


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("mode", ["error", "overwrite"])
@pytest.mark.parametrize("target", ["orders", "customers", "orders/inside"])
def test_output_over_an_input_is_refused(inputs: dict[str, Path], tmp_path: Path, mode: str, target: str):
    orders, customers = orders_and(inputs, "customers")
    before = {name: snapshot(inputs[name]) for name in ("orders", "customers")}
    joined = orders.join(customers, on="okey", strategy="shuffle")
    with pytest.raises((ConfigError, SinkError)) as caught:
        run(joined.write(str(tmp_path / target), mode=mode), engine="sync")
    if mode == "overwrite" or target == "orders/inside":
        assert isinstance(caught.value, ConfigError) and "overlaps the input" in str(caught.value)
    assert {name: snapshot(inputs[name]) for name in ("orders", "customers")} == before
    assert leftovers(tmp_path) == [] and leftovers(inputs["orders"]) == []


@pytest.mark.parametrize("mode", ["error", "overwrite"])
def test_output_file_equal_to_the_input_file_is_refused(tmp_path: Path, mode: str):
    path = tmp_path / "table.parquet"
    pq.write_table(pa.table({"k": pa.array(range(10))}), path, row_group_size=5)
    before = path.read_bytes()
    with pytest.raises(PipelineError) as caught:
        run(read(str(path)).aggregate(aggs={"n": ["k", "size"]}).write(str(path), mode=mode), engine="sync")
    if mode == "overwrite":
        assert isinstance(caught.value, ConfigError) and "overlaps the input" in str(caught.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.parquet"]


def test_one_path_written_by_two_outputs_is_refused(inputs: dict[str, Path], tmp_path: Path):
    orders, _ = orders_and(inputs, "customers")
    out = str(tmp_path / "out")
    with pytest.raises(ConfigError, match="written by more than one output"):
        run(orders.write(out), orders.sort("id").write(out), engine="sync")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("operator", ["sort", "repartition", "deduplicate"])
def test_missing_sort_or_shuffle_key_is_refused_before_anything_runs(inputs: dict[str, Path], tmp_path: Path,
                                                                     operator: str):
    orders, _ = orders_and(inputs, "customers")
    out = tmp_path / "out"
    seen: list[str] = []
    with pytest.raises(ConfigError) as caught:
        run_watched(getattr(orders, operator)("okee").write(str(out)), seen=seen)
    message = str(caught.value)
    assert re.match(r"orders: key 'okee' to (sort|partition) by is not a column of orders \(has: id, okey", message)
    assert seen == [] and not out.exists() and leftovers(tmp_path) == []
