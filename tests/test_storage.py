"""Inputs on object storage: `s3://` read from a real S3-compatible server on 127.0.0.1 gives the same rows
as the same files read locally (a file, a prefix, a glob, hive partitions, CSV) on `sync` and `processes`;
the endpoint comes from `storage_options` or the environment; other schemes go through fsspec; and a
missing bucket, an empty prefix, an unreachable endpoint or refused credentials is one line naming the URL."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import config, read
from pipeline.errors import BadInputFiles, ConfigError
from pipeline.io import FileSource
from pipeline.io.storage import reason, resolve, s3_options
from s3server import S3Server, aws_env, engine, s3_server  # noqa: F401 - fixtures

PIPELINE = str(Path(sys.executable).parent / "pipeline")
UNREACHABLE = {"endpoint_url": "http://127.0.0.1:1", "connect_timeout": 0.5, "max_attempts": 1}





@pytest.fixture(scope="module")
def local(dataset: Path, table: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The inputs on local disk: the 4-file dataset, the same rows hive-partitioned, and a CSV file."""
    root = tmp_path_factory.mktemp("local")
    pq.write_to_dataset(pa.Table.from_pandas(table, preserve_index=False), root / "hive", partition_cols=["carrier"])
    table.head(700).drop(columns=["kind"]).to_csv(root / "trips.csv", index=False)
    return {"table": dataset, "hive": root / "hive", "csv": root / "trips.csv"}


@pytest.fixture(scope="module")
def bucket(s3_server: S3Server, local: dict[str, Path]) -> str:  # noqa: F811
    """A bucket holding the same files, and the marker files a writer leaves, which a listing skips."""
    name = s3_server.bucket("inputs")
    s3_server.upload(local["table"], f"{name}/table")
    s3_server.put(f"{name}/table/_SUCCESS", b"")
    s3_server.put(f"{name}/table/.hidden", b"not parquet")
    s3_server.put(f"{name}/table/_temporary/0/part.parquet", b"half written")
    s3_server.upload(local["hive"], f"{name}/hive")
    s3_server.upload(local["csv"], f"{name}/trips.csv")
    return name


def rows(path: str, engine: object, **options: object) -> pd.DataFrame:
    frame = read(path, chunk_rows=1000, **options).collect(engine=engine)
    return frame.sort_values("id", ignore_index=True)


