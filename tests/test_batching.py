"""Tiny tasks share messages to the worker processes; that must change nothing a user can see: answers,
which chunk a crash or an error is blamed on, and where in-driver tasks run."""

from __future__ import annotations

import os
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest

import userstages
from pipeline import Pipeline, PipelineError, StageError
from pipeline.engines import get_engine
from pipeline.engines._schedule import BatchSizer
from pipeline.plan import Plan, Ref, Task

cloudpickle.register_pickle_by_value(userstages)

CHUNKS = 600


@pytest.fixture(scope="module")
def processes():
    with get_engine("processes", workers=2) as engine:
        yield engine


def frame(rows: int = CHUNKS) -> pd.DataFrame:
    return pd.DataFrame({"id": np.arange(rows), "distance": np.arange(rows) * 3 + 1, "delay": np.arange(rows) / 7})


def test_sizer_sends_one_until_it_knows_then_about_the_target():
    sizer = BatchSizer(target=0.005, most=256)
    assert sizer.size() == 1
    sizer.record(tasks=10, seconds=0.001)  # 100 µs each
    assert sizer.size() == 50
    sizer.record(tasks=1, seconds=2.0)  # a long one pulls the average up: back to one at a time
    assert sizer.size() == 1
    tiny = BatchSizer(target=0.005, most=256)
    tiny.record(tasks=100, seconds=0.0001)
    assert tiny.size() == 256


def test_thousands_of_tiny_chunks_give_the_in_process_answer(processes):
    pipeline = Pipeline().then(userstages.add_speed)
    expected = pipeline.run_frame(frame(), chunks=CHUNKS, engine="sync")
    found = pipeline.run_frame(frame(), chunks=CHUNKS, engine=processes)
    pd.testing.assert_frame_equal(found, expected)


def test_a_stage_error_among_tiny_chunks_names_its_chunk(processes):
    poisoned = Pipeline().then(userstages.fail_on, name="poison", bad_id=517)
    with pytest.raises(StageError) as caught:
        poisoned.run_frame(frame(), chunks=CHUNKS, engine=processes)
    assert "stage 'poison' failed on chunk 517" in str(caught.value) and caught.value.attempts == 1


def test_a_worker_killed_among_tiny_chunks_is_retried_and_the_answer_is_exact(tmp_path: Path):
    pipeline = Pipeline().then(userstages.add_speed)
    expected = pipeline.run_frame(frame(), chunks=CHUNKS, engine="sync")
    marker = tmp_path / "killed"
    faulty = Pipeline().then(userstages.die_once, marker=str(marker), bad_id=450).then(userstages.add_speed)
    with get_engine("processes", workers=2) as engine:
        found = faulty.run_frame(frame(), chunks=CHUNKS, engine=engine)
    assert marker.exists()
    pd.testing.assert_frame_equal(found, expected)


# Runs per engine. Elsewhere than `processes` each worker death costs a fresh worker process (1-3 s here), so
# the suite runs 10 there; BLAME_RUNS=50 runs 50 on every engine.
RUNS = {name: int(os.environ.get("BLAME_RUNS", 50 if name == "processes" else 10)) for name in
        ("processes", "joblib", "ray", "dask")}


@pytest.mark.parametrize("engine_name", list(RUNS))
def test_the_chunk_that_kills_its_worker_is_named_in_every_run(engine_name: str):
    """Whatever was in flight with it when its worker died, only the chunk that crashes is ever named: the
    others become suspects, run alone, and succeed. One engine kept across the runs, as in a session."""
    crashing = Pipeline().then(userstages.segfault_on, bad_id=450)
    retries = 2 if engine_name == "processes" else 0  # a worker death costs a fresh worker (seconds) elsewhere
    named = []
    with get_engine(engine_name, workers=2, retries=retries) as engine:
        for _ in range(RUNS[engine_name]):
            with pytest.raises(PipelineError) as caught:
                crashing.run_frame(frame(), chunks=CHUNKS, engine=engine)
            named.append(str(caught.value).split(" (input")[0])
    expected = "a worker process died running read+segfault_on+write on chunk 450"
    assert named == [expected] * RUNS[engine_name]
    assert ("3 times" if retries else "once") in str(caught.value)


def test_frames_holding_objects_of_a_local_class_reach_the_workers(processes):
    class Fare:  # not importable anywhere: only cloudpickle can send it
        def __init__(self, amount: float) -> None:
            self.amount = amount

    df = pd.DataFrame({"id": np.arange(40), "fare": [Fare(i / 2) for i in range(40)]})

    def amounts(chunk: pd.DataFrame) -> pd.DataFrame:
        return chunk.assign(amount=[fare.amount for fare in chunk["fare"]])[["id", "amount"]]

    found = Pipeline().then(amounts).run_frame(df, chunks=8, engine=processes)
    pd.testing.assert_frame_equal(found, amounts(df).reset_index(drop=True))


def test_in_driver_tasks_run_in_the_calling_process_and_the_rest_on_workers(processes):
    graph = {f"pid-{i}": Task(f"pid-{i}", os.getpid, (), "pid", i) for i in range(20)}
    graph["here"] = Task("here", _with_own_pid, tuple(Ref(k) for k in graph), "here", in_driver=True)
    driver, workers = processes.run(Plan(graph, "here"))
    assert driver == os.getpid() and os.getpid() not in workers


def _with_own_pid(*worker_pids: int) -> tuple[int, set[int]]:
    return os.getpid(), set(worker_pids)
