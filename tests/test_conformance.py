"""One conformance suite every engine must pass: same output, same part files, same row order, same
errors. Engines are taken from the registry, so a new engine is covered as soon as it is registered."""

from __future__ import annotations

import json
from pathlib import Path

import cloudpickle
import pandas as pd
import pytest

import userstages
from pipeline import ConfigError, Pipeline, StageError
from pipeline.engines import ENGINES, get_engine
from pipeline.io import FileSource
from stages.analyze import aggregate

cloudpickle.register_pickle_by_value(userstages)  # as the config loader does for a user's module

AGGS = {
    "flights": ["id", "size"],
    "delays": ["delay", "count"],
    "total_delay": ["delay", "sum"],
    "mean_delay": ["delay", "mean"],
    "min_delay": ["delay", "min"],
    "max_delay": ["delay", "max"],
    "var_delay": ["delay", "var"],
    "std_delay": ["delay", "std"],
    "kinds": ["kind", "nunique"],
    "first_id": ["id", "first"],
    "last_delay": ["delay", "last"],
    "miles": ["distance", "sum"],
}


def expected_aggregate(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return df.groupby(by, observed=True).agg(**{k: tuple(v) for k, v in AGGS.items()}).reset_index()


def test_per_chunk_pipeline_writes_every_part_in_order(engine, dataset: Path, table: pd.DataFrame, tmp_path: Path):
    pipeline = Pipeline().then(userstages.long_flights, min_distance=1500).then(userstages.add_speed)
    manifest = pipeline.run(FileSource(str(dataset), chunk_rows=1000), str(tmp_path / "out"), engine)

    expected = userstages.add_speed(userstages.long_flights(table, 1500)).reset_index(drop=True)
    out = tmp_path / "out"
    parts = sorted(p.name for p in out.glob("part-*.parquet"))
    assert parts == [f"part-{i:05d}.parquet" for i in range(6)]  # 6,000 rows packed 1,000 a chunk across files
    result = pd.concat([pd.read_parquet(out / p) for p in parts], ignore_index=True)
    pd.testing.assert_frame_equal(result, expected)
    marker = json.loads((out / "_SUCCESS").read_text())
    assert marker["rows"] == manifest.rows == len(expected)
    assert [f["file"] for f in marker["files"]] == parts
    assert [name for name, _ in marker["schema"]] == list(expected.columns)
    assert not list(tmp_path.glob(".out.staging-*"))


@pytest.mark.parametrize("by", [["carrier"], ["carrier", "month"], ["kind"]])
def test_aggregate_equals_pandas_on_the_whole_table(engine, dataset: Path, table: pd.DataFrame, tmp_path, by):
    pipeline = Pipeline().then(userstages.long_flights).then(aggregate, by=by, aggs=AGGS)
    sink = tmp_path / "agg.parquet"
    pipeline.run(FileSource(str(dataset), chunk_rows=500), str(sink), engine)
    expected = expected_aggregate(userstages.long_flights(table), by)
    pd.testing.assert_frame_equal(pd.read_parquet(sink), expected, check_categorical=False)
    assert (tmp_path / "agg.parquet._SUCCESS").exists()


def test_in_memory_run_returns_the_pandas_answer(engine, table: pd.DataFrame):
    pipeline = Pipeline().then(aggregate, by=["carrier", "kind"], aggs=AGGS)
    result = pipeline.run_frame(table, chunks=7, engine=engine)
    pd.testing.assert_frame_equal(result, expected_aggregate(table, ["carrier", "kind"]))


def test_failing_stage_names_stage_chunk_file_and_user_frame(engine, dataset: Path, tmp_path: Path):
    pipeline = Pipeline().then(userstages.fail_on, name="poison", bad_id=4321)
    with pytest.raises(StageError) as caught:
        pipeline.run(FileSource(str(dataset), chunk_rows=500), str(tmp_path / "out"), engine)
    error = caught.value
    assert (error.stage, error.chunk) == ("poison", 8)  # row 4321 is in file 2 (rows 3000-4499), row group 2
    assert error.source.endswith("data-002.parquet (row group 2)")
    assert "ValueError: row 4321 is poisoned" in str(error)
    assert "userstages.py" in error.user_traceback and "pipeline/tasks.py" not in error.user_traceback
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.iterdir())  # staging removed too


@pytest.mark.parametrize("name", list(ENGINES))
def test_every_engine_names_an_unknown_option_when_built(name: str):
    with pytest.raises(ConfigError, match=rf"engine: unknown option\(s\) for the {name} engine: colour, size"):
        get_engine(name, colour="blue", size=3)
