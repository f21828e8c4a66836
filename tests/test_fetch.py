"""The `fetch` stage against a real HTTP server on 127.0.0.1 (`scripts/slow_server.py`, one per test): rows
fetched in order on every engine with requests really overlapping, urllib3's retries, a bad URL named from the
CLI with nothing committed, the rate's schedule, and nothing left running or open afterwards."""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pandas as pd
import psutil
import pytest

import spawned
from pipeline import Pipeline, StageError, waiting
from pipeline.io import FileSource
from stages.io import FetchError, fetch

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = str(Path(sys.executable).parent / "pipeline")


def load_server() -> ModuleType:
    """The server script, imported by its path (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location("slow_server", ROOT / "scripts" / "slow_server.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["slow_server"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


slow_server = load_server()


@pytest.fixture
def server() -> Iterator[str]:
    with slow_server.serving(delay=0.01, idle_exit=120) as url:
        yield url


def stats(server: str) -> dict:
    with urllib.request.urlopen(f"{server}/stats", timeout=10) as response:
        return json.load(response)


def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def one(url: str, **params) -> pd.DataFrame:
    return fetch(pd.DataFrame({"url": [url]}, index=[7]), "url", backoff=0, **params)


def values(column: pd.Series) -> list:
    """The column's values, a null as None whatever the dtype writes it as."""
    return [None if pd.isna(value) else value for value in column]


# --- every engine ---------------------------------------------------------------------------------------------

def test_every_row_is_fetched_in_order_with_requests_overlapping(engine, server: str, tmp_path: Path):
    rows = 200
    urls = pd.DataFrame({"id": range(rows), "url": [f"{server}/text/row-{i}?delay=0.02" for i in range(rows)]})
    source = tmp_path / "urls.parquet"
    urls.to_parquet(source, row_group_size=50)
    out = tmp_path / "out"
    Pipeline().then(fetch, column="url", concurrency=8).run(FileSource(str(source), chunk_rows=50), str(out), engine)

    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) == 4
    got = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    assert got["id"].tolist() == list(range(rows))
    assert got["content"].tolist() == [f"row-{i}" for i in range(rows)]
    seen = stats(server)
    assert seen["requests"] == rows and len(seen["by_path"]) == rows  # each row once: none retried
    assert seen["max_in_flight"] > 1


# --- retries ----------------------------------------------------------------------------------------------------

def test_a_failing_url_succeeds_within_its_retries(server: str):
    assert one(f"{server}/text/ok?fail=2", retries=3)["content"].tolist() == ["ok"]
    assert stats(server)["by_path"] == {"/text/ok?fail=2": 3}


def test_a_url_failing_more_often_than_retried_names_url_status_and_row(server: str):
    url = f"{server}/text/ok?fail=2"
    chunk = pd.DataFrame({"url": [f"{server}/text/fine", url]}, index=[10, 11])
    with pytest.raises(FetchError) as caught:
        fetch(chunk, "url", retries=1, backoff=0)
    assert str(caught.value) == (
        f"GET {url}: HTTP 503 Service Unavailable after 1 retry (row 1 of the chunk, index 11)")
    assert stats(server)["by_path"]["/text/ok?fail=2"] == 2


def test_too_many_requests_is_retried_after_its_retry_after(server: str):
    assert one(f"{server}/text/ok?fail=1&status=429&retry_after=1", retries=2)["content"].tolist() == ["ok"]
    assert stats(server)["by_path"] == {"/text/ok?fail=1&status=429&retry_after=1": 2}


def test_not_found_is_not_retried(server: str):
    url = f"{server}/text/gone?status=404"
    with pytest.raises(FetchError) as caught:
        one(url, retries=3)
    assert str(caught.value) == f"GET {url}: HTTP 404 Not Found (row 0 of the chunk, index 7)"
    assert stats(server)["by_path"] == {"/text/gone?status=404": 1}


def test_on_error_null_leaves_failing_rows_null_and_fetches_the_rest(server: str):
    urls = [f"{server}/text/first", f"{server}/text/gone?status=404", None, f"{server}/text/busy?status=503",
            "no-scheme/x", 5, f"http://127.0.0.1:{free_port()}/x", f"{server}/text/last"]
    out = fetch(pd.DataFrame({"url": urls}), "url", retries=1, backoff=0, on_error="null")
    assert values(out["content"]) == ["first", None, None, None, None, None, None, "last"]
    assert stats(server)["by_path"]["/text/busy?status=503"] == 2


