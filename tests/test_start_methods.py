"""The processes engine starts its workers by fork when that is safe and by forkserver otherwise; both give the
same answer as the in-process engine, and `auto` never forks a driver that runs other threads."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest

import userstages
from pipeline import ConfigError, Pipeline
from pipeline.engines import get_engine
from pipeline.engines.local import fork_is_safe
from pipeline.io import FileSource
from stages.analyze import aggregate

AGGS = {"n": ["id", "count"], "total": ["distance", "sum"], "mean_delay": ["delay", "mean"]}


def run(dataset: Path, out: Path, engine: object) -> pd.DataFrame:
    pipeline = Pipeline().then(userstages.long_flights).then(aggregate, by=["carrier", "month"], aggs=AGGS)
    pipeline.run(FileSource(str(dataset), chunk_rows=500), str(out), engine)
    return pd.read_parquet(out)


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_each_start_method_gives_the_in_process_answer(dataset: Path, tmp_path: Path, method: str):
    expected = run(dataset, tmp_path / "sync.parquet", "sync")
    with get_engine("processes", workers=2, start_method=method) as engine:
        found = run(dataset, tmp_path / f"{method}.parquet", engine)
        assert engine._executor._mp_context.get_start_method() == method
    pd.testing.assert_frame_equal(found, expected)


def test_auto_does_not_fork_while_another_thread_runs(dataset: Path, tmp_path: Path):
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not fork_is_safe()
        with get_engine("processes", workers=2) as engine:
            assert engine._executor._mp_context.get_start_method() == "forkserver"
            found = run(dataset, tmp_path / "out.parquet", engine)
    finally:
        stop.set()
        other.join()
    pd.testing.assert_frame_equal(found, run(dataset, tmp_path / "sync.parquet", "sync"))


def test_an_unknown_start_method_is_a_config_error():
    with pytest.raises(ConfigError, match="engine.start_method: must be one of auto, fork, forkserver, not 'spawn'"):
        get_engine("processes", start_method="spawn")
