"""The compiled plan: plain picklable data, fused per-chunk chains, a reduction tree, and a scheduler that
merges partials as soon as they are ready (so memory stays bounded however many chunks there are)."""

from __future__ import annotations

import pickle
from pathlib import Path

import cloudpickle

import pandas as pd
import pytest
from conftest import write_parquet_files

from pipeline import Pipeline
from pipeline.engines import get_engine
from pipeline.io import FileSource
from pipeline.plan import Ref
from stages.analyze import aggregate
from stages.clean import drop_nulls
from stages.transform import derive


def test_per_chunk_stages_fuse_into_one_task_per_chunk(dataset: Path):
    pipeline = Pipeline().then(drop_nulls, columns=["delay"]).then(derive, columns={"twice": "delay * 2"})
    plan = pipeline.plan(FileSource(str(dataset), chunk_rows=500))
    chunk_tasks = [t for t in plan if t.key.startswith("chunk-")]
    assert len(chunk_tasks) == 12 and len(plan) == 13  # 12 chunks + commit
    assert {t.label for t in chunk_tasks} == {"read+drop_nulls+derive+write"}
    assert plan.tasks["commit"].deps == [t.key for t in chunk_tasks]


@pytest.fixture(scope="module")
def small_groups(table: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6,000 rows in 4 files of 100-row row groups: 60 chunks."""
    return write_parquet_files(table, tmp_path_factory.mktemp("small") / "t", files=4, row_group_rows=100)


def test_reduction_tree_has_the_requested_fan_in(small_groups: Path):
    pipeline = Pipeline().then(aggregate, by=["carrier"], aggs={"n": ["id", "count"]})
    plan = pipeline.plan(FileSource(str(small_groups), chunk_rows=100))
    levels = {}
    for task in plan:
        if task.key.startswith("combine-"):
            levels.setdefault(task.key.split("-")[1], []).append(len(task.deps))
    assert levels == {"1": [8] * 7 + [4], "2": [8]}
    assert plan.tasks["finalize"].deps == ["combine-2-00000"] and plan.tasks["commit"].deps == ["finalize"]
    assert "reduction tree: 60 partials → 8 combines → 1 combines → finalize" in plan.describe()


def test_plan_is_plain_picklable_data(dataset: Path):
    plan = Pipeline().then(aggregate, by=["carrier"], aggs={"n": ["id", "count"]}).plan(FileSource(str(dataset), chunk_rows=500))
    again = pickle.loads(cloudpickle.dumps(plan))
    assert list(again.tasks) == list(plan.tasks)
    assert all(isinstance(a, Ref) for a in again.tasks["combine-1-00000"].args[1:])


def merged_by(key: str) -> list[int]:
    """combine-1-0000j merges chunks 8j..8j+7 (the last of 60: 4)."""
    j = int(key.rsplit("-", 1)[1])
    return list(range(8 * j, min(8 * j + 8, 60)))


def test_partials_are_combined_before_more_chunks_are_read(small_groups: Path, tmp_path: Path):
    done: list[str] = []
    pipeline = Pipeline().then(aggregate, by=["carrier"], aggs={"n": ["id", "count"]})
    with get_engine("sync") as engine:
        pipeline.run(FileSource(str(small_groups), chunk_rows=100), str(tmp_path / "a.parquet"), engine,
                     on_progress=lambda plan: lambda task: done.append(task.key))
    outstanding, worst = 0, 0  # partials finished but not yet merged
    for key in done:
        outstanding += 1 if key.startswith("chunk-") else -len(merged_by(key)) if key.startswith("combine-1") else 0
        worst = max(worst, outstanding)
    assert worst <= 8 + 2  # one fan-in group plus the two tasks in flight, never all 60
    assert done.index("combine-1-00000") < done.index("chunk-00009")
    assert done[-2:] == ["finalize", "commit"]
