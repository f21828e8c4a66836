"""Outputs on object storage, against a real S3-compatible server on 127.0.0.1: the rows of a local-disk output
on `sync` and `processes`, hive partitions, a single-file aggregate, the three modes, the lock, a failed run
leaving nothing listed (and its orphans removed by the next), a reader trusting the manifest over a listing,
and the conditional create refusing a second manifest."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import Pipeline, read
from pipeline.config import load
from pipeline.errors import ConfigError, SinkError, StageError
from pipeline.io import FileSource, ObjectDirectorySink, ObjectFileSink, sink_for
from pipeline.io import s3_client
from pipeline.io.object_lock import lock_key, object_lock
from s3server import S3Server, aws_env, engine, manifest, objects, s3_server  # noqa: F401 - fixtures
from stages.analyze import aggregate


@pytest.fixture
def bucket(s3_server: S3Server) -> str:  # noqa: F811
    return s3_server.bucket("out")


@pytest.fixture
def opts(s3_server: S3Server) -> dict[str, str]:  # noqa: F811
    return s3_server.options


def keep(df: pd.DataFrame) -> pd.DataFrame:
    return df


def fail_late(df: pd.DataFrame) -> pd.DataFrame:
    if (df["id"] >= 5_000).any():
        raise ValueError("bad chunk")
    return df




def rows(url: str, opts: dict[str, str]) -> pd.DataFrame:
    got = read(url, storage_options=opts).collect("sync")
    return got.sort_values("id").reset_index(drop=True)


def sorted_frame(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values("id").reset_index(drop=True)


def test_s3_output_has_the_rows_of_a_local_output(s3_server, bucket, opts, dataset: Path, tmp_path: Path, engine):
    pipeline = Pipeline().then(keep)
    local = pipeline.run(FileSource(str(dataset), chunk_rows=2000), str(tmp_path / "out"), engine=engine)
    url = f"s3://{bucket}/out"
    committed = pipeline.run(FileSource(str(dataset), chunk_rows=2000), sink_for(url, storage_options=opts),
                             engine=engine)
    assert committed.rows == local.rows == 6000 and len(committed.files) == len(local.files) == 3
    assert objects(s3_server, f"{bucket}/out") == sorted(["_SUCCESS", *(f["file"] for f in committed.files)])
    assert manifest(s3_server, f"{bucket}/out")["files"] == committed.files
    expected = sorted_frame(pd.read_parquet(tmp_path / "out"))
    pd.testing.assert_frame_equal(rows(url, opts), expected)
    assert [o for o in objects(s3_server, bucket) if not o.startswith("out/")] == []  # the lock is gone


def test_dataset_write_takes_storage_options(s3_server, bucket, opts, dataset: Path, table: pd.DataFrame,
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # the graph runner still puts its local scratch folder beside the output's name
    url = f"s3://{bucket}/written"
    read(str(dataset)).write(url, storage_options=opts).run("sync")
    assert len(rows(url, opts)) == len(table)


def test_partitioned_output(s3_server, bucket, opts, dataset: Path, table: pd.DataFrame, engine):
    url = f"s3://{bucket}/hive"
    sink = sink_for(url, partition_by=["carrier"], storage_options=opts)
    done = Pipeline().then(keep).run(FileSource(str(dataset), chunk_rows=3000), sink, engine=engine)
    names = objects(s3_server, f"{bucket}/hive")
    assert {n.split("/")[0] for n in names if n != "_SUCCESS"} == {f"carrier={c}" for c in table["carrier"].unique()}
    assert sorted(f["file"] for f in done.files) == [n for n in names if n != "_SUCCESS"]
    got = rows(url, opts)
    assert sorted(zip(got["id"], got["carrier"])) == sorted(zip(table["id"], table["carrier"]))


def test_single_file_aggregate(s3_server, bucket, opts, dataset: Path, table: pd.DataFrame, engine):
    url = f"s3://{bucket}/agg.parquet"
    pipeline = Pipeline().then(aggregate, by=["carrier"], aggs={"n": ["id", "count"]})
    done = pipeline.run(FileSource(str(dataset), chunk_rows=2000), sink_for(url, storage_options=opts), engine=engine)
    assert objects(s3_server, bucket) == ["agg.parquet", "agg.parquet._SUCCESS"]  # staged copy and lock gone
    assert done.files[0]["file"] == "agg.parquet"
    got = pq.read_table(s3_server.filesystem.open_input_file(f"{bucket}/agg.parquet")).to_pandas()
    assert dict(zip(got["carrier"], got["n"])) == table.groupby("carrier").size().to_dict()
    with pytest.raises(SinkError, match="already exists"):
        pipeline.run(str(dataset), sink_for(url, storage_options=opts), engine="sync")
    again = pipeline.run(str(dataset), sink_for(url, "overwrite", storage_options=opts), engine="sync")
    marker = json.loads(s3_server.filesystem.open_input_stream(f"{bucket}/agg.parquet._SUCCESS").readall())
    assert marker["run_id"] == again.run_id
    assert objects(s3_server, bucket) == ["agg.parquet", "agg.parquet._SUCCESS"]


def test_modes_error_overwrite_append(s3_server, bucket, opts, dataset: Path, table: pd.DataFrame):
    url, prefix = f"s3://{bucket}/out", f"{bucket}/out"
    pipeline, source = Pipeline().then(keep), FileSource(str(dataset), chunk_rows=2000)
    first = pipeline.run(source, sink_for(url, storage_options=opts), engine="sync")
    with pytest.raises(SinkError, match="already exists"):
        pipeline.run(source, sink_for(url, storage_options=opts), engine="sync")
    assert manifest(s3_server, prefix)["run_id"] == first.run_id

    appended = pipeline.run(source, sink_for(url, "append", storage_options=opts), engine="sync")
    listed = manifest(s3_server, prefix)
    assert listed["rows"] == 2 * len(table) == appended.rows
    assert [f["file"] for f in listed["files"]] == [*(f["file"] for f in first.files),
                                                    *(f["file"] for f in appended.files[3:])]
    assert objects(s3_server, prefix) == sorted(["_SUCCESS", *(f["file"] for f in listed["files"])])
    assert len(rows(url, opts)) == 2 * len(table)

    over = pipeline.run(source, sink_for(url, "overwrite", storage_options=opts), engine="sync")
    assert objects(s3_server, prefix) == sorted(["_SUCCESS", *(f["file"] for f in over.files)])
    assert len(over.files) == 3
    pd.testing.assert_frame_equal(rows(url, opts), sorted_frame(table), check_dtype=False, check_categorical=False)


def test_a_live_lock_refuses_a_second_run_and_a_stale_one_is_taken_over(s3_server, bucket, opts, dataset: Path):
    url = f"s3://{bucket}/out"
    with object_lock(url, opts):
        with pytest.raises(SinkError, match="another run is writing"):
            Pipeline().then(keep).run(str(dataset), sink_for(url, storage_options=opts), engine="sync")
    assert objects(s3_server, bucket) == []  # released, and the refused run wrote nothing

    stale = {"owner": "dead", "host": "elsewhere", "pid": 1, "heartbeat": time.time() - 3600}
    s3_server.put(lock_key(url), json.dumps(stale).encode())
    done = Pipeline().then(keep).run(str(dataset), sink_for(url, storage_options=opts), engine="sync")
    assert done.rows == 6000 and ".out.lock" not in objects(s3_server, bucket)

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = {"owner": "dead", "host": socket.gethostname(), "pid": int(gone.stdout), "heartbeat": time.time()}
    s3_server.put(lock_key(url), json.dumps(dead).encode())  # fresh, but its driver is gone from this host
    again = Pipeline().then(keep).run(str(dataset), sink_for(url, "overwrite", storage_options=opts), engine="sync")
    assert again.rows == 6000 and ".out.lock" not in objects(s3_server, bucket)


def test_a_failing_stage_leaves_nothing_listed_and_orphans_go_next_run(s3_server, bucket, opts, dataset: Path,
                                                                      engine):
    url, prefix = f"s3://{bucket}/out", f"{bucket}/out"
    with pytest.raises(StageError, match="bad chunk"):
        Pipeline().then(fail_late).run(FileSource(str(dataset), chunk_rows=500), sink_for(url, storage_options=opts),
                                       engine=engine)
    assert objects(s3_server, prefix) == []  # no manifest, and the run's parts removed on abort
    orphan = "part-00003-20200101T000000-abcdef-0123abcd.parquet"  # as a killed run leaves it
    s3_server.put(f"{prefix}/{orphan}", b"half a part")
    done = Pipeline().then(keep).run(FileSource(str(dataset), chunk_rows=2000), sink_for(url, storage_options=opts),
                                     engine=engine)
    assert objects(s3_server, prefix) == sorted(["_SUCCESS", *(f["file"] for f in done.files)])


@pytest.mark.parametrize("name", ["out", "agg.parquet"])
def test_uploads_a_killed_writer_left_unfinished_are_aborted_by_the_next_run(s3_server, bucket, opts, dataset: Path,
                                                                            name: str):
    """A multipart upload begun and never completed (its writer killed) is invisible to listings but stays on
    the store until aborted: the next run of the output aborts it; other uploads are left alone."""
    s3 = s3_client.client(opts)
    key = "out/part-00003-20200101T000000-abcdef-0123abcd.parquet" if name == "out" else \
        ".agg.parquet.staging-20200101T000000-abcdef-0123abcd"
    for unfinished in (key, "unrelated/upload.bin"):
        started = s3.create_multipart_upload(Bucket=bucket, Key=unfinished)
        s3.upload_part(Bucket=bucket, Key=unfinished, UploadId=started["UploadId"], PartNumber=1, Body=b"half")
    pipeline = Pipeline().then(aggregate, by=["carrier"], aggs={"n": ["id", "count"]}) if name != "out" else \
        Pipeline().then(keep)
    pipeline.run(str(dataset), sink_for(f"s3://{bucket}/{name}", storage_options=opts), engine="sync")
    left = [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    assert left == ["unrelated/upload.bin"]


def test_a_retried_attempt_is_never_listed(s3_server, bucket, opts, table: pd.DataFrame):
    sink = sink_for(f"s3://{bucket}/out", storage_options=opts).for_run("run1")
    frame = table.head(10)
    sink.write_part(frame, 0, {}, "a")  # an attempt whose worker was lost after writing
    receipt = sink.write_part(frame, 0, {}, "a")
    done = sink.commit([receipt])
    assert [f["file"] for f in done.files] == [receipt.file]
    assert objects(s3_server, f"{bucket}/out") == sorted(["_SUCCESS", receipt.file])


def test_a_reader_trusts_the_manifest_over_the_listing(s3_server, bucket, opts, dataset: Path, table: pd.DataFrame):
    url, prefix = f"s3://{bucket}/out", f"{bucket}/out"
    Pipeline().then(keep).run(str(dataset), sink_for(url, storage_options=opts), engine="sync")
    extra = pa.Table.from_pandas(table.head(5), preserve_index=False)
    with s3_server.filesystem.open_output_stream(f"{prefix}/part-00099-other-deadbeef.parquet") as out:
        pq.write_table(extra, out)
    assert len(rows(url, opts)) == len(table)  # the unlisted part is not read
    s3_server.filesystem.delete_file(f"{prefix}/_SUCCESS")
    assert len(rows(url, opts)) == len(table) + 5  # without a manifest: the listing, as before


def test_the_conditional_create_refuses_a_second_manifest(s3_server, bucket, opts, table: pd.DataFrame):
    url = f"s3://{bucket}/out"
    first = sink_for(url, storage_options=opts).for_run("run-a")
    second = sink_for(url, storage_options=opts).for_run("run-b")  # both saw an empty prefix
    a = first.write_part(table.head(3), 0, {}, "a")
    b = second.write_part(table.head(4), 0, {}, "b")
    first.commit([a])
    with pytest.raises(SinkError, match="committed by another run"):
        second.commit([b])
    assert manifest(s3_server, f"{bucket}/out")["run_id"] == "run-a"
    with pytest.raises(s3_client.PreconditionFailed):
        s3_client.put(s3_client.client(opts), f"{bucket}/out/_SUCCESS", b"{}", None)


def test_config_sink_storage_options(s3_server, bucket, opts, dataset: Path, tmp_path: Path):
    options = ", ".join(f'{k} = "{v}"' for k, v in opts.items())
    path = tmp_path / "job.toml"
    path.write_text(f'[source]\npath = "{dataset}"\n\n[[stages]]\nname = "agg"\nuses = "stages.analyze:aggregate"\n'
                    f'params = {{ by = ["carrier"], aggs = {{ n = ["id", "count"] }} }}\n\n'
                    f'[sink]\npath = "s3://{bucket}/agg.parquet"\nstorage_options = {{ {options} }}\n')
    job = load(path)
    assert isinstance(job.sink, ObjectFileSink) and job.sink.storage_options == opts
    assert isinstance(sink_for(f"s3://{bucket}/x", storage_options=opts), ObjectDirectorySink)
    with pytest.raises(ConfigError, match="storage_options are for s3"):
        sink_for(str(tmp_path / "local"), storage_options=opts)
