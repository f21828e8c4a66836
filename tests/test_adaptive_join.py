"""A join whose side has no row count before running (here an aggregate's result) chooses its strategy while
it runs (`pipeline.adaptive_join`): broadcast when that side proves small, else a shuffle. Both ways give the
rows pandas gives, for every kind of join that may broadcast, on every engine; which way ran is read from the
run's trace (a broadcast leaves the other side's map tasks with nothing to write). A stage of the other side
that fails while it is read by the join is named with its chunk's file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cloudpickle
import pandas as pd
import pyarrow as pa
import pytest

from pipeline import graph, joining
from pipeline.adaptive_join import choose, map_unless_broadcast
from pipeline.dataset import Dataset, Output, read
from pipeline.errors import StageError
from pipeline.exchange import MapOutput
from pipeline.graph_run import describe
from pipeline.io.memory import MemorySink
from pipeline.join import JoinSpec
from pipeline.io.scratch import ExchangeSource
from pipeline.plan import discover
from pipeline.shuffle import Exchange
from test_dataflow import HOWS, assert_same_rows, dataset, expected_join, inputs, read_back  # noqa: F401 - fixture

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # cluster workers cannot import the tests

ADAPTIVE = [how for how in HOWS if how != "full"]  # a full join broadcasts neither side


def per_customer(inputs: dict[str, Path]) -> Dataset:
    """The customers summed per key: an aggregate, so its rows are not known before running."""
    return dataset(inputs, "customers").aggregate(by=["okey", "region"], aggs={"spent": ["amount", "sum"]})


def sides(inputs: dict[str, Path], how: str) -> tuple[Dataset, Dataset]:
    """(left, right), the aggregate on the side this kind of join may broadcast."""
    orders, summed = dataset(inputs, "orders"), per_customer(inputs)
    return (summed, orders) if how == "right" else (orders, summed)


def exchanged_parts(trace: Path) -> int:
    """How many parts a map task wrote to an exchange, from the run's Chrome trace."""
    return sum(1 for event in json.loads(trace.read_text())["traceEvents"] if event.get("cat") == "exchange")


@pytest.mark.parametrize("proves_small", [True, False], ids=["broadcast", "shuffle"])
@pytest.mark.parametrize("how", ADAPTIVE)
def test_join_of_a_side_counted_while_running_equals_pandas(engine, inputs: dict[str, Path], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch, how: str,
                                                             proves_small: bool):
    monkeypatch.setattr(joining, "BROADCAST_ROWS", 100)  # the 600 orders are not known to be small
    monkeypatch.setattr(graph, "BROADCAST_ROWS", 1000 if proves_small else 0)  # what the aggregate proves
    left, right = sides(inputs, how)
    output = Output(left.join(right, on=["okey", "region"], how=how), MemorySink())
    assert "broadcast if it has at most" in " ".join(describe([output]).notes)
    trace = tmp_path / "trace.json"
    result = output.run(engine, trace=str(trace)).value

    summed = per_customer(inputs).collect("sync")
    orders = read_back(inputs["orders"])
    frames = (summed, orders) if how == "right" else (orders, summed)
    expected = expected_join(*frames, ["okey", "region"], ["okey", "region"], how)
    assert len(expected) > 0
    assert_same_rows(result, expected)
    order_parts = len(orders) // 100  # one part per 100-row row group
    assert exchanged_parts(trace) == 1 + (0 if proves_small else order_parts)  # the aggregate is one part


def poison(df: pd.DataFrame, key: int) -> pd.DataFrame:
    if (df["okey"] == key).any():
        raise ValueError(f"key {key} is poisoned")
    return df


def test_stage_of_the_big_side_failing_in_the_join_names_stage_and_file(engine, inputs: dict[str, Path]):
    """The orders' stage runs inside the join's task once the aggregate proved small: it is still named."""
    key = int(read_back(inputs["orders"])["okey"].dropna().iloc[0])
    orders = dataset(inputs, "orders").then(poison, name="poison", key=key)
    with pytest.raises(StageError) as caught:
        orders.join(per_customer(inputs), on=["okey", "region"]).collect(engine)
    assert caught.value.stage == "poison"
    assert f"key {key} is poisoned" in str(caught.value)
    assert str(inputs["orders"]) in str(caught.value)


