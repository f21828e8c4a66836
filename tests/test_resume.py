"""Kill the whole `pipeline run` process group mid-run, then `--resume`: finished chunks are reused, the
output is identical to a clean run, and a changed input or stage invalidates exactly what depends on it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

import spawned

PIPELINE = str(Path(sys.executable).parent / "pipeline")
TESTS = Path(__file__).resolve().parent


def write_config(folder: Path, data: Path, out: Path, log: Path, aggregate: bool, engine: str = "processes") -> Path:
    shutil.copy(TESTS / "userstages.py", folder / "userstages.py")
    agg = (
        '[[stages]]\nname = "agg"\nuses = "stages.analyze:aggregate"\n'
        'params = { by = ["carrier"], aggs = { n = ["id", "count"], total = ["delay", "sum"] } }\n'
        if aggregate else ""
    )
    config = folder / "job.toml"
    config.write_text(
        f'[source]\npath = "{data}"\nchunk_rows = 500\n'
        f'[[stages]]\nname = "slow"\nuses = "userstages:slow_logged"\n'
        f'params = {{ log = "{log}", gate = "{log}.gate" }}\n{agg}'
        f'[sink]\npath = "{out}"\nmode = "overwrite"\n[engine]\nname = "{engine}"\nworkers = 2\n'
    )
    return config


def kill_midway(config: Path, log: Path, after: int) -> None:
    """Start a run in its own process group and SIGKILL the whole group once `after` chunks are logged.

    The gate file holds the run's later chunks until then (`userstages.slow_logged`), so it cannot finish
    first however slow the machine; every process of the run, cluster processes in their own process group
    included, is killed by pid, as in a crash."""
    gate = Path(f"{log}.gate")
    gate.write_text(str(after))
    run = spawned.spawn([PIPELINE, "run", str(config), "--quiet"])
    try:
        spawned.wait_for(lambda: len(logged(log)) >= after or run.poll() is not None, 120, f"{after} chunks logged")
        assert run.poll() is None, f"the run ended (exit {run.returncode}) before it could be killed"
    finally:
        spawned.stop(run)
        gate.unlink()


def logged(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


@pytest.mark.parametrize(
    "aggregate, engine",
    [(False, "processes"), (True, "processes"), (False, "dask"), (True, "ray")],
    ids=["per-chunk", "aggregate", "per-chunk-dask", "aggregate-ray"],
)
def test_kill_then_resume_gives_the_clean_output(dataset: Path, tmp_path: Path, aggregate: bool, engine: str):
    out = tmp_path / ("out.parquet" if aggregate else "out")
    clean_out = tmp_path / ("clean.parquet" if aggregate else "clean")
    log, clean_log = tmp_path / "log.txt", tmp_path / "clean-log.txt"
    project = tmp_path / "project"
    project.mkdir()
    clean = write_config(project, dataset, clean_out, clean_log, aggregate)
    assert spawned.run([PIPELINE, "run", str(clean), "--quiet"]).returncode == 0

    config = write_config(project, dataset, out, log, aggregate, engine)
    kill_midway(config, log, after=4)
    assert not out.exists()  # nothing committed
    staging = [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{out.name}.staging-")]
    assert len(staging) == 1  # left behind, recognisable
    done_before = len(logged(log))

    result = spawned.run([PIPELINE, "run", str(config), "--resume"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    reused = int(result.stderr.split("resumed: ")[1].split()[0])
    assert 4 - 2 <= reused <= done_before and reused < 12  # the two in flight at the kill may be lost
    assert len(logged(log)) - done_before == 12 - reused  # the rest ran once more, the reused did not
    if aggregate:
        pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(clean_out))
    else:
        names = sorted(p.name for p in out.iterdir())
        assert names == sorted(p.name for p in clean_out.iterdir())
        for name in names[1:]:
            pd.testing.assert_frame_equal(pd.read_parquet(out / name), pd.read_parquet(clean_out / name))
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name or p.name.endswith(".lock")]


def test_a_changed_input_file_invalidates_only_its_chunks(dataset: Path, tmp_path: Path):
    data = Path(shutil.copytree(dataset, tmp_path / "data"))
    out, log = tmp_path / "out", tmp_path / "log.txt"
    project = tmp_path / "project"
    project.mkdir()
    config = write_config(project, data, out, log, aggregate=False)
    kill_midway(config, log, after=6)
    staging = next(tmp_path.glob(".out.staging-*"))
    finished = {int(p.name[6:11]) * 500 for p in staging.glob("chunk-*.done")}  # chunk i starts at id 500 i
    assert len(finished) >= 4
    changed = pd.read_parquet(data / "data-000.parquet")
    changed.to_parquet(data / "data-000.parquet", row_group_size=500, index=False)  # same rows, new file
    log.unlink()
    assert spawned.run([PIPELINE, "run", str(config), "--resume", "--quiet"]).returncode == 0
    rerun = {int(x) for x in logged(log)}
    assert {0, 500, 1000} <= rerun  # every chunk of the rewritten file ran again
    assert not (finished - {0, 500, 1000}) & rerun  # no other finished chunk did


def test_a_changed_stage_invalidates_every_chunk(dataset: Path, tmp_path: Path):
    out, log = tmp_path / "out", tmp_path / "log.txt"
    project = tmp_path / "project"
    project.mkdir()
    config = write_config(project, dataset, out, log, aggregate=False)
    kill_midway(config, log, after=4)
    config.write_text(config.read_text().replace('params = { log', 'params = { seconds = 0.0, log'))
    log.unlink()
    assert spawned.run([PIPELINE, "run", str(config), "--resume", "--quiet"]).returncode == 0
    assert len(logged(log)) == 12
