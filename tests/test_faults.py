"""Faults injected for real: worker processes killed mid-run, stages that raise. The output is either
exactly a clean run's or untouched."""

from __future__ import annotations

import re
from pathlib import Path

import cloudpickle
import pandas as pd
import pytest

import userstages
from pipeline import Pipeline, PipelineError, StageError
from pipeline.engines import get_engine
from pipeline.io import FileSource, MemorySink
from stages.analyze import aggregate

cloudpickle.register_pickle_by_value(userstages)


def parts(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("engine_name", ["processes", "joblib", "dask", "ray"])
def test_killed_worker_is_retried_and_output_is_exact(dataset: Path, tmp_path: Path, engine_name: str):
    source = FileSource(str(dataset), chunk_rows=500)
    clean = Pipeline().then(userstages.add_speed)
    clean.run(source, str(tmp_path / "clean"), "sync")

    marker = tmp_path / "killed"
    faulty = Pipeline().then(userstages.die_once, marker=str(marker), bad_id=3333).then(userstages.add_speed)
    with get_engine(engine_name, workers=2) as engine:
        faulty.run(source, str(tmp_path / "out"), engine)
    assert marker.exists()  # a worker really was killed
    assert parts(tmp_path / "out") == parts(tmp_path / "clean")
    for name in parts(tmp_path / "clean"):
        if name.endswith(".parquet"):
            pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out" / name), pd.read_parquet(tmp_path / "clean" / name))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean", "killed", "out"]


@pytest.mark.parametrize("engine_name", ["processes", "joblib", "dask", "ray"])
def test_worker_that_keeps_crashing_is_named_after_the_retries(dataset: Path, tmp_path: Path, engine_name: str):
    """Twelve quick chunks, so tiny tasks share messages: the one chunk that crashes its worker is still the
    one named, with its file, after `retries` + 1 deaths while running alone, on every engine with workers."""
    crashing = Pipeline().then(userstages.segfault_on, bad_id=5222)
    with get_engine(engine_name, workers=2, retries=2) as engine, pytest.raises(PipelineError) as caught:
        crashing.run(FileSource(str(dataset), chunk_rows=500), str(tmp_path / "out"), engine)
    message = str(caught.value)
    assert "a worker process died running read+segfault_on+write on chunk 10 (input" in message
    assert "data-003.parquet" in message and message.endswith(", 3 times, running it alone; giving up")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("engine_name", ["processes", "dask", "ray"])
def test_poison_pill_is_not_retried_and_leaves_committed_output(dataset: Path, tmp_path: Path, engine_name: str):
    out = tmp_path / "out"
    Pipeline().then(userstages.add_speed).run(str(dataset), str(out), "processes")
    before = {name: (out / name).read_bytes() for name in parts(out)}
    poisoned = Pipeline().then(userstages.fail_on, name="poison", bad_id=5999)
    with get_engine(engine_name, workers=2) as engine, pytest.raises(StageError) as caught:
        poisoned.run(FileSource(str(dataset), chunk_rows=1500), str(out), engine, mode="overwrite")  # a file a chunk
    assert "stage 'poison' failed on chunk 3 (input" in str(caught.value) and "data-003.parquet" in str(caught.value)
    assert caught.value.attempts == 1 and "not retried" in str(caught.value)
    assert {name: (out / name).read_bytes() for name in parts(out)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("inside", ["", "out", "sub/out"])
def test_output_inside_or_equal_to_the_input_is_refused(dataset: Path, inside: str):
    with pytest.raises(PipelineError, match="overlaps the input"):
        Pipeline().then(userstages.add_speed).run(str(dataset), str(dataset / inside), "sync", mode="overwrite")
    assert sorted(p.name for p in dataset.iterdir()) == [f"data-{i:03d}.parquet" for i in range(4)]


def test_input_inside_the_output_is_refused(dataset: Path):
    with pytest.raises(PipelineError, match="overlaps the input"):
        Pipeline().then(userstages.add_speed).run(str(dataset), str(dataset.parent), "sync", mode="overwrite")
    assert len(list(dataset.iterdir())) == 4


def test_concurrent_runs_to_one_destination_cannot_interleave(dataset: Path, tmp_path: Path):
    """A second run while the first holds the destination is refused, and the first completes intact."""
    import subprocess
    import sys
    import textwrap

    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pipeline.io.lock import output_lock
        with output_lock({str(out)!r}):
            print("locked", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(PipelineError, match=re.escape(f"another run is writing {out} (lock held by pid {holder.pid})")):
            Pipeline().then(userstages.add_speed).run(str(dataset), str(out), "sync")
    finally:
        holder.kill()
        holder.wait()
    Pipeline().then(userstages.add_speed).run(str(dataset), str(out), "sync")  # the lock died with its holder
    assert (out / "_SUCCESS").exists()


def test_a_stage_failing_in_a_chunk_of_several_files_names_the_file(dataset: Path):
    """The 4 files share one chunk; the message names the file whose rows the stage fails on."""
    poisoned = Pipeline().then(userstages.fail_on, name="poison", bad_id=3100).then(aggregate, by=["carrier"], aggs={"n": ["id", "count"]})
    with pytest.raises(StageError) as caught:
        poisoned.run(FileSource(str(dataset)), MemorySink(), "sync")
    assert f"failed on chunk 0 (input {dataset / 'data-002.parquet'} (row groups 0-2))" in str(caught.value)


def test_a_stage_failing_only_on_files_together_names_them_all(dataset: Path):
    too_big = Pipeline().then(userstages.refuse_more_than, name="small", rows=2000)
    with pytest.raises(StageError) as caught:
        too_big.run(FileSource(str(dataset)), MemorySink(), "sync")
    assert all(f"data-00{i}.parquet" in str(caught.value).splitlines()[0] for i in range(4))
