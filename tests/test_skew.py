"""A skewed key stops the run before any task is handed a partition too big for its worker: one message
naming the exchange, the partition, its size against the median and the key, and nothing committed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import PipelineError, get_engine, read


@pytest.fixture(scope="module")
def skewed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300,000 rows in 10 row groups; key 7 holds 250,000 of them, every other key one row."""
    rows = 300_000
    keys = np.where(np.arange(rows) % 6 == 0, np.arange(rows), 7)
    df = pd.DataFrame({"k": keys, "v": np.random.default_rng(0).random(rows)})
    path = tmp_path_factory.mktemp("skew") / "skewed.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=30_000)
    return path


@pytest.mark.parametrize("engine_name", ["sync", "threads"])
def test_a_skewed_key_is_named_and_nothing_is_committed(skewed: Path, tmp_path: Path, engine_name: str):
    small = read(str(skewed), chunk_rows=30_000).named("events")
    with get_engine(engine_name, workers=2, worker_memory="8MB") as engine, pytest.raises(PipelineError) as caught:
        small.join(small.named("again"), on="k", strategy="shuffle").write(str(tmp_path / "out")).run(engine)
    message = str(caught.value)
    assert message.startswith("exchange of events by k: partition ")
    assert "the key k=7 alone has 250,000 rows" in message and "(2 MB, a quarter of a worker's memory)" in message
    assert list(tmp_path.iterdir()) == []


def test_the_same_exchange_runs_when_workers_can_hold_it(skewed: Path):
    with get_engine("sync", worker_memory="1GB") as engine:
        got = read(str(skewed), chunk_rows=30_000).repartition("k").collect(engine)
    assert len(got) == 300_000 and got["v"].sum() == pytest.approx(pd.read_parquet(skewed)["v"].sum())


def test_partitions_all_too_big_ask_for_more_partitions(skewed: Path, tmp_path: Path):
    """No key is skewed, but two partitions for the whole table are more than a task may hold."""
    spread = read(str(skewed), chunk_rows=30_000).then(lambda df: df.assign(k=df.index % 1000), name="spread")
    with get_engine("sync", worker_memory="8MB") as engine, pytest.raises(PipelineError) as caught:
        spread.repartition("k", partitions=2).write(str(tmp_path / "out")).run(engine)
    message = str(caught.value)
    assert "more than one task may hold (2 MB, a quarter of a worker's memory)" in message
    assert message.endswith("give the exchange more partitions (now 2) or workers more memory ([engine] worker_memory)")
    assert list(tmp_path.iterdir()) == []
