"""Faults on object storage, for real, against the S3-compatible test server on 127.0.0.1: a worker killed
while its part is being written, a driver killed before the manifest, and a server that refuses or drops
requests (through a small proxy in the test process). Whatever happens, the committed output is a clean
run's, or nothing is committed and the run fails with one clear error."""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import cloudpickle
import pandas as pd
import pytest

import spawned
from pipeline import Pipeline, read
from pipeline.engines import Engine, get_engine
from pipeline.errors import ConfigError, PipelineError
from pipeline.io import FileSource, sink_for
from clusters import dask_scheduler, ray_auth, ray_head  # noqa: F401 - fixtures
from s3server import S3Server, aws_env, manifest, objects, s3_server  # noqa: F401 - fixtures

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import the tests
FIXTURES = (aws_env, s3_server, dask_scheduler, ray_auth, ray_head)  # used by name, as pytest does

CHUNK_ROWS = 500  # 12 chunks of the 6,000-row dataset


# ---- a proxy that fails requests on purpose ---------------------------------------------------------------


@dataclass
class Rule:
    """Fail the first `times` requests for each object (of at most `total` requests in all) whose method is
    `method` and whose path matches `path`, by `action`:
    `503` (SlowDown) or `500` (InternalError) without forwarding; `lost`: forwarded, then the connection closed
    before any answer (the request took effect, its response is lost); `cut`: forwarded, the answer's headers
    and half its body sent, then the connection closed; any other (`watched`): forwarded and answered as is.
    `then` runs after a forwarded request took effect, before its answer is sent."""

    method: str
    path: str
    action: str
    times: int = 1
    total: int | None = None
    then: Callable[[], None] | None = None
    hits: dict[str, int] = field(default_factory=dict)


@dataclass
class Proxy:
    """Forwards every request to `upstream`, failing those the rules pick; bound to 127.0.0.1 only."""

    upstream: str
    rules: list[Rule] = field(default_factory=list)
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, what was done)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="s3-fault-proxy")
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def options(self, server: S3Server) -> dict[str, str]:
        return {**server.options, "endpoint_url": self.endpoint}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def pick(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                key = path.split("?")[0]
                if (rule.method == method and re.search(rule.path, path) and rule.hits.get(key, 0) < rule.times
                        and (rule.total is None or sum(rule.hits.values()) < rule.total)):
                    rule.hits[key] = rule.hits.get(key, 0) + 1
                    return rule
        return None

    def failed(self, action: str) -> list[str]:
        return [path for _, path, done in self.seen if done == action]


_ERRORS = {"503": (503, "SlowDown", "Please reduce your request rate."),
           "500": (500, "InternalError", "We encountered an internal error. Please try again.")}


def _handler(proxy: Proxy) -> type[BaseHTTPRequestHandler]:
    upstream = urlsplit(proxy.upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no delayed-ACK wait per answer

        def log_message(self, *args: object) -> None:
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":  # forwarded as it came
                raw = b""
                while True:
                    line = self.rfile.readline()
                    raw += line
                    size = int(line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while True:  # trailers, up to the blank line
                            trailer = self.rfile.readline()
                            raw += trailer
                            if trailer in (b"\r\n", b"\n", b""):
                                return raw
                    raw += self.rfile.read(size + 2)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _serve(self) -> None:
            body = self._body()
            rule = proxy.pick(self.command, self.path)
            action = rule.action if rule else "forwarded"
            proxy.seen.append((self.command, self.path, action))
            if action in _ERRORS:
                status, code, message = _ERRORS[action]
                error = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                         f"<Message>{message}</Message></Error>").encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(error)))
                self.end_headers()
                self.wfile.write(error)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("expect", "connection")}
            connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
            finally:
                connection.close()
            if rule is not None and rule.then is not None:
                rule.then()
            if action == "lost":
                self.close_connection = True
                return
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                    self.send_header(name, value)
            length = answer.getheader("Content-Length") if self.command == "HEAD" else None
            if action == "cut":  # an answer promised whole (at least one byte, so an empty one is cut too)
                length = str(max(len(data), 1))
            self.send_header("Content-Length", length or str(len(data)))  # a HEAD tells the object's size
            self.end_headers()
            if action == "cut":
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve

    return Handler


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[Proxy]:  # noqa: F811
    found = Proxy(s3_server.endpoint)
    try:
        yield found
    finally:
        found.close()


