"""The joblib, Dask and Ray engines on real clusters (no mocks): same results as pandas and as the sync
engine, same errors, and a user's stage module that the workers cannot import travels with the tasks.

Every engine runs the same checks: one engine (and cluster) per group of tests, since pytest groups tests
by the module-scoped `dist_engine` parameter and tears each down before the next starts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import cloudpickle
import numpy as np
import pandas as pd
import psutil
import pytest
from pandas.testing import assert_frame_equal

from pipeline import ConfigError, FileSource, Pipeline, PipelineError, StageError
from pipeline.engines import ENGINES, Engine, get_engine
from stages.analyze import aggregate

import spawned
from clusters import clean_env, dask_scheduler, free_port, ray_auth, ray_head  # noqa: F401 - fixtures

USER_STAGES = '''
import os
import time

import pandas as pd


def add_total(df: pd.DataFrame, factor: int = 1) -> pd.DataFrame:
    return df.assign(total=df["a"] * factor + df["b"])


def fail_on(df: pd.DataFrame, value: int) -> pd.DataFrame:
    if (df["a"] == value).any():
        raise ValueError(f"found the bad value {value}")
    return df


def slow_on(df: pd.DataFrame, value: int, seconds: float, marker: str) -> pd.DataFrame:
    """Slow on the chunk holding `value`: `marker`.started (holding this pid) before, `marker`.finished after."""
    if (df["a"] == value).any():
        with open(marker + ".pid", "w") as fh:
            fh.write(str(os.getpid()))
        os.replace(marker + ".pid", marker + ".started")
        time.sleep(seconds)
        open(marker + ".finished", "w").close()
    return df
'''
ROWS_PER_FILE, ROW_GROUP = 60, 20  # 4 files x 3 row groups: 12 chunks, a two-level combine tree
AGGS = {"n": ["a", "size"], "total": ["total", "sum"], "mean_b": ["b", "mean"], "max_a": ["a", "max"]}


@pytest.fixture(scope="module")
def user_stages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """A stage module in a directory no worker has on its path, shipped by value as the CLI does."""
    path = tmp_path_factory.mktemp("user_code") / "engine_test_stages.py"
    path.write_text(textwrap.dedent(USER_STAGES))
    spec = importlib.util.spec_from_file_location("engine_test_stages", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    cloudpickle.register_pickle_by_value(module)
    yield module
    cloudpickle.unregister_pickle_by_value(module)
    del sys.modules[spec.name]


@pytest.fixture(scope="module")
def parquet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of small Parquet files with several row groups each."""
    folder = tmp_path_factory.mktemp("parquet_dir")
    rng = np.random.default_rng(7)
    for i in range(4):
        df = pd.DataFrame({
            "k": rng.choice(list("pqrs"), ROWS_PER_FILE),
            "a": np.arange(ROWS_PER_FILE) + i * ROWS_PER_FILE,
            "b": rng.normal(size=ROWS_PER_FILE).round(3),
        })
        df.to_parquet(folder / f"part-{i}.parquet", row_group_size=ROW_GROUP, index=False)
    return folder


def source(parquet_dir: Path) -> FileSource:
    return FileSource(str(parquet_dir), chunk_rows=ROW_GROUP)


def whole(parquet_dir: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(f) for f in sorted(parquet_dir.glob("*.parquet"))], ignore_index=True)


@pytest.fixture(scope="module", params=["joblib", "dask", "ray", "dask-cluster", "ray-cluster"])
def dist_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """One engine per kind, reused by every test of the group; clusters start once per session."""
    kind = request.param
    if kind.startswith("ray"):
        request.getfixturevalue("ray_auth")  # the head's token, and no token file written to $HOME
    if kind == "dask-cluster":
        built = get_engine("dask", workers=2, address=request.getfixturevalue("dask_scheduler"))
    elif kind == "ray-cluster":
        address = request.getfixturevalue("ray_head")
        import ray

        if ray.is_initialized():  # a driver joins one Ray at a time: end the local one another fixture left up
            ray.shutdown()
        built = get_engine("ray", workers=2, address=address)
    else:
        built = get_engine(kind, workers=2)
    with built:
        yield built


def test_registered() -> None:
    assert {"joblib", "dask", "ray"} <= set(ENGINES)


def test_aggregate_matches_pandas(dist_engine: Engine, user_stages: ModuleType, parquet_dir: Path, tmp_path: Path):
    done = []
    pipeline = Pipeline().then(user_stages.add_total, factor=3).then(aggregate, by=["k"], aggs=AGGS)
    manifest = pipeline.run(
        source(parquet_dir), str(tmp_path / "agg.parquet"), engine=dist_engine, workers=2, mode="overwrite",
        on_progress=lambda plan: done.append,
    )
    df = whole(parquet_dir).assign(total=lambda d: d.a * 3 + d.b)
    expected = (
        df.groupby("k", as_index=False)
        .agg(n=("a", "size"), total=("total", "sum"), mean_b=("b", "mean"), max_a=("a", "max"))
        .sort_values("k", ignore_index=True)
    )
    result = pd.read_parquet(tmp_path / "agg.parquet")
    assert_frame_equal(result, expected, check_dtype=False, check_exact=False)
    assert manifest.rows == len(expected)
    labels = [task.label for task in done]
    assert labels.count("commit") == 1 and sum(label.endswith(":combine") for label in labels) == 3
    assert len(done) == 12 + 3 + 2  # chunks, combines, finalize and commit: each reported once


