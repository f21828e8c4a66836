"""Reading the taxi data from a local S3-compatible server against reading it from local disk.

A `moto_server` process on 127.0.0.1 serves a bucket holding a copy of the taxi files; the same pipeline
(read every column, one aggregate) runs over the local folder and over `s3://` on `processes`, interleaved,
`repeats` times each. Prints the best seconds and MB/s of each and their ratio. The server is written in
Python and shares the 2 cores with the workers, so this measures our S3 path under that load, not S3.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs

from pipeline import read
from pipeline.engines import get_engine

HOST = "127.0.0.1"
CREDENTIALS = {"key": "bench", "secret": "bench", "region": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _server(port: int) -> subprocess.Popen:
    command = [str(Path(sys.executable).parent / "moto_server"), "-H", HOST, "-p", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex((HOST, port)) == 0:
                return process
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("moto_server did not start")


def _upload(folder: Path, endpoint: str) -> int:
    fs = pafs.S3FileSystem(access_key=CREDENTIALS["key"], secret_key=CREDENTIALS["secret"], scheme="http",
                           region=CREDENTIALS["region"], endpoint_override=endpoint, allow_bucket_creation=True)
    fs.create_dir("taxi")
    size = 0
    for path in sorted(folder.glob("*.parquet")):
        data = path.read_bytes()
        size += len(data)
        with fs.open_output_stream(f"taxi/{path.name}") as out:
            out.write(data)
    return size


def _job(path: str, engine: object, options: dict | None) -> float:
    started = time.perf_counter()
    read(path, storage_options=options).aggregate(by="payment_type", aggs={"n": ["fare_amount", "count"]}) \
        .collect(engine=engine)
    return time.perf_counter() - started


def main(folder: str, workers: int, repeats: int = 3) -> dict[str, float]:
    port = _free_port()
    server = _server(port)
    try:
        endpoint = f"{HOST}:{port}"
        size = _upload(Path(folder), endpoint)
        options = {**CREDENTIALS, "endpoint_url": f"http://{endpoint}"}
        local, remote = [], []
        with get_engine("processes", workers=workers) as engine:
            for _ in range(repeats):
                local.append(_job(os.path.join(folder, "*.parquet"), engine, None))
                remote.append(_job("s3://taxi/*.parquet", engine, options))
    finally:
        server.terminate()
        server.wait(timeout=30)
    mb = size / 1e6
    result = {"mb": mb, "local_s": min(local), "s3_s": min(remote)}
    print(f"taxi data {mb:.0f} MB: local disk {result['local_s']:.2f} s ({mb / result['local_s']:.0f} MB/s), "
          f"local S3 server {result['s3_s']:.2f} s ({mb / result['s3_s']:.0f} MB/s), "
          f"S3 / disk {result['s3_s'] / result['local_s']:.2f}x (best of {repeats}, {workers} workers)")
    return result
