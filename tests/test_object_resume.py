"""`--resume` with the output on object storage, for real: `pipeline run` is killed (its whole process group,
SIGKILL) against the S3-compatible test server, then resumed. Finished chunks are reused from their
checkpoints beside the output, the committed output equals a clean run's, and nothing of the interrupted run
is left in the bucket; a run without `--resume` removes what the interrupted one left instead."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

import spawned
from s3server import S3Server, aws_env, manifest, objects, s3_server  # noqa: F401 - fixtures
from test_dataflow_faults import write_graph_config
from test_resume import PIPELINE, kill_midway, logged, write_config


@pytest.fixture(autouse=True)
def endpoint(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:  # noqa: F811
    """The server as the environment names it, for `pipeline run` and the workers it starts."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    return s3_server.endpoint


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


def read_back(server: S3Server, key: str) -> pd.DataFrame:
    """A committed output (a prefix by its manifest, or one object), sorted by id when it has one."""
    fs = server.filesystem
    files = [f"{key}/{f['file']}" for f in manifest(server, key)["files"]] if not key.endswith(".parquet") else [key]
    table = pd.concat([pd.read_parquet(fs.open_input_file(f)) for f in files], ignore_index=True)
    by = "id" if "id" in table else list(table.columns[:1])
    return table.sort_values(by).reset_index(drop=True)


def left_by_runs(server: S3Server, bucket: str) -> list[str]:
    """Whatever runs leave beside an output while it is written: checkpoints, scratch, the lock."""
    return [name for name in objects(server, bucket) if re.match(r"\.out(\.parquet)?\.(checkpoints|scratch|lock)", name)]


def resumed(config: Path) -> int:
    result = spawned.run([PIPELINE, "run", str(config), "--resume"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    said = re.search(r"resumed: (\d+) task", result.stderr)
    return int(said[1]) if said else 0  # said only when something was reused


@pytest.mark.parametrize("aggregate", [False, True], ids=["per-chunk", "aggregate"])
def test_kill_then_resume_on_s3_gives_the_clean_output(s3_server, dataset: Path, tmp_path: Path, project: Path,
                                                       aggregate: bool):
    bucket = s3_server.bucket("resume")
    name = "out.parquet" if aggregate else "out"
    clean = write_config(project, dataset, tmp_path / f"clean-{name}", tmp_path / "clean-log.txt", aggregate)
    assert spawned.run([PIPELINE, "run", str(clean), "--quiet"]).returncode == 0

    log = tmp_path / "log.txt"
    config = write_config(project, dataset, f"s3://{bucket}/{name}", log, aggregate)
    kill_midway(config, log, after=4)
    assert not any(n.endswith("_SUCCESS") for n in objects(s3_server, bucket))  # nothing committed
    checkpoints = [n for n in objects(s3_server, bucket) if n.startswith(f".{name}.checkpoints-")]
    assert any(n.endswith("/started") for n in checkpoints)  # the run is recognisable as unfinished
    saved = [n for n in checkpoints if n.endswith(".value")]
    assert saved  # some chunks finished and were checkpointed before the kill
    done_before = len(logged(log))

    reused = resumed(config)
    assert len(saved) <= reused <= done_before and reused < 12
    assert len(logged(log)) - done_before == 12 - reused  # the rest ran once more, the reused did not
    if aggregate:
        got, want = read_back(s3_server, f"{bucket}/{name}"), pd.read_parquet(tmp_path / f"clean-{name}")
        pd.testing.assert_frame_equal(got, want.sort_values(list(want.columns[:1])).reset_index(drop=True))
    else:
        listed = manifest(s3_server, f"{bucket}/{name}")["files"]
        assert sorted(int(f["file"].split("-")[1]) for f in listed) == list(range(12))  # one part per chunk
        assert objects(s3_server, f"{bucket}/{name}") == sorted(["_SUCCESS", *(f["file"] for f in listed)])
        want = pd.read_parquet(tmp_path / f"clean-{name}").sort_values("id").reset_index(drop=True)
        pd.testing.assert_frame_equal(read_back(s3_server, f"{bucket}/{name}"), want)
    assert left_by_runs(s3_server, bucket) == []


def test_kill_mid_shuffle_then_resume_reuses_the_maps_in_scratch_on_s3(s3_server, dataset: Path, tmp_path: Path,
                                                                       project: Path):
    bucket = s3_server.bucket("resume-graph")
    log = tmp_path / "log.txt"
    config = write_graph_config(project, dataset, f"s3://{bucket}/out", log)
    kill_midway(config, log, after=4)
    maps = [n for n in objects(s3_server, bucket) if re.match(r"\.out\.scratch-[^/]+/.+/map-\d+\.[0-9a-f]+\.value$", n)]
    assert maps  # map outputs survived the kill, with their checkpoints, in the bucket
    done_before = len(logged(log))

    reused = resumed(config)
    assert reused >= len(maps)
    assert len(logged(log)) - done_before == 12 - reused  # only the maps not finished ran again
    got = read_back(s3_server, f"{bucket}/out")
    pd.testing.assert_frame_equal(got, pd.read_parquet(dataset).sort_values("id").reset_index(drop=True),
                                  check_dtype=False, check_categorical=False)
    assert left_by_runs(s3_server, bucket) == []


def interrupted(server: S3Server, dataset: Path, project: Path, log: Path) -> tuple[str, Path]:
    """(bucket, config) of a per-chunk run to `s3://<bucket>/out` killed after 4 chunks, its log removed."""
    bucket = server.bucket("interrupted")
    config = write_config(project, dataset, f"s3://{bucket}/out", log, aggregate=False)
    kill_midway(config, log, after=4)
    left = objects(server, bucket)
    assert any(n.startswith("out/part-") for n in left) and any(n.endswith(".value") for n in left)
    log.unlink()
    return bucket, config


def test_a_run_without_resume_removes_what_the_interrupted_run_left(s3_server, dataset: Path, tmp_path: Path,
                                                                    project: Path):
    log = tmp_path / "log.txt"
    bucket, config = interrupted(s3_server, dataset, project, log)

    result = spawned.run([PIPELINE, "run", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "removing what an unfinished run" in result.stderr
    assert len(logged(log)) == 12  # nothing reused
    listed = manifest(s3_server, f"{bucket}/out")
    assert objects(s3_server, f"{bucket}/out") == sorted(["_SUCCESS", *(f["file"] for f in listed["files"])])
    assert left_by_runs(s3_server, bucket) == []


def test_a_changed_stage_invalidates_every_checkpoint_on_s3(s3_server, dataset: Path, tmp_path: Path,
                                                            project: Path):
    log = tmp_path / "log.txt"
    bucket, config = interrupted(s3_server, dataset, project, log)
    config.write_text(config.read_text().replace('params = { log', 'params = { seconds = 0.0, log'))
    assert resumed(config) == 0
    assert len(logged(log)) == 12
    assert manifest(s3_server, f"{bucket}/out")["rows"] == len(pd.read_parquet(dataset))
    assert left_by_runs(s3_server, bucket) == []