def test_per_chunk_parts_match_sync(dist_engine: Engine, user_stages: ModuleType, parquet_dir: Path, tmp_path: Path):
    pipeline = Pipeline().then(user_stages.add_total, factor=2).then(lambda d: d[d.b > 0], name="positive")
    outputs = {}
    for name, runner in (("sync", "sync"), ("engine", dist_engine)):
        out = tmp_path / name
        manifest = pipeline.run(source(parquet_dir), str(out), engine=runner, workers=2, mode="overwrite")
        outputs[name] = (manifest, out)
    (sync_manifest, sync_out), (manifest, out) = outputs["sync"], outputs["engine"]
    assert manifest.rows == sync_manifest.rows and manifest.files == sync_manifest.files
    parts = sorted(p.name for p in out.glob("part-*.parquet"))
    assert parts == sorted(p.name for p in sync_out.glob("part-*.parquet")) and len(parts) == 12
    for part in parts:
        assert_frame_equal(pd.read_parquet(out / part), pd.read_parquet(sync_out / part))
    expected = whole(parquet_dir).assign(total=lambda d: d.a * 2 + d.b).query("b > 0").reset_index(drop=True)
    assert_frame_equal(pd.read_parquet(out).reset_index(drop=True), expected)


def test_run_frame(dist_engine: Engine, user_stages: ModuleType, parquet_dir: Path) -> None:
    df = whole(parquet_dir)
    result = Pipeline().then(user_stages.add_total).run_frame(df, chunks=4, engine=dist_engine)
    assert_frame_equal(result, df.assign(total=df.a + df.b))


