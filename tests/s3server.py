"""A real S3-compatible server for tests: moto's, in a thread of the test process, bound to 127.0.0.1 only.

Requests go over HTTP to it as they would to any S3 endpoint, so listing, ranged reads and errors are
exercised for real. Buckets live as long as the test session; each test uses its own bucket.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pytest

KEY, SECRET, REGION = "testing", "testing", "us-east-1"  # moto accepts any credentials by default
_names = itertools.count()


class S3Server:
    """The server, its endpoint, and helpers to make buckets and upload files."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint = ""

    def start(self) -> "S3Server":
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    @property
    def options(self) -> dict[str, str]:
        """storage_options that reach this server."""
        return {"endpoint_url": self.endpoint, "key": KEY, "secret": SECRET, "region": REGION}

    @property
    def filesystem(self) -> pafs.S3FileSystem:
        """A filesystem on the server that may create buckets (the tests' own, not the reader's)."""
        return pafs.S3FileSystem(access_key=KEY, secret_key=SECRET, region=REGION, scheme="http",
                                 endpoint_override=self.endpoint.removeprefix("http://"), allow_bucket_creation=True)

    def bucket(self, prefix: str = "bucket") -> str:
        """A new, empty bucket's name."""
        name = f"{prefix}-{next(_names)}"
        self.filesystem.create_dir(name)
        return name

    def upload(self, local: Path, destination: str) -> None:
        """A file, or a folder's files recursively, to `bucket/key` (no scheme)."""
        fs = self.filesystem
        files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
        for path in files:
            target = destination if local.is_file() else f"{destination}/{path.relative_to(local).as_posix()}"
            with fs.open_output_stream(target) as out:
                out.write(path.read_bytes())

    def put(self, destination: str, data: bytes) -> None:
        with self.filesystem.open_output_stream(destination) as out:
            out.write(data)


def objects(server: S3Server, prefix: str) -> list[str]:
    """Every object under `bucket/prefix`, relative to it."""
    infos = server.filesystem.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
    return sorted(i.path[len(prefix) + 1:] for i in infos if i.type == pafs.FileType.File)


def manifest(server: S3Server, prefix: str) -> dict:
    """The `_SUCCESS` manifest of the output at `bucket/prefix`."""
    return json.loads(server.filesystem.open_input_stream(f"{prefix}/_SUCCESS").readall())


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module", autouse=True)
def aws_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Dummy credentials and a region, and nothing else from this machine: no endpoint, profile or AWS
    config files, no instance metadata lookups. Autouse in every module that imports it."""
    nowhere = str(tmp_path_factory.mktemp("aws") / "none")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN",
                     "AWS_DEFAULT_REGION"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", KEY)
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        mp.setenv("AWS_REGION", REGION)
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_CONFIG_FILE", nowhere)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", nowhere)
        yield


@pytest.fixture(scope="module", params=["sync", "processes"])
def engine(request: pytest.FixtureRequest, aws_env: None) -> Iterator:
    """Workers started after the test environment is set, so they see it too."""
    if request.param == "sync":
        yield "sync"
    else:
        from pipeline.engines import get_engine

        with get_engine("processes", workers=2) as built:
            yield built