# ---- helpers -----------------------------------------------------------------------------------------------


@pytest.fixture
def bucket(s3_server: S3Server) -> str:  # noqa: F811
    return s3_server.bucket("faults")


def keep(df: pd.DataFrame) -> pd.DataFrame:
    return df


def rows(url: str, options: dict[str, str]) -> pd.DataFrame:
    return read(url, storage_options=options).collect("sync").sort_values("id").reset_index(drop=True)


def clean(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values("id").reset_index(drop=True)


def assert_committed_clean(server: S3Server, prefix: str, table: pd.DataFrame, chunks: int = 12) -> dict:
    """The output under `prefix` is a clean run's: the manifest lists one part per chunk, nothing unlisted
    lies beside them, and the rows read back are the input's."""
    listed = manifest(server, prefix)
    names = [f["file"] for f in listed["files"]]
    assert sorted(int(n.split("-")[1]) for n in names) == list(range(chunks))  # exactly one part per chunk
    assert objects(server, prefix) == sorted(["_SUCCESS", *names])
    assert listed["rows"] == len(table)
    url = f"s3://{prefix}"
    got = rows(url, server.options)
    pd.testing.assert_frame_equal(got, clean(table), check_dtype=False, check_categorical=False)
    return listed


# ---- 3. a server that refuses or drops requests --------------------------------------------------------------


def test_a_manifest_put_whose_response_is_lost_is_recognised_as_ours(s3_server, proxy, bucket, dataset, table):
    """The conditional create of `_SUCCESS` took effect, its answer was lost; the client's retry gets 412 from
    the object it wrote itself. The commit must succeed, not report a conflict."""
    prefix = f"{bucket}/out"
    proxy.rules.append(Rule("PUT", rf"^/{prefix}/_SUCCESS", "lost"))
    sink = sink_for(f"s3://{prefix}", storage_options=proxy.options(s3_server))
    done = Pipeline().then(keep).run(FileSource(str(dataset), chunk_rows=CHUNK_ROWS), sink, engine="sync")
    assert proxy.failed("lost") == [f"/{prefix}/_SUCCESS"]  # the fault really happened
    assert manifest(s3_server, prefix)["run_id"] == done.run_id
    assert_committed_clean(s3_server, prefix, table)


def test_a_replacing_manifest_put_whose_response_is_lost_is_recognised_as_ours(s3_server, proxy, bucket, dataset,
                                                                               table):
    """The same with `If-Match` (mode overwrite over a committed output): the retry's 412 is our own write."""
    prefix = f"{bucket}/out"
    source = FileSource(str(dataset), chunk_rows=CHUNK_ROWS)
    Pipeline().then(keep).run(source, sink_for(f"s3://{prefix}", storage_options=s3_server.options), engine="sync")
    proxy.rules.append(Rule("PUT", rf"^/{prefix}/_SUCCESS", "lost"))
    done = Pipeline().then(keep).run(source, sink_for(f"s3://{prefix}", "overwrite",
                                                      storage_options=proxy.options(s3_server)), engine="sync")
    assert proxy.failed("lost") == [f"/{prefix}/_SUCCESS"]
    assert manifest(s3_server, prefix)["run_id"] == done.run_id
    assert_committed_clean(s3_server, prefix, table)


def test_a_single_file_put_whose_response_is_lost_is_recognised_as_ours(s3_server, proxy, bucket, dataset, table):
    """A reduction's one object is PUT conditionally at commit, then its marker: both answers lost."""
    from stages.analyze import aggregate

    url = f"s3://{bucket}/agg.parquet"
    proxy.rules += [Rule("PUT", rf"^/{bucket}/agg\.parquet(\?|$)", "lost"),
                    Rule("PUT", rf"^/{bucket}/agg\.parquet\._SUCCESS", "lost")]
    pipeline = Pipeline().then(aggregate, by=["carrier"], aggs={"n": ["id", "count"]})
    sink = sink_for(url, storage_options=proxy.options(s3_server))
    done = pipeline.run(FileSource(str(dataset), chunk_rows=2000), sink, engine="sync")
    assert len(proxy.failed("lost")) == 2
    assert objects(s3_server, bucket) == ["agg.parquet", "agg.parquet._SUCCESS"]
    marker = json.loads(s3_server.filesystem.open_input_stream(f"{bucket}/agg.parquet._SUCCESS").readall())
    assert marker["run_id"] == done.run_id
    got = read(url, storage_options=s3_server.options).collect("sync")
    assert dict(zip(got["carrier"], got["n"])) == table.groupby("carrier").size().to_dict()


@pytest.mark.parametrize("action", ["503", "500", "lost", "cut"])
def test_failed_part_puts_gets_and_manifest_are_retried_and_the_output_is_clean(s3_server, proxy, bucket, dataset,
                                                                                table, action):
    """Every third part PUT, the manifest PUT, and reads of parts fail once each: retried, and exact."""
    prefix = f"{bucket}/out"
    part = rf"^/{prefix}/part-000(0[258]|11)-"
    proxy.rules += [Rule("PUT", part, action), Rule("PUT", rf"^/{prefix}/_SUCCESS", action)]
    options = proxy.options(s3_server)
    Pipeline().then(keep).run(FileSource(str(dataset), chunk_rows=CHUNK_ROWS),
                              sink_for(f"s3://{prefix}", storage_options=options), engine="sync")
    assert len(proxy.failed(action)) == 5
    assert_committed_clean(s3_server, prefix, table)

    proxy.rules.append(Rule("GET", part, action))
    got = rows(f"s3://{prefix}", options)  # the reader, through the failing proxy
    assert len(proxy.failed(action)) > 5
    pd.testing.assert_frame_equal(got, clean(table), check_dtype=False, check_categorical=False)


def partitions(table: pd.DataFrame, by: str) -> list[tuple[int, str, int]]:
    """(chunk, hive folder, rows) of each file a clean run partitioned by `by` writes: one per value a chunk
    holds."""
    counts = Counter(zip(table["id"] // CHUNK_ROWS, table[by]))
    return sorted((int(chunk), f"{by}={value}", n) for (chunk, value), n in counts.items())


@pytest.mark.parametrize("action", ["503", "lost", "cut"])
def test_partitioned_parts_that_fail_once_and_a_lost_manifest_answer_leave_a_clean_runs_output(
        s3_server, proxy, bucket, dataset, table, action):
    """Uploads of parts in two partition folders fail once each, so do the completions of parts in a third
    (the request that makes the object exist), and the manifest's answer is lost: every file is there once,
    nothing else is, and the rows read back are the input's."""
    prefix, url = f"{bucket}/hive", f"s3://{bucket}/hive"
    proxy.rules += [Rule("PUT", rf"^/{prefix}/carrier%3D(DL|UA)/part-000(0[27]|10)-[^?]*\?partNumber=", action),
                    Rule("POST", rf"^/{prefix}/carrier%3DWN/part-0000[15]-[^?]*\?uploadId=", action),
                    Rule("PUT", rf"^/{prefix}/_SUCCESS", "lost")]
    sink = sink_for(url, partition_by=["carrier"], storage_options=proxy.options(s3_server))
    done = Pipeline().then(keep).run(FileSource(str(dataset), chunk_rows=CHUNK_ROWS), sink, engine="sync")
    failed = [path.split("?")[0] for _, path, what in proxy.seen if what != "forwarded"]
    assert len(failed) == len(set(failed)) == 6 + 2 + 1  # the faults really happened, once per object
    assert f"/{prefix}/_SUCCESS" in proxy.failed("lost")

    listed = manifest(s3_server, prefix)
    assert listed["run_id"] == done.run_id and listed["partition_by"] == ["carrier"]
    files = listed["files"]
    assert sorted((f["chunk"], f["file"].split("/")[0], f["rows"]) for f in files) == partitions(table, "carrier")
    assert all(re.fullmatch(rf"carrier=\w+/part-{f['chunk']:05d}-{done.run_id}-[0-9a-f]{{8}}\.parquet", f["file"])
               for f in files)
    assert objects(s3_server, prefix) == sorted(["_SUCCESS", *(f["file"] for f in files)])  # nothing unlisted
    assert listed["rows"] == len(table)
    got = rows(url, s3_server.options)[list(table.columns)]
    pd.testing.assert_frame_equal(got, clean(table), check_dtype=False, check_categorical=False)
    assert objects(s3_server, bucket) == sorted(f"hive/{name}" for name in objects(s3_server, prefix))  # no lock


def test_an_appending_manifest_put_whose_response_is_lost_is_recognised_as_ours(s3_server, proxy, bucket, dataset,
                                                                               table):
    """mode append over a committed output: the `If-Match` PUT of old + new parts took effect and its answer was
    lost; the retry's 412 comes from our own write. The commit succeeds, each part listed once."""
    prefix, url = f"{bucket}/out", f"s3://{bucket}/out"
    source = FileSource(str(dataset), chunk_rows=CHUNK_ROWS)
    first = Pipeline().then(keep).run(source, sink_for(url, storage_options=s3_server.options), engine="sync")
    proxy.rules.append(Rule("PUT", rf"^/{prefix}/_SUCCESS", "lost"))
    done = Pipeline().then(keep).run(source, sink_for(url, "append", storage_options=proxy.options(s3_server)),
                                     engine="sync")
    assert proxy.failed("lost") == [f"/{prefix}/_SUCCESS"]  # the fault really happened

    listed = manifest(s3_server, prefix)
    assert listed["run_id"] == done.run_id and listed["files"] == done.files
    names = [f["file"] for f in listed["files"]]
    assert names[:12] == [f["file"] for f in first.files]  # the old parts, then the new ones
    assert len(names) == len(set(names)) == 24
    assert sorted(int(n.split("-")[1]) for n in names[12:]) == list(range(12))
    assert all(_run_of(n) == done.run_id for n in names[12:])
    assert objects(s3_server, prefix) == sorted(["_SUCCESS", *names])
    assert listed["rows"] == 2 * len(table)
    pd.testing.assert_frame_equal(rows(url, s3_server.options), clean(pd.concat([table, table])),
                                  check_dtype=False, check_categorical=False)
    assert [o for o in objects(s3_server, bucket) if not o.startswith("out/")] == []  # no lock, nothing beside


def test_an_append_whose_manifest_another_run_changed_meanwhile_fails_and_keeps_that_runs_parts(
        s3_server, proxy, bucket, dataset, table):
    """Another append commits between this run's commit reading the manifest and writing it (a run that took
    over a stale lock, say): this run's conditional PUT fails, in one line, and removes only its own parts."""
    prefix, url = f"{bucket}/out", f"s3://{bucket}/out"
    source = FileSource(str(dataset), chunk_rows=CHUNK_ROWS)
    Pipeline().then(keep).run(source, sink_for(url, storage_options=s3_server.options), engine="sync")
    before = set(objects(s3_server, prefix))
    other: dict = {}

    def commit_another_append() -> None:  # on the first read of the manifest once this run's parts are there
        if other or set(objects(s3_server, prefix)) <= before:
            return
        listed = manifest(s3_server, prefix)
        name, body = "part-00000-20990101T000000-0a0b0c-0123abcd.parquet", io.BytesIO()
        table.iloc[:CHUNK_ROWS].to_parquet(body, index=False)
        s3_server.put(f"{prefix}/{name}", body.getvalue())
        listed["files"].append({"file": name, "rows": CHUNK_ROWS, "bytes": len(body.getvalue()), "chunk": 0,
                                "source": "another run"})
        listed.update(run_id="20990101T000000-0a0b0c", rows=listed["rows"] + CHUNK_ROWS)
        s3_server.put(f"{prefix}/_SUCCESS", json.dumps(listed).encode())
        other.update(listed)

    proxy.rules.append(Rule("GET", rf"^/{prefix}/_SUCCESS$", "watched", times=100, then=commit_another_append))
    with pytest.raises(PipelineError) as caught:
        Pipeline().then(keep).run(source, sink_for(url, "append", storage_options=proxy.options(s3_server)),
                                  engine="sync")
    message = str(caught.value)
    assert other, "the other append never committed"
    assert len(message.splitlines()) == 1 and f"output {url} was committed by another run meanwhile" in message

    assert manifest(s3_server, prefix) == other  # the other run's commit stands
    names = [f["file"] for f in other["files"]]
    assert objects(s3_server, prefix) == sorted(["_SUCCESS", *names])  # all its parts there, none of this run's
    expected = pd.concat([table, table.iloc[:CHUNK_ROWS]])
    pd.testing.assert_frame_equal(rows(url, s3_server.options), clean(expected), check_dtype=False,
                                  check_categorical=False)
    assert [o for o in objects(s3_server, bucket) if not o.startswith("out/")] == []  # no lock, nothing beside


def _run_of(name: str) -> str:
    return re.fullmatch(r"part-\d{5}-(.+)-[0-9a-f]{8}\.parquet", name.rsplit("/", 1)[-1])[1]


@pytest.mark.parametrize("what", ["part", "manifest"])
def test_a_server_that_keeps_refusing_fails_the_run_with_nothing_committed(s3_server, proxy, bucket, dataset, what):
    prefix = f"{bucket}/out"
    target = rf"^/{prefix}/part-00004-" if what == "part" else rf"^/{prefix}/_SUCCESS"
    proxy.rules.append(Rule("PUT", target, "503", times=10_000))
    with pytest.raises(PipelineError) as caught:
        Pipeline().then(keep).run(FileSource(str(dataset), chunk_rows=CHUNK_ROWS),
                                  sink_for(f"s3://{prefix}", storage_options=proxy.options(s3_server)), engine="sync")
    message = str(caught.value)
    assert ("part-00004-" if what == "part" else "_SUCCESS") in message
    assert re.search("slow_?down", message, re.I), message
    assert len(message.splitlines()) == 1, message
    assert objects(s3_server, prefix) == []  # nothing committed, and the run's parts removed
    assert [o for o in objects(s3_server, bucket)] == []  # nor the lock left behind


# ---- 1. a worker killed while writing its part -----------------------------------------------------------------


def note_pid(df: pd.DataFrame, marker: str, bad_id: int) -> pd.DataFrame:
    """Leave this worker's pid in `marker` on the chunk holding `bad_id`, the first time only: the proxy kills
    that process once its part's PUT has reached the server."""
    if (df["id"] == bad_id).any() and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
    return df


def engine_for(name: str, request: pytest.FixtureRequest) -> Engine:
    """Two workers of `name`; dask and ray on real external clusters (their workers see this machine's files,
    as the pid marker needs)."""
    if name == "dask":
        return get_engine("dask", workers=2, address=request.getfixturevalue("dask_scheduler"))
    if name == "ray":
        address = request.getfixturevalue("ray_head")  # with the token its driver needs
        import ray

        if ray.is_initialized():  # a driver joins one Ray at a time: end one another test left up
            ray.shutdown()
        return get_engine("ray", workers=2, address=address)
    return get_engine(name, workers=2)


@pytest.mark.parametrize("engine_name", ["processes", "joblib", "dask", "ray"])
def test_a_worker_killed_mid_write_is_retried_and_the_output_is_a_clean_runs(s3_server, proxy, bucket, dataset,
                                                                            table, tmp_path, engine_name, request):
    """The upload that completes chunk 6's part reaches the server (the object exists), its answer is lost, and
    its writer is killed: the chunk is written again under another name, and the orphan is neither listed
    nor left behind."""
    prefix, marker = f"{bucket}/out", tmp_path / "pid"
    killed: list[int] = []
    present: list[list[str]] = []

    def kill_writer() -> None:  # the part is on the server; its writer dies before hearing so
        pid = int(marker.read_text())
        killed.append(pid)
        present.append(objects(s3_server, prefix))
        os.kill(pid, signal.SIGKILL)

    proxy.rules.append(Rule("POST", rf"^/{prefix}/part-00006-[^?]*\?uploadId=", "lost", total=1, then=kill_writer))
    options = proxy.options(s3_server)
    faulty = Pipeline().then(note_pid, marker=str(marker), bad_id=3333)
    with engine_for(engine_name, request) as engine:
        done = faulty.run(FileSource(str(dataset), chunk_rows=CHUNK_ROWS),
                          sink_for(f"s3://{prefix}", storage_options=options), engine=engine)
    assert len(killed) == 1 and len(proxy.failed("lost")) == 1  # a writer really died, once
    orphan = proxy.failed("lost")[0].split("?")[0].rsplit("/", 1)[1]
    assert orphan in present[0]  # the orphan really was on the server
    assert orphan not in [f["file"] for f in done.files]
    assert_committed_clean(s3_server, prefix, table)  # and is gone: nothing unlisted under the prefix
    assert [o for o in objects(s3_server, bucket) if not o.startswith("out/")] == []  # no lock, nothing beside

    again = Pipeline().then(keep).run(FileSource(str(dataset), chunk_rows=CHUNK_ROWS),
                                      sink_for(f"s3://{prefix}", "overwrite", storage_options=s3_server.options),
                                      engine="sync")
    assert manifest(s3_server, prefix)["run_id"] == again.run_id
    assert_committed_clean(s3_server, prefix, table)


# ---- 2. the driver killed before the manifest -------------------------------------------------------------------


def test_a_driver_killed_before_the_manifest_commits_nothing_and_the_next_run_cleans_up(s3_server, bucket, dataset,
                                                                                       table, tmp_path):
    prefix, url = f"{bucket}/out", f"s3://{bucket}/out"
    held = tmp_path / "held"
    driver = spawned.spawn([sys.executable, "-c", textwrap.dedent(f"""
        import os, time
        import pandas as pd
        from pipeline import Pipeline
        from pipeline.io import FileSource, sink_for

        def hold(df: pd.DataFrame) -> pd.DataFrame:
            if (df["id"] == 5555).any():  # a late chunk: the earlier parts are written by now
                open({str(held)!r}, "w").close()
                time.sleep(600)
            return df

        Pipeline().then(hold).run(FileSource({str(dataset)!r}, chunk_rows={CHUNK_ROWS}),
                                  sink_for({url!r}, storage_options={s3_server.options!r}), engine="sync")
    """)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        spawned.wait_for(lambda: held.exists() or driver.poll() is not None, 120, "the driver holding a late chunk")
        assert driver.poll() is None, driver.stderr.read().decode()
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    finally:
        spawned.stop(driver)
    left = objects(s3_server, prefix)
    assert left and all(name.startswith("part-") for name in left)  # parts, and no `_SUCCESS`
    assert ".out.lock" in objects(s3_server, bucket)  # the killed driver's lock stays behind
    with pytest.raises(ConfigError, match="not committed"):
        read(url, storage_options=s3_server.options).collect("sync")

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIPELINE_S3_LOCK_STALE", "0.5")  # the dead driver's heartbeat is old by now
        spawned.wait_for(lambda: _lock_age(s3_server, bucket) > 0.5, 60, "the lock to turn stale")
        done = Pipeline().then(keep).run(FileSource(str(dataset), chunk_rows=CHUNK_ROWS),
                                         sink_for(url, storage_options=s3_server.options), engine="sync")
    assert manifest(s3_server, prefix)["run_id"] == done.run_id
    assert_committed_clean(s3_server, prefix, table)
    assert ".out.lock" not in objects(s3_server, bucket)


def _lock_age(server: S3Server, bucket: str) -> float:
    import time

    body = json.loads(server.filesystem.open_input_stream(f"{bucket}/.out.lock").readall())
    return time.time() - float(body["heartbeat"])