def test_bytes_and_text_bodies_and_paths_on_a_base(server: str, tmp_path: Path):
    data = bytes(range(256))
    (tmp_path / "blob.bin").write_bytes(data)
    with slow_server.serving(delay=0, root=tmp_path) as files:
        chunk = pd.DataFrame({"path": ["files/blob.bin", None, "/files/blob.bin"]}, index=[4, 4, 2])
        got = fetch(chunk, "path", body="bytes", base=f"{files}/")
    assert values(got["content"]) == [data, None, data]  # by position, though the index repeats a label
    assert one(f"{server}/text/caf%C3%A9%20%E2%86%92")["content"].tolist() == ["café →"]


@pytest.mark.parametrize("params, message", [
    ({"body": "json"}, "fetch: body must be one of 'text', 'bytes', got 'json'"),
    ({"on_error": "skip"}, "fetch: on_error must be one of 'raise', 'null', got 'skip'"),
    ({"concurrency": 0}, "fetch: concurrency must be a whole number of at least 1, got 0"),
    ({"retries": -1}, "fetch: retries must be a whole number of at least 0, got -1"),
    ({"timeout": 0}, "fetch: timeout must be a positive number of seconds, got 0"),
    ({"rate": 0}, "fetch: rate must be a positive number of requests per second, or left out, got 0"),
    ({"headers": {"X-Count": 1}}, "fetch: headers must be a table of names to text values, got {'X-Count': 1}"),
    ({"base": "127.0.0.1/api"},
     "fetch: base must be an http:// or https:// URL, got '127.0.0.1/api': no scheme (http:// or https://)"),
])
def test_bad_params_are_named_before_any_request(server: str, params: dict, message: str):
    with pytest.raises(ValueError) as caught:
        fetch(pd.DataFrame({"url": [f"{server}/text/x"]}), "url", **params)
    assert str(caught.value) == message
    assert stats(server)["requests"] == 0


# --- from the CLI -----------------------------------------------------------------------------------------------