CASES = {  # name: (local input, path below it, key in the bucket)
    "file": ("table", "data-001.parquet", "table/data-001.parquet"),
    "prefix": ("table", "", "table"),
    "prefix/": ("table", "", "table/"),
    "glob": ("table", "data-00[02].parquet", "table/data-00[02].parquet"),
    "glob*": ("table", "*.parquet", "table/*.parquet"),
    "hive": ("hive", "", "hive"),
    "hive glob": ("hive", "*/*.parquet", "hive/carrier=*/*.parquet"),
    "csv": ("csv", "", "trips.csv"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_s3_gives_the_rows_the_local_files_give(case: str, engine: object, bucket: str,
                                                s3_server: S3Server, local: dict[str, Path]):  # noqa: F811
    name, below, key = CASES[case]
    expected = rows(str(local[name] / below) if below else str(local[name]), "sync")
    got = rows(f"s3://{bucket}/{key}", engine, storage_options=s3_server.options)
    assert len(got) > 0
    pd.testing.assert_frame_equal(got, expected)


def test_chunks_name_their_objects_by_url(bucket: str, s3_server: S3Server):  # noqa: F811
    source, chunks = FileSource(f"s3://{bucket}/table", chunk_rows=1000, storage_options=s3_server.options).discover()
    assert {p.path for c in chunks for p in c.pieces} == {f"s3://{bucket}/table/data-00{i}.parquet" for i in range(4)}
    assert source.files() == sorted({p.path for c in chunks for p in c.pieces})  # no _SUCCESS, .hidden, _temporary/
    travelled = cloudpickle.loads(cloudpickle.dumps(source))  # as a worker gets it: URL and options, no filesystem
    assert travelled.read(chunks[0]).num_rows == chunks[0].rows
    assert "s3cr3t" not in repr(FileSource(f"s3://{bucket}/t", storage_options={"secret": "s3cr3t"}))


def test_the_endpoint_from_the_environment(bucket: str, s3_server: S3Server, local: dict[str, Path],  # noqa: F811
                                           monkeypatch: pytest.MonkeyPatch):
    """AWS_ENDPOINT_URL, which pyarrow ignores, is honoured; AWS_ENDPOINT_URL_S3 wins over it, and
    storage_options win over both. (Workers read their own environment: see the CLI test below.)"""
    expected = rows(str(local["table"]), "sync")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    url = f"s3://{bucket}/table"
    pd.testing.assert_frame_equal(rows(url, "sync"), expected)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint)
    pd.testing.assert_frame_equal(rows(url, "sync"), expected)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1")
    pd.testing.assert_frame_equal(rows(url, "sync", storage_options={"endpoint_url": s3_server.endpoint}), expected)


def test_storage_options_become_s3_filesystem_keywords(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://env.example:9000")
    assert s3_options({}) == {"endpoint_override": "env.example:9000", "scheme": "https"}
    given = {"endpoint_url": "http://minio:9000/", "key": "k", "secret": "s", "region_name": "eu-west-1",
             "connect_timeout": 2}
    assert s3_options(given) == {"endpoint_override": "minio:9000", "scheme": "http", "access_key": "k",
                                 "secret_key": "s", "region": "eu-west-1", "connect_timeout": 2}
    assert s3_options({"client_kwargs": {"endpoint_url": "http://h:1"}, "anon": True}) == {
        "endpoint_override": "h:1", "scheme": "http", "anonymous": True}
    assert s3_options({"endpoint_url": "h:1", "scheme": "http"})["scheme"] == "http"
    with pytest.raises(ConfigError, match=r"^source.storage_options: unknown key 'nope' for s3 \(expected one of"):
        s3_options({"nope": 1})
    with pytest.raises(ConfigError, match=r"^source.storage_options: endpoint_url: expected http://host"):
        s3_options({"endpoint_url": "ftp://h"})
    monkeypatch.setenv("AWS_ENDPOINT_URL", "nonsense://")
    with pytest.raises(ConfigError, match=r"^AWS_ENDPOINT_URL: expected"):
        s3_options({})


def test_filesystems_are_built_once_per_options(s3_server: S3Server):  # noqa: F811
    first, path = resolve("s3://b/k/", s3_server.options)
    assert path == "b/k"
    assert resolve("s3://c/x", dict(s3_server.options))[0] is first
    assert resolve("s3://c/x", {**s3_server.options, "connect_timeout": 3})[0] is not first
    assert resolve("file:///tmp/x.parquet")[1] == "/tmp/x.parquet"
    assert resolve("data/x.parquet")[1] == "data/x.parquet"


def test_a_rewritten_object_is_read_afresh(s3_server: S3Server):  # noqa: F811
    """Workers keep parsed footers by URL, size and modification time (no local stat of a URL)."""
    name = s3_server.bucket("rewrite")
    url = f"s3://{name}/t.parquet"
    for n in (3, 5):
        s3_server.put(f"{name}/t.parquet", parquet_bytes(pa.table({"id": list(range(n))})))
        source, chunks = FileSource(url, storage_options=s3_server.options).discover()
        assert source.read(chunks[0]).num_rows == n


def test_memory_scheme_goes_through_fsspec(dataset: Path):
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    for path in sorted(dataset.glob("*.parquet")):
        memory.pipe(f"/frames/{path.name}", path.read_bytes())
    memory.pipe("/frames/_SUCCESS", b"")
    try:
        expected = rows(str(dataset), "sync")
        pd.testing.assert_frame_equal(rows("memory://frames", "sync"), expected)
        pd.testing.assert_frame_equal(rows("memory://frames/*.parquet", "sync"), expected)
    finally:
        memory.rm("/frames", recursive=True)


def test_missing_bucket(s3_server: S3Server):  # noqa: F811
    with pytest.raises(ConfigError, match=r"^source.path: s3://no-such-bucket/x: no such bucket 'no-such-bucket'$"):
        FileSource("s3://no-such-bucket/x", storage_options=s3_server.options).files()


def test_prefix_with_no_objects(bucket: str, s3_server: S3Server):  # noqa: F811
    with pytest.raises(ConfigError, match=rf"^source.path: s3://{bucket}/nothing: no such object, and no objects "
                                          "under that prefix$"):
        FileSource(f"s3://{bucket}/nothing", storage_options=s3_server.options).files()
    with pytest.raises(ConfigError, match=rf"^source.path: no input files match s3://{bucket}/table/\*.csv$"):
        FileSource(f"s3://{bucket}/table/*.csv", storage_options=s3_server.options).files()
    empty = s3_server.bucket("empty")
    with pytest.raises(ConfigError, match=rf"^source.path: no input files match s3://{empty}$"):
        FileSource(f"s3://{empty}", storage_options=s3_server.options).files()


def test_unreachable_endpoint_fails_fast(bucket: str):
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        FileSource(f"s3://{bucket}/table", storage_options=UNREACHABLE).discover()
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert message.startswith(f"source.path: s3://{bucket}/table: cannot reach the storage endpoint: ")
    assert "127.0.0.1:1" in message and "\n" not in message


def test_refused_credentials(bucket: str, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    """The server checks signatures against its users (it knows none): every request is refused."""
    from moto import settings

    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    with pytest.raises(ConfigError, match=rf"^source.path: s3://{bucket}/table: access denied .*: check the "
                                          "credentials .*storage_options key and secret\\)$"):
        FileSource(f"s3://{bucket}/table", storage_options={**s3_server.options, "key": "wrong"}).files()


def test_a_bad_object_is_named_by_url(s3_server: S3Server, dataset: Path):  # noqa: F811
    name = s3_server.bucket("bad")
    s3_server.upload(dataset / "data-000.parquet", f"{name}/in/data-000.parquet")
    s3_server.put(f"{name}/in/data-001.parquet", b"id,carrier\n1,AA\n")
    with pytest.raises(BadInputFiles, match=rf"s3://{name}/in/data-001.parquet: not a Parquet file"):
        FileSource(f"s3://{name}/in", storage_options=s3_server.options).discover()


def test_other_schemes_need_their_package():
    with pytest.raises(ConfigError, match=r"^source.path: nosuch://b/x: reading nosuch:// needs fsspec and the "
                                          "package for nosuch installed"):
        FileSource("nosuch://b/x").files()
    with pytest.raises(ConfigError, match=r"^source.storage_options: expected a table of options, got str$"):
        FileSource("s3://b/x", storage_options="endpoint")


def test_reasons_are_one_line():
    assert reason(OSError("When reading information for key 'k' in bucket 'b': AWS Error UNKNOWN (HTTP status "
                          "301) during HeadObject operation: No response body.")).startswith(
        "the bucket is in another region")
    assert reason(OSError("plain\nsecond line")) == "plain\nsecond line"  # not storage's: untouched


def write_config(folder: Path, text: str, name: str = "job") -> Path:
    (folder / "mymod.py").write_text("def keep(df):\n    return df\n")
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def test_config_source_and_inputs_take_storage_options(bucket: str, s3_server: S3Server, tmp_path: Path,  # noqa: F811
                                                       local: dict[str, Path]):
    options = ", ".join(f'{k} = "{v}"' for k, v in s3_server.options.items())
    linear = write_config(tmp_path, f"""
[source]
path = "s3://{bucket}/table"
storage_options = {{ {options} }}
[[stages]]
name = "keep"
uses = "mymod:keep"
[sink]
path = "out/all"
""")
    job = config.load(linear)
    assert job.source.storage_options == s3_server.options
    manifest = job.pipeline.run(job.source, job.sink, "sync")
    assert manifest.rows == len(rows(str(local["table"]), "sync"))
    graph = write_config(tmp_path, f"""
[inputs.trips]
path = "s3://{bucket}/table"
storage_options = {{ {options} }}
[outputs.copy]
from = "trips"
path = "out/copy"
""", "graph")
    assert len(config.load(graph).outputs) == 1
    missing = graph.read_text().replace(f"s3://{bucket}/table", "s3://no-such-bucket/table")
    with pytest.raises(ConfigError, match=r"missing.toml: inputs.trips.path: s3://no-such-bucket/table: "
                                          "no such bucket 'no-such-bucket'$"):
        config.load(write_config(tmp_path, missing, "missing"))
    wrong_key = linear.read_text().replace("storage_options", "storage_option")
    with pytest.raises(ConfigError, match=r"wrong.toml: source.storage_option: unknown key \(expected one of: .*"
                                          "storage_options"):
        config.load(write_config(tmp_path, wrong_key, "wrong"))
    unknown_option = linear.read_text().replace("storage_options = {", 'storage_options = { colour = "red",')
    with pytest.raises(ConfigError, match=r"colour.toml: source.storage_options: unknown key 'colour' for s3"):
        config.load(write_config(tmp_path, unknown_option, "colour"))


def test_the_cli_prints_one_line_for_a_missing_bucket(s3_server: S3Server, tmp_path: Path):  # noqa: F811
    options = ", ".join(f'{k} = "{v}"' for k, v in s3_server.options.items())
    path = write_config(tmp_path, f"""
[source]
path = "s3://no-such-bucket/trips"
storage_options = {{ {options} }}
[[stages]]
name = "keep"
uses = "mymod:keep"
[sink]
path = "out"
""")
    result = subprocess.run([PIPELINE, "validate", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "source.path: s3://no-such-bucket/trips: no such bucket 'no-such-bucket'" in result.stderr


def test_the_cli_runs_on_s3_with_the_endpoint_from_the_environment(bucket: str, s3_server: S3Server,  # noqa: F811
                                                                  tmp_path: Path, local: dict[str, Path]):
    """As a cluster job runs: no options in the config, the endpoint and credentials in the environment of
    the driver and of the worker processes it starts."""
    path = write_config(tmp_path, f"""
[source]
path = "s3://{bucket}/table"
chunk_rows = 1000
[[stages]]
name = "keep"
uses = "mymod:keep"
[sink]
path = "out/all"
[engine]
name = "processes"
workers = 2
""")
    env = {**os.environ, "AWS_ENDPOINT_URL": s3_server.endpoint}
    result = subprocess.run([PIPELINE, "run", str(path), "--quiet"], capture_output=True, text=True, timeout=300,
                            env=env)
    assert result.returncode == 0, result.stderr
    got = pd.read_parquet(tmp_path / "out" / "all").sort_values("id", ignore_index=True)
    pd.testing.assert_frame_equal(got, rows(str(local["table"]), "sync"))


def parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()
