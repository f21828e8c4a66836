"""Chunked sources (Parquet files, directories, hive partitions, globs, CSV; projection and filters) and
staged sinks (error / overwrite / append, single file), on real files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import Pipeline, SinkError
from pipeline.io import FileSource, Manifest, sink_for
from stages.analyze import aggregate


def read_all(source: FileSource) -> pd.DataFrame:
    source, chunks = source.discover()
    return pd.concat([source.read(c).to_pandas() for c in chunks], ignore_index=True)


def test_row_groups_are_grouped_up_to_chunk_rows(dataset: Path):
    """Row groups (500 rows, 3 a file) are packed in file order: a file splits, files share a chunk."""
    _, chunks = FileSource(str(dataset), chunk_rows=1000).discover()
    pieces = [[(Path(p.path).name, p.row_groups) for p in c.pieces] for c in chunks[:2]]
    assert pieces == [[("data-000.parquet", (0, 1))], [("data-000.parquet", (2,)), ("data-001.parquet", (0,))]]
    assert [c.rows for c in chunks] == [1000] * 6
    assert [len(c.pieces) for c in FileSource(str(dataset), chunk_rows=10**9).discover()[1]] == [4]
    assert [c.rows for c in FileSource(str(dataset), chunk_rows=1200).discover()[1]] == [1000, 1000] * 3
    assert len(FileSource(str(dataset), chunk_rows=100).discover()[1]) == 12  # a bigger row group: a chunk alone


def test_chunks_spanning_files_read_alike(dataset: Path, table: pd.DataFrame):
    """Read through chunks of every shape, the table comes back whole and in order."""
    for chunk_rows in (700, 1500, 2500, 10**9):
        pd.testing.assert_frame_equal(read_all(FileSource(str(dataset), chunk_rows=chunk_rows)), table)


def test_skipping_bad_files_keeps_each_file_its_own_chunk(dataset: Path):
    _, chunks = FileSource(str(dataset), on_bad_file="skip", chunk_rows=10**9).discover()
    assert [[Path(p.path).name for p in c.pieces] for c in chunks] == [[f"data-00{i}.parquet"] for i in range(4)]


def test_projection_and_filters_are_pushed_down(dataset: Path, table: pd.DataFrame):
    source = FileSource(str(dataset), columns=["id", "month"], filters=[("month", "<=", 3)], chunk_rows=500)
    got = read_all(source)
    want = table.loc[table["month"] <= 3, ["id", "month"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)


def test_row_groups_ruled_out_by_statistics_are_skipped(dataset: Path):
    _, chunks = FileSource(str(dataset), filters=[("id", ">=", 5500)], chunk_rows=500).discover()
    assert [[(Path(p.path).name, p.row_groups) for p in c.pieces] for c in chunks] == [[("data-003.parquet", (2,))]]


def test_hive_partitions_glob_and_csv(tmp_path: Path, table: pd.DataFrame):
    small = table.head(300)
    pq.write_to_dataset(pa.Table.from_pandas(small, preserve_index=False), tmp_path / "hive", partition_cols=["carrier"])
    hive = read_all(FileSource(str(tmp_path / "hive"), columns=["id", "carrier"])).sort_values("id", ignore_index=True)
    assert hive["id"].tolist() == small["id"].tolist()
    assert hive["carrier"].astype(str).tolist() == small["carrier"].tolist()

    for i in range(3):
        small.iloc[i * 100 : (i + 1) * 100].to_csv(tmp_path / f"part{i}.csv", index=False)
    source, chunks = FileSource(str(tmp_path / "part*.csv")).discover()
    assert source.format == "csv" and len(chunks) == 3
    got = pd.concat([source.read(c).to_pandas() for c in chunks], ignore_index=True)
    assert got["id"].tolist() == small["id"].tolist()


def test_csv_in_csv_out(tmp_path: Path, table: pd.DataFrame):
    table.head(500).to_csv(tmp_path / "in.csv", index=False)
    pipeline = Pipeline().then(aggregate, by=["carrier"], aggs={"n": ["id", "count"]})
    pipeline.run(str(tmp_path / "in.csv"), str(tmp_path / "out.csv"), "sync")
    got = pd.read_csv(tmp_path / "out.csv")
    assert got["n"].sum() == 500 and got["carrier"].tolist() == sorted(got["carrier"])


def keep_all(df: pd.DataFrame) -> pd.DataFrame:
    return df


def test_overwrite_replaces_and_append_adds(dataset: Path, tmp_path: Path):
    out = tmp_path / "out"
    pipeline = Pipeline().then(keep_all)
    source = FileSource(str(dataset), chunk_rows=1500)  # a file a chunk
    first = pipeline.run(source, str(out), "threads")
    with pytest.raises(SinkError, match="already exists"):
        pipeline.run(source, str(out), "threads")
    pipeline.run(source, str(out), "threads", mode="overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", *(f"part-{i:05d}.parquet" for i in range(4))]

    appended = pipeline.run(source, str(out), "threads", mode="append")
    manifest = Manifest.read(str(out))
    assert manifest.rows == 2 * first.rows == 12_000
    assert len(manifest.files) == 8 and all((out / f["file"]).exists() for f in manifest.files)
    assert all(f["file"].startswith(f"part-{appended.run_id}-") for f in manifest.files[4:])
    assert len(pd.read_parquet(out)) == 12_000
    assert not [p for p in tmp_path.iterdir() if p.name != "out"]  # no staging or old copies left


def test_single_file_sink_refuses_per_chunk_output_and_append(dataset: Path, tmp_path: Path):
    with pytest.raises(Exception, match="names one file"):
        Pipeline().then(keep_all).run(str(dataset), str(tmp_path / "x.parquet"), "sync")
    with pytest.raises(Exception, match="'append' needs a directory"):
        agg = Pipeline().then(aggregate, by=["carrier"], aggs={"n": ["id", "count"]})
        agg.run(str(dataset), str(tmp_path / "x.parquet"), "sync", mode="append")
    assert list(tmp_path.iterdir()) == []


def test_manifest_lists_files_rows_and_schema(dataset: Path, tmp_path: Path):
    Pipeline().then(keep_all).run(FileSource(str(dataset), chunk_rows=1500), str(tmp_path / "out"), "sync")
    marker = json.loads((tmp_path / "out" / "_SUCCESS").read_text())
    assert marker["rows"] == 6000 and [f["rows"] for f in marker["files"]] == [1500] * 4
    assert dict(marker["schema"])["kind"].startswith("dictionary<") and dict(marker["schema"])["id"] == "int64"
    assert marker["files"][0]["source"].endswith("data-000.parquet (row groups 0-2)")


def test_sink_for_picks_file_or_directory(tmp_path: Path):
    assert type(sink_for(str(tmp_path / "a.parquet"))).__name__ == "FileSink"
    assert sink_for(str(tmp_path / "a.csv")).format == "csv"
    assert type(sink_for(str(tmp_path / "a"))).__name__ == "DirectorySink"