def test_stage_error_is_the_same_everywhere(
    dist_engine: Engine, user_stages: ModuleType, parquet_dir: Path, tmp_path: Path
) -> None:
    pipeline = Pipeline().then(user_stages.fail_on, value=130)  # one row of one chunk
    with pytest.raises(StageError) as expected:
        pipeline.run(source(parquet_dir), str(tmp_path / "sync"), engine="sync")
    with pytest.raises(StageError) as raised:
        pipeline.run(source(parquet_dir), str(tmp_path / "out"), engine=dist_engine, workers=2)
    assert type(raised.value) is StageError
    assert str(raised.value) == str(expected.value)
    assert "stage 'fail_on' failed on chunk 6" in str(raised.value) and "found the bad value 130" in str(raised.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.staging-*"))


def test_failure_returns_only_when_nothing_still_writes(
    dist_engine: Engine, user_stages: ModuleType, parquet_dir: Path, tmp_path: Path
) -> None:
    """Chunk 0 fails at once while chunk 1 is still running: the run must not return (and the staging
    folder be removed) while that task could still write its part. So when it returns, chunk 1's stage has
    not started, has finished, or its worker is being killed (and so must never finish)."""
    marker = tmp_path / "slow"
    started, finished = Path(f"{marker}.started"), Path(f"{marker}.finished")
    pipeline = (Pipeline().then(user_stages.fail_on, value=5)
                .then(user_stages.slow_on, value=25, seconds=1.0, marker=str(marker)))
    with pytest.raises(StageError, match="failed on chunk 0"):
        pipeline.run(source(parquet_dir), str(tmp_path / "out"), engine=dist_engine, workers=2)
    if started.exists() and not finished.exists():
        with contextlib.suppress(psutil.NoSuchProcess):  # gone already: killed, as it should be
            worker = psutil.Process(int(started.read_text()))
            spawned.wait_for(lambda: finished.exists() or not spawned.alive(worker), 60, "end of chunk 1's worker")
        assert not finished.exists(), "the run returned while chunk 1 was still running"
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.staging-*"))


@pytest.mark.parametrize("dist_engine", ["dask-cluster", "ray-cluster"], indirect=True)
def test_cluster_workers_cannot_import_the_user_module(dist_engine: Engine, user_stages: ModuleType) -> None:
    """What makes the by-value checks above meaningful: the cluster's workers only have what is installed."""
    name = user_stages.__name__
    if dist_engine.name == "dask":
        found = dist_engine._connect().run(importlib.util.find_spec, name)
        assert len(found) == 2 and set(found.values()) == {None}
    else:
        import ray

        dist_engine._connect()
        assert ray.get(ray.remote(importlib.util.find_spec).remote(name)) is None


def test_unreachable_dask_scheduler() -> None:
    with get_engine("dask", address=f"tcp://127.0.0.1:{free_port()}", connect_timeout=2) as engine:
        with pytest.raises(PipelineError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:"):
            Pipeline().then(lambda d: d, name="same").run_frame(pd.DataFrame({"a": [1]}), engine=engine)


def test_unreachable_ray_cluster() -> None:
    with get_engine("ray", address=f"127.0.0.1:{free_port()}", connect_timeout=2) as engine:
        with pytest.raises(PipelineError, match="cannot reach the Ray cluster at 127.0.0.1:"):
            Pipeline().then(lambda d: d, name="same").run_frame(pd.DataFrame({"a": [1]}), engine=engine)


def test_dask_with_existing_client(dask_scheduler: str, user_stages: ModuleType) -> None:
    import distributed

    from pipeline.engines.dask import DaskEngine

    df = pd.DataFrame({"a": range(10), "b": range(10)})
    with distributed.Client(dask_scheduler, set_as_default=False) as client:
        with DaskEngine(client=client) as engine:
            result = Pipeline().then(user_stages.add_total).run_frame(df, chunks=3, engine=engine)
        assert_frame_equal(result, df.assign(total=df.a + df.b))
        assert client.status == "running"
        assert client.submit(sum, [1, 2]).result() == 3
        # the run released everything it submitted (releases reach the client asynchronously)
        spawned.wait_for(lambda: not client.futures, 10, "release of every future the run submitted")


@pytest.mark.parametrize("backend", ["threading", "sequential"])
def test_joblib_backend_option(backend: str, user_stages: ModuleType, parquet_dir: Path) -> None:
    df = whole(parquet_dir)
    pipeline = Pipeline().then(user_stages.add_total).then(aggregate, by=["k"], aggs={"total": ["total", "sum"]})
    with get_engine("joblib", workers=2, backend=backend) as engine:
        result = pipeline.run_frame(df, chunks=10, engine=engine)
    expected = df.assign(total=df.a + df.b).groupby("k", as_index=False).agg(total=("total", "sum"))
    assert_frame_equal(result, expected, check_exact=False)
    with pytest.raises(ConfigError, match="unknown joblib backend 'nope'"):
        get_engine("joblib", backend="nope")


def test_plaintext_remote_dask_address_warns() -> None:
    from pipeline.engines.dask import _warn_if_plaintext

    with pytest.warns(UserWarning, match="anyone who can reach the scheduler can run code") as warned:
        _warn_if_plaintext("tcp://10.1.2.3:8786")
    assert "tls://" in str(warned[0].message) and "[engine.security]" in str(warned[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for quiet in ("tcp://127.0.0.1:8786", "localhost:8786", "tls://10.1.2.3:8786", "tcp://[::1]:8786"):
            _warn_if_plaintext(quiet)


def test_dask_security_options(tmp_path: Path) -> None:
    from pipeline.engines.dask import DaskEngine

    files = {key: tmp_path / f"{key}.pem" for key in ("ca_file", "cert_file", "key_file")}
    for path in files.values():
        path.write_text("not checked until connecting")
    engine = DaskEngine(address="tls://127.0.0.1:8786", security={k: str(v) for k, v in files.items()})
    assert engine.security.tls_ca_file == str(files["ca_file"]) and engine.security.require_encryption
    assert engine.security.tls_client_cert == str(files["cert_file"])
    with pytest.raises(ConfigError, match="engine.security.key_file: no such file"):
        DaskEngine(address="tls://127.0.0.1:8786", security={**files, "key_file": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="unknown option"):
        DaskEngine(backend="loky")


CLI_STAGES = """
import pandas as pd


def add_total(df: pd.DataFrame, factor: int = 1) -> pd.DataFrame:
    return df.assign(total=df["a"] * factor + df["b"])
"""
CLI_CONFIG = """
[source]
path = "{parquet_dir}"
chunk_rows = 20

[[stages]]
name = "add_total"
uses = "cli_job_stages:add_total"
params = {{ factor = 3 }}

[[stages]]
name = "by_k"
uses = "stages.analyze:aggregate"
params = {{ by = ["k"], aggs = {{ n = ["a", "size"], total = ["total", "sum"] }} }}

[sink]
path = "out/result.parquet"
mode = "overwrite"
"""


@pytest.mark.parametrize("kind", ["dask", "ray"])
def test_cli_submits_to_the_cluster(kind: str, parquet_dir: Path, tmp_path: Path, request: pytest.FixtureRequest):
    """`pipeline run --engine X --address A` from another directory, with the stage module next to the config."""
    if kind == "dask":
        address, env = request.getfixturevalue("dask_scheduler"), clean_env()
    else:
        address = request.getfixturevalue("ray_head")
        env = clean_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=request.getfixturevalue("ray_auth"))
    project = tmp_path / "project"
    project.mkdir()
    (project / "cli_job_stages.py").write_text(CLI_STAGES)
    (project / "job.toml").write_text(CLI_CONFIG.format(parquet_dir=parquet_dir))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    command = [str(Path(sys.executable).parent / "pipeline"), "run", str(project / "job.toml"),
               "--engine", kind, "--address", address, "--workers", "2", "--quiet"]
    result = spawned.run(command, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    df = whole(parquet_dir).assign(total=lambda d: d.a * 3 + d.b)
    expected = df.groupby("k", as_index=False).agg(n=("a", "size"), total=("total", "sum"))
    got = pd.read_parquet(project / "out" / "result.parquet")
    assert_frame_equal(got, expected, check_dtype=False, check_exact=False)
