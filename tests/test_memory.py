"""Per-worker memory limits, enforced for real: one chunk that takes far more memory than the others costs
its worker, never the machine. A worker over the limit is stopped and replaced and its task runs again; a
chunk that keeps going over it stops the run, named with its input and the limit, and nothing is committed."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import cloudpickle
import pandas as pd
import pytest

import spawned
import userstages
from pipeline import FileSource, Pipeline, PipelineError
from pipeline.engines import get_engine
from pipeline.engines.memory import format_size, parse_size, worker_limit

cloudpickle.register_pickle_by_value(userstages)

LIMIT = "700MB"  # a worker with pandas and pyarrow loaded uses a few hundred MB; the hog takes 6 GB
HOG_MB = 6000


def test_sizes_read_as_people_write_them():
    assert parse_size("2GB") == 2 * 10**9 and parse_size("1.5 GiB") == int(1.5 * 2**30)
    assert parse_size(4096) == 4096 and format_size(parse_size(LIMIT)) == "700 MB"
    with pytest.raises(PipelineError, match="expected a size like '2GB'"):
        parse_size("lots")
    share = worker_limit(None, 2)
    assert share is not None and 0 < share < worker_limit(None, 1)


@pytest.mark.parametrize("engine_name", ["processes", "dask", "ray"])
def test_a_chunk_that_keeps_going_over_the_limit_is_named_and_nothing_is_committed(
    dataset: Path, tmp_path: Path, engine_name: str
):
    hog = Pipeline().then(userstages.hog_on, name="explode", bad_id=4100, megabytes=HOG_MB)
    out = tmp_path / "out"
    with get_engine(engine_name, workers=2, retries=1, worker_memory=LIMIT) as engine:
        with pytest.raises(PipelineError) as caught:
            hog.run(FileSource(str(dataset), chunk_rows=500), str(out), engine)
    message = str(caught.value)
    assert message.startswith("read+explode+write on chunk 8 (input ") and "data-002.parquet" in message
    assert "ran out of memory: worker limit 700 MB" in message and "2 times" in message
    assert "\n" not in message and not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("engine_name", ["processes", "dask", "ray"])
def test_a_worker_over_the_limit_once_is_replaced_and_the_output_is_exact(
    dataset: Path, tmp_path: Path, engine_name: str
):
    marker = tmp_path / "went-over"
    expected = Pipeline().then(userstages.hog_on, name="explode", bad_id=-1, megabytes=0)
    expected.run(FileSource(str(dataset), chunk_rows=500), str(tmp_path / "clean"), "sync")
    hog = Pipeline().then(userstages.hog_on, name="explode", bad_id=4100, megabytes=HOG_MB, marker=str(marker))
    with get_engine(engine_name, workers=2, worker_memory=LIMIT) as engine:
        hog.run(FileSource(str(dataset), chunk_rows=500), str(tmp_path / "out"), engine)
    assert marker.exists()  # the chunk really went over once
    clean = sorted(p.name for p in (tmp_path / "clean").iterdir())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == clean
    for name in clean:
        if name.endswith(".parquet"):
            pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out" / name), pd.read_parquet(tmp_path / "clean" / name))


def test_the_command_takes_the_limit_from_set_and_reports_one_line(dataset: Path, tmp_path: Path):
    shutil.copy(Path(userstages.__file__), tmp_path / "userstages.py")  # the user's module, next to the config
    (tmp_path / "job.toml").write_text(f"""
[source]
path = "{dataset}"
chunk_rows = 500
[[stages]]
name = "explode"
uses = "userstages:hog_on"
params = {{ bad_id = 4100, megabytes = {HOG_MB} }}
[sink]
path = "out"
[engine]
workers = 2
""")
    run = [str(Path(sys.executable).parent / "pipeline"), "run", "job.toml", "--quiet"]
    over = spawned.run([*run, "--set", f"engine.worker_memory={LIMIT}"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert over.returncode == 1 and over.stderr.count("\n") == 1, over.stderr
    assert "chunk 8 (input" in over.stderr and "ran out of memory: worker limit 700 MB" in over.stderr
    assert "Traceback" not in over.stderr and not (tmp_path / "out").exists()
    bad = spawned.run([*run, "--set", "engine.worker_memory=lots"], cwd=tmp_path, capture_output=True, text=True,
                      timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "job.toml: engine.worker_memory: expected a size like '2GB'" in bad.stderr
