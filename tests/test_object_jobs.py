"""The example jobs, as a user runs them (`pipeline run configs/flights.toml`, `configs/taxi.toml`), reading
their input from and committing their output to a real S3 server on 127.0.0.1: on `processes`, and on an
external Dask cluster and an external Ray head (reached by Ray Client) whose workers run in their own mount
namespace and cannot see the driver's files. The
endpoint comes from `AWS_ENDPOINT_URL`, as the AWS CLI takes it. Same answer as the whole-table one."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from clusters import ray_auth  # noqa: F401 - fixture
from s3server import S3Server, aws_env, s3_server  # noqa: F401 - fixtures
from test_cli import cli, flights_project, taxi_project, taxi_reference, whole_table_answer  # noqa: F401

ENGINES = ["processes", "dask", "ray"]


@contextlib.contextmanager
def engine_args(engine: str, root: Path, hide: list[Path], token: str) -> Iterator[list[str]]:
    """The CLI arguments for `engine`; for dask, a cluster started here with isolated workers."""
    if engine == "processes":
        yield ["--engine", "processes", "--workers", "2"]
        return
    from clusters import can_isolate, dask_cluster, ray_head_cluster

    if shutil.which("unshare") is None or not can_isolate():
        pytest.skip("private mount namespaces are not allowed here")
    if engine == "dask":
        with dask_cluster(root, workers=2, hide=hide) as address:
            yield ["--engine", "dask", "--address", address]
        return
    with ray_head_cluster(root, token, hide=hide) as head:  # its raylet's sockets are in its private /tmp:
        yield ["--engine", "ray", "--address", head.client_address]  # the driver comes in by Ray Client


@pytest.fixture
def endpoint(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:  # noqa: F811
    """The server as the environment names it, for the driver and every worker started after."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    return s3_server.endpoint


def run_on_s3(project: Path, job: str, engine: str, server: S3Server, tmp_path: Path, token: str) -> pd.DataFrame:
    """Upload the job's input, run its config with input and output on the bucket, read the output back."""
    bucket = server.bucket(job)
    server.upload(project / "data" / job, f"{bucket}/{job}")
    out = f"{bucket}/out/{job}.parquet"
    with engine_args(engine, tmp_path / "cluster", [project, tmp_path], token) as args:
        result = cli("run", str(project / "configs" / f"{job}.toml"), *args, "--quiet",
                     "--set", f'source.path="s3://{bucket}/{job}/"', "--set", f'sink.path="s3://{out}"', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return pq.read_table(out, filesystem=server.filesystem).to_pandas()


@pytest.mark.parametrize("engine", ENGINES)
def test_flights_job_on_s3(flights_project: Path, s3_server: S3Server, endpoint: str, tmp_path: Path,  # noqa: F811
                           engine: str, ray_auth: str):  # noqa: F811
    got = run_on_s3(flights_project, "flights", engine, s3_server, tmp_path, ray_auth)
    expected = whole_table_answer(flights_project / "configs" / "flights.toml")
    assert len(got) == 185
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-9)


@pytest.mark.parametrize("engine", ENGINES)
def test_taxi_job_on_s3(taxi_project: Path, taxi_reference: pd.DataFrame, s3_server: S3Server,  # noqa: F811
                        endpoint: str, tmp_path: Path, engine: str, ray_auth: str):  # noqa: F811
    got = run_on_s3(taxi_project, "taxi", engine, s3_server, tmp_path, ray_auth)
    assert len(taxi_reference) > 100
    pd.testing.assert_frame_equal(got, taxi_reference, check_exact=False, rtol=1e-12)