@pytest.mark.parametrize(("rows", "expected"), [(5, True), (6, False)])
def test_choose_broadcasts_a_side_within_the_limit_and_writes_the_choice(tmp_path: Path, rows: int,
                                                                          expected: bool):
    maps = [MapOutput("a", [2, 1], [20, 10]), MapOutput("b", [0, rows - 3], [0, 10])]
    path = tmp_path / "choice"
    assert choose(str(path), 5, 1000, *maps) is expected
    assert path.read_bytes() == (b"broadcast" if expected else b"shuffle")
    assert choose(str(tmp_path / "bytes"), 100, 39, *maps) is False  # 40 bytes: over the limit


@pytest.mark.parametrize("broadcast", [True, False])
def test_the_big_sides_map_writes_nothing_once_broadcast_is_chosen(inputs: dict[str, Path], tmp_path: Path,
                                                                    broadcast: bool):
    source, chunks = discover((), dataset(inputs, "orders").source)
    chunk = chunks[0]
    output = ExchangeSource(str(tmp_path / "maps"), 1, "orders")
    made = map_unless_broadcast(source, chunk, (), Exchange("hash", ("okey",)), 3, output, None, None, broadcast)
    assert sum(made.rows) == (0 if broadcast else chunk.rows)
    assert Path(output.map_path(chunk.index)).exists() is not broadcast


@pytest.mark.parametrize(("how", "left", "right", "bound"), [
    ("inner", 10_000, 25, 250_000),  # supplier ⋈ nation: small enough to broadcast without counting
    ("left", 100, 20, 2_120),  # every pair, and each unmatched row of either side
    ("full", 100, 20, 2_120),
    ("semi", 600, None, 600),  # some of the left side's rows, whatever the right side
    ("anti", None, 5, None),
    ("inner", 1_000, 1_000, None),  # a million pairs: no guide to the size
    ("inner", 10, None, None),
])
def test_join_rows_are_bounded_before_running_where_small(how: str, left: int | None, right: int | None,
                                                          bound: int | None):
    spec = JoinSpec.of("k", None, None, how, ("", "_right"), "auto")
    assert joining.joined_rows(spec, left, right) == bound


def test_semi_and_anti_joins_move_only_the_keys_of_the_right_side(inputs: dict[str, Path]):
    """The exchanged (or broadcast) right side of a semi join is its key columns; the rows kept are pandas'
    (the conformance suite checks every kind; this checks what is moved)."""
    from pipeline.joining import KeysOnly

    customers = pa.Table.from_pandas(read_back(inputs["customers"]), preserve_index=False)
    keys = KeysOnly(("okey", "region"))(customers)
    assert keys.equals(customers.select(["okey", "region"]))
    with pytest.raises(KeyError, match="'nokey'"):
        KeysOnly(("nokey",))(customers)
    output = Output(dataset(inputs, "orders").join(per_customer(inputs), on=["okey", "region"], how="semi"),
                    MemorySink())
    assert any("keys of customers" in task.label for task in describe([output]))


@pytest.mark.parametrize(("ranges", "adaptive"), [(8, True), (9, False)])
def test_a_side_with_far_more_parts_is_not_shuffled_into_the_other_sides_few(inputs: dict[str, Path],
                                                                             monkeypatch: pytest.MonkeyPatch,
                                                                             ranges: int, adaptive: bool):
    """Chosen while running, the join has a part per part of the side it may not broadcast (here the
    customers, one chunk); the aggregate it may broadcast has `ranges` parts. Over 8 times as many, a
    shuffle into one partition would hold them all: the join is then a plain shuffle into `ranges`."""
    monkeypatch.setattr(joining, "BROADCAST_ROWS", 100)  # the 160 customers are not known to be small
    customers = read(str(inputs["customers"]), chunk_rows=1000)
    totals = dataset(inputs, "lineitem").aggregate(by="okey", aggs={"qty": ["qty", "sum"]}, partitions=ranges)
    notes = " ".join(describe([Output(customers.join(totals, on="okey"), MemorySink())]).notes)
    assert ("broadcast if it has at most" in notes) is adaptive
    assert (f"by shuffle, both exchanged by hash of the keys into {ranges} partitions" in notes) is not adaptive