def test_a_bad_param_in_a_config_is_named_by_validate_before_any_request(server: str, tmp_path: Path):
    config = tmp_path / "job.toml"
    pd.DataFrame({"url": [f"{server}/text/x"]}).to_parquet(tmp_path / "urls.parquet")
    config.write_text(f'[source]\npath = "{tmp_path / "urls.parquet"}"\n[[stages]]\nname = "download"\n'
                      'uses = "stages.io:fetch"\nparams = { column = "url", body = "html" }\n'
                      f'[sink]\npath = "{tmp_path / "out"}"\n')
    for command in ("validate", "run"):
        result = spawned.run([PIPELINE, command, str(config)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stderr
        assert "stages[0].params (stage 'download'): fetch: body must be one of 'text', 'bytes', got 'html'" in result.stderr
    assert stats(server)["requests"] == 0 and not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["unreachable", "malformed", "timeout"])
def test_a_bad_url_fails_the_run_with_one_clear_line(case: str, server: str, tmp_path: Path):
    bad, reason = {
        "unreachable": (f"http://127.0.0.1:{free_port()}/text/x", "cannot connect (Connection refused) after 1 retry"),
        "malformed": ("127.0.0.1/text/x", "no scheme (http:// or https://)"),
        "timeout": (f"{server}/text/x?hang=1", "timed out waiting for the response (timeout 0.5 s) after 1 retry"),
    }[case]
    urls = [f"{server}/text/ok-{i}" for i in range(5)]
    urls[3] = bad
    source, out, config = tmp_path / "urls.parquet", tmp_path / "out", tmp_path / "job.toml"
    pd.DataFrame({"url": urls}).to_parquet(source)
    config.write_text(
        f'[source]\npath = "{source}"\n'
        '[[stages]]\nname = "download"\nuses = "stages.io:fetch"\n'
        'params = { column = "url", timeout = 0.5, retries = 1, backoff = 0 }\n'
        f'[sink]\npath = "{out}"\n[engine]\nname = "processes"\nworkers = 2\n'
    )
    result = spawned.run([PIPELINE, "run", str(config), "--quiet"], capture_output=True, text=True, timeout=120)

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and str(ROOT / "pipeline") not in result.stderr  # no framework frames
    assert len(result.stderr.strip().splitlines()) == 1  # nor the stage library's: one line
    line = result.stderr.splitlines()[0]
    assert line.startswith(f"error: stage 'download' failed on chunk 0 (input {source}")
    assert bad in line and reason in line and "(row 3 of the chunk, index 3)" in line
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.toml", "urls.parquet"]


# --- rate -------------------------------------------------------------------------------------------------------

class StoppedClock:
    """A clock that stands still and records the sleeps asked of it: a `Rate`'s schedule, without waiting."""

    def __init__(self) -> None:
        self.now, self.sleeps = 100.0, []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def test_rate_spaces_request_starts_evenly_across_threads(server: str, monkeypatch: pytest.MonkeyPatch):
    clock = StoppedClock()
    monkeypatch.setattr(waiting, "time", clock)
    monkeypatch.setattr(waiting, "_RATES", {})  # this process's rates, fresh for this test
    urls = pd.DataFrame({"url": [f"{server}/text/r{i}?delay=0" for i in range(40)]})
    out = Pipeline().then(fetch, column="url", rate=20, concurrency=8).run_frame(urls, engine="sync")
    assert out["content"].tolist() == [f"r{i}" for i in range(40)]
    assert stats(server)["requests"] == 40
    assert sorted(clock.sleeps) == pytest.approx([k / 20 for k in range(1, 40)])  # the first starts at once


def test_rate_keeps_no_credit_from_idle_time(monkeypatch: pytest.MonkeyPatch):
    clock = StoppedClock()
    monkeypatch.setattr(waiting, "time", clock)
    rate = waiting.Rate(4)
    for _ in range(2):
        rate.acquire()
    clock.now += 60  # idle for a minute: the next two calls are still a quarter second apart, not a burst
    for _ in range(2):
        rate.acquire()
    assert clock.sleeps == [0.25, 0.25]


# --- nothing left behind ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fails", [False, True])
def test_no_thread_or_connection_is_left_after_a_fetch(server: str, fails: bool):
    urls = [f"{server}/text/r{i}" for i in range(20)] + [f"{server}/text/end?status={404 if fails else 200}"]
    pipeline = Pipeline().then(fetch, column="url", concurrency=8)
    if fails:
        with pytest.raises(StageError, match="HTTP 404 Not Found"):
            pipeline.run_frame(pd.DataFrame({"url": urls}), engine="sync")
    else:
        assert len(pipeline.run_frame(pd.DataFrame({"url": urls}), engine="sync")) == 21
    assert [t.name for t in threading.enumerate() if t.name.startswith("pipeline-io")] == []
    port = int(server.rsplit(":", 1)[1])
    assert [c for c in psutil.Process().net_connections("tcp") if c.raddr and c.raddr.port == port] == []
    assert stats(server)["max_in_flight"] > 1  # the requests did run on the pool's threads


# --- the example config ------------------------------------------------------------------------------------------

def test_the_waiting_example_fetches_every_page_and_summarises_it_with_awk(tmp_path: Path):
    """configs/waiting.toml as the README runs it, with the server on a free port and the output redirected."""
    pages = ROOT / "configs" / "waiting" / "pages"
    with slow_server.serving(delay=0.01, root=pages, idle_exit=120) as url:
        result = spawned.run([PIPELINE, "run", str(ROOT / "configs" / "waiting.toml"), "--quiet",
                              "--set", f'stages.0.params.base="{url}"', "--set", f'sink.path="{tmp_path / "out"}"'],
                             capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert stats(url)["requests"] == len(list(pages.glob("*.txt")))
    out = pd.read_parquet(tmp_path / "out").set_index("city").sort_index()
    readings = {p.stem: [float(t) for t in p.read_text().split()] for p in pages.glob("*.txt")}
    expected = pd.DataFrame({city: {"days": len(t), "mean_c": round(sum(t) / len(t), 2), "min_c": min(t),
                                    "max_c": max(t)} for city, t in readings.items()}).T.sort_index()
    assert list(out.index) == list(expected.index)
    for column in expected.columns:
        assert out[column].tolist() == pytest.approx(expected[column].astype(float).tolist(), abs=0.006), column
