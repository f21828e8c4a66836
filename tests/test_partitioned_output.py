"""Hive-partitioned output (`partition_by`), on real pipelines and real files: the tree and its manifest, read
back alike by every hive-aware reader (and our own source), append / overwrite, nothing left by a failed run,
and bad settings refused before anything runs."""

from __future__ import annotations

import datetime
import math
import os
import re
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipeline import Pipeline
from pipeline.config import load
from pipeline.errors import ConfigError, SinkError, StageError
from pipeline.io import DirectorySink, FileSource, Manifest, sink_for
from stages.analyze import aggregate

COLUMNS = ["id", "year", "month", "carrier", "day", "value"]
CARRIERS = ["AA", "a/b c", "x=y%z", "", None]  # a separator, a space, '=' and '%', empty, null


def make_input(rows: int, seed: int, years: tuple[int, ...]) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = [datetime.date(2013, 1, 1) + datetime.timedelta(days=int(d)) for d in rng.integers(0, 3, rows)]
    return pd.DataFrame(
        {
            "id": np.arange(seed * 10_000, seed * 10_000 + rows, dtype="int64"),
            "year": rng.choice(years, rows).astype("int64"),
            "month": rng.integers(1, 4, rows).astype("int64"),
            "carrier": pd.array([CARRIERS[i] for i in rng.integers(0, len(CARRIERS), rows)], dtype="object"),
            "day": days,
            "value": rng.integers(-400, 400, rows) / 4,
        }
    )


def write_input(df: pd.DataFrame, folder: Path, files: int = 3) -> Path:
    """`files` Parquet files of 100-row row groups: with `chunk_rows=200` and 200 rows a file, a file a chunk."""
    folder.mkdir(parents=True)
    for i, part in enumerate(np.array_split(np.arange(len(df)), files)):
        table = pa.Table.from_pandas(df.iloc[part], preserve_index=False)
        pq.write_table(table, folder / f"in-{i}.parquet", row_group_size=100)
    return folder


@pytest.fixture
def frame() -> pd.DataFrame:
    return make_input(600, seed=1, years=(2013, 2014))


@pytest.fixture
def data(frame: pd.DataFrame, tmp_path: Path) -> Path:
    return write_input(frame, tmp_path / "in")


def keep(df: pd.DataFrame) -> pd.DataFrame:
    return df


def fail_on_last_chunk(df: pd.DataFrame) -> pd.DataFrame:
    if (df["id"] >= 10_400).any():
        raise ValueError("bad chunk")
    return df


def drop_month(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["month"])


def text(value: Any) -> str | None:
    """A value as text, so readers that infer partition types differently (int/str/date) compare alike."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, datetime.datetime):
        value = value.date()
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def records(rows: list[tuple]) -> list[tuple]:
    return sorted((tuple(text(v) for v in row) for row in rows), key=lambda row: int(row[0]))


def expected(frame: pd.DataFrame) -> list[tuple]:
    return records(list(frame[COLUMNS].itertuples(index=False, name=None)))


def read_pyarrow_dataset(out: Path, fmt: str = "parquet") -> list[tuple]:
    table = ds.dataset(str(out), format=fmt, partitioning="hive").to_table()
    return records([tuple(r[c] for c in COLUMNS) for r in table.to_pylist()])


def read_pq(out: Path) -> list[tuple]:
    return records([tuple(r[c] for c in COLUMNS) for r in pq.read_table(str(out)).to_pylist()])


def read_duckdb(out: Path) -> list[tuple]:
    query = f"SELECT {', '.join(COLUMNS)} FROM read_parquet('{out}/**/*.parquet', hive_partitioning = true)"
    return records(duckdb.connect().sql(query).fetchall())


def read_polars(out: Path) -> list[tuple]:
    return records(pl.read_parquet(f"{out}/**/*.parquet", hive_partitioning=True).select(COLUMNS).rows())


def read_file_source(out: Path) -> list[tuple]:
    source, chunks = FileSource(str(out)).discover()
    tables = [source.read(chunk) for chunk in chunks]
    return records([tuple(r[c] for c in COLUMNS) for t in tables for r in t.to_pylist()])


READERS = [read_pyarrow_dataset, read_pq, read_duckdb, read_polars, read_file_source]


def data_files(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != "_SUCCESS")


def leftovers(folder: Path, name: str) -> list[str]:
    """Staging or moved-aside copies of output `name` left beside it."""
    return [p.name for p in folder.iterdir() if p.name.startswith(f".{name}.")]


def test_tree_holds_one_file_per_chunk_and_value_without_the_partition_columns(data: Path, frame: pd.DataFrame):
    out = data.parent / "out"
    manifest = Pipeline().then(keep).run(
        FileSource(str(data), chunk_rows=200), DirectorySink(str(out), partition_by=("year", "month")), engine="sync"
    )

    chunks = np.array_split(np.arange(len(frame)), 3)  # a file a chunk
    want = sorted(
        f"year={y}/month={m}/part-{i:05d}.parquet"
        for i, rows in enumerate(chunks)
        for y, m in set(zip(frame["year"].iloc[rows], frame["month"].iloc[rows]))
    )
    assert data_files(out) == want
    for name in want:
        folder = dict(part.split("=") for part in name.split("/")[:-1])
        part = pq.read_table(out / name)
        assert part.column_names == ["id", "carrier", "day", "value"]
        rows = frame.set_index("id").loc[part.column("id").to_pylist()]
        assert set(rows["year"]) == {int(folder["year"])} and set(rows["month"]) == {int(folder["month"])}

    marker = Manifest.read(str(out))
    assert sorted(f["file"] for f in marker.files) == want
    assert all(f["rows"] == pq.read_metadata(out / f["file"]).num_rows for f in marker.files)
    assert all(f["bytes"] == os.path.getsize(out / f["file"]) for f in marker.files)
    assert marker.rows == manifest.rows == len(frame) == sum(f["rows"] for f in marker.files)
    assert marker.partition_by == ["year", "month"]
    assert [name for name, _ in marker.schema] == COLUMNS
    assert leftovers(data.parent, "out") == []


@pytest.mark.parametrize(
    "partition_by, engine",
    [(("year", "month"), "sync"), (("carrier",), "sync"), (("day", "carrier"), "processes")],
    ids=["ints", "special-strings-and-nulls", "dates-on-processes"],
)
def test_every_reader_gives_back_the_rows(data: Path, frame: pd.DataFrame, partition_by, engine):
    out = data.parent / "out"
    sink = sink_for(str(out), partition_by=list(partition_by))
    Pipeline().then(keep).run(FileSource(str(data), chunk_rows=200), sink, engine=engine, workers=2)

    want = expected(frame)
    for read in READERS:
        assert read(out) == want, read.__name__
    folders = {name.split("/")[0] for name in data_files(out)}
    if partition_by == ("carrier",):  # each value one folder level, null in the default partition
        assert folders == {"carrier=AA", "carrier=a%2Fb%20c", "carrier=x%3Dy%25z", "carrier=",
                           "carrier=__HIVE_DEFAULT_PARTITION__"}
    if partition_by[0] == "day":
        assert folders == {"day=2013-01-01", "day=2013-01-02", "day=2013-01-03"}


def test_csv_partitions_read_back(data: Path, frame: pd.DataFrame):
    out = data.parent / "out"
    Pipeline().then(keep).run(str(data), sink_for(str(out), format="csv", partition_by=["year"]), engine="sync")
    assert {name.split("/")[0] for name in data_files(out)} == {"year=2013", "year=2014"}
    assert all(name.endswith(".csv") for name in data_files(out))
    as_csv = frame.assign(carrier=frame["carrier"].fillna(""))  # CSV has no null text: it reads back as ""
    assert read_pyarrow_dataset(out, "csv") == expected(as_csv)


def test_a_reduction_writes_its_result_partitioned(data: Path, frame: pd.DataFrame):
    out = data.parent / "out"
    pipeline = Pipeline().then(aggregate, by=["year", "month"], aggs={"n": ["id", "count"]})
    pipeline.run(str(data), DirectorySink(str(out), partition_by=["year"]), engine="sync")
    assert data_files(out) == ["year=2013/part-00000.parquet", "year=2014/part-00000.parquet"]
    got = pq.read_table(str(out)).to_pandas()
    counts = frame.groupby(["year", "month"]).size()
    assert sorted(zip(got["year"], got["month"], got["n"])) == sorted((y, m, n) for (y, m), n in counts.items())


def test_append_moves_new_parts_into_the_tree_and_overwrite_replaces_it(data: Path, frame: pd.DataFrame):
    out = data.parent / "out"
    pipeline = Pipeline().then(keep)
    first = pipeline.run(str(data), DirectorySink(str(out), partition_by=["year"]), engine="sync")
    first_files = data_files(out)

    later = make_input(300, seed=2, years=(2014, 2015))  # 2015: a folder the tree does not have yet
    more = write_input(later, data.parent / "more", files=2)
    appended = pipeline.run(str(more), DirectorySink(str(out), "append", partition_by=["year"]), engine="sync")

    new_files = sorted(set(data_files(out)) - set(first_files))
    name = rf"year=201[45]/part-{appended.run_id}-\d{{5}}\.parquet"
    assert new_files and all(re.fullmatch(name, f) for f in new_files)
    assert {f.split("/")[0] for f in new_files} == {"year=2014", "year=2015"}
    marker = Manifest.read(str(out))
    assert sorted(f["file"] for f in marker.files) == data_files(out)
    assert marker.rows == first.rows + len(later) == len(frame) + len(later)
    both = pd.concat([frame, later], ignore_index=True)
    assert read_pyarrow_dataset(out) == read_duckdb(out) == expected(both)

    with pytest.raises(SinkError, match=r"partitioned by \['year'\]; cannot append parts partitioned by \['month'\]"):
        pipeline.run(str(more), DirectorySink(str(out), "append", partition_by=["month"]), engine="sync")
    assert sorted(f["file"] for f in Manifest.read(str(out)).files) == data_files(out)

    pipeline.run(str(data), DirectorySink(str(out), "overwrite", partition_by=["year"]), engine="sync")
    assert data_files(out) == first_files
    assert read_polars(out) == expected(frame)
    assert leftovers(data.parent, "out") == []


def test_a_failing_stage_leaves_no_output_and_no_staging(data: Path):
    out = data.parent / "out"
    sink = DirectorySink(str(out), partition_by=["year", "carrier"])
    with pytest.raises(StageError, match="bad chunk"):
        Pipeline().then(fail_on_last_chunk).run(FileSource(str(data), chunk_rows=200), sink, engine="sync")
    assert not out.exists()
    assert leftovers(data.parent, "out") == []


def test_a_partition_column_missing_from_the_data_names_it_and_the_chunk(data: Path):
    out = data.parent / "out"
    sink = DirectorySink(str(out), partition_by=["year", "month"])
    with pytest.raises(SinkError, match=r"column 'month' is not in the output of chunk 0 \(its columns: id, year,"):
        Pipeline().then(drop_month).run(FileSource(str(data), chunk_rows=200), sink, engine="sync")
    assert not out.exists()
    assert leftovers(data.parent, "out") == []


def test_partitioning_by_every_column_is_refused_naming_the_chunk(data: Path):
    out = data.parent / "out"
    sink = DirectorySink(str(out), partition_by=COLUMNS)
    with pytest.raises(SinkError, match="every column of chunk 0's output is a partition column"):
        Pipeline().then(keep).run(FileSource(str(data), chunk_rows=200), sink, engine="sync")
    assert not out.exists()
    assert leftovers(data.parent, "out") == []


def test_commit_sweeps_stray_files_and_folders_from_partition_subfolders(data: Path, frame: pd.DataFrame):
    """What a worker that died mid-write leaves (a temp file, a folder only it made) is not committed."""
    out = data.parent / "out"
    sink = DirectorySink(str(out), partition_by=["year", "month"]).for_run("run1")
    receipt = sink.write_part(frame, 0, {}, "frame")
    stray = Path(sink.staging) / "year=2013" / "month=1" / "part-00000.parquet.tmp-1-2"
    stray.write_bytes(b"half")
    orphan = Path(sink.staging) / "year=1999" / "month=9"
    orphan.mkdir(parents=True)
    (orphan / "part-00000.parquet.tmp-3-4").write_bytes(b"half")

    sink.commit([receipt])
    assert data_files(out) == sorted(name for name, _, _ in receipt.files)
    assert not (out / "year=1999").exists()
    assert read_pq(out) == expected(frame)


def test_a_receipt_lists_each_file_and_totals_them(data: Path, frame: pd.DataFrame):
    sink = DirectorySink(str(data.parent / "out"), partition_by=["year"]).for_run("run1")
    receipt = sink.write_part(frame, 3, {}, "frame")
    assert [name for name, _, _ in receipt.files] == [f"year={y}/part-00003.parquet" for y in frame["year"].unique()]
    assert receipt.file == receipt.files[0][0]
    assert receipt.rows == sum(rows for _, rows, _ in receipt.files) == len(frame)
    assert receipt.bytes == sum(size for _, _, size in receipt.files)
    sink.abort()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda out: sink_for(f"{out}.parquet", partition_by=["year"]), "names one file; partitioned output needs"),
        (lambda out: DirectorySink(out, partition_by=[]), "expected at least one column"),
        (lambda out: DirectorySink(out, partition_by="year"), "expected a list of column names"),
        (lambda out: DirectorySink(out, partition_by=["year", "year"]), "listed twice"),
        (lambda out: DirectorySink(out, partition_by=["_year"]), "'_year' cannot name a partition folder"),
        (lambda out: DirectorySink(out, partition_by=["a/b"]), "'a/b' cannot name a partition folder"),
    ],
)
def test_bad_partition_by_is_refused_in_python(tmp_path: Path, make, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        make(str(tmp_path / "out"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "sink, message",
    [
        ('path = "out.parquet"\npartition_by = ["year"]', "sink.partition_by: "),
        ('path = "out"\npartition_by = []', "sink.partition_by: expected at least one column"),
        ('path = "out"\npartition_by = ["year", "year"]', "sink.partition_by: a column is listed twice"),
    ],
)
def test_bad_partition_by_is_refused_by_the_config_in_one_line(data: Path, tmp_path: Path, sink: str, message: str):
    config = tmp_path / "job.toml"
    config.write_text(
        f'[source]\npath = "{data}"\n[[stages]]\nname = "keep"\nuses = "stages.clean:drop_nulls"\n[sink]\n{sink}\n'
    )
    with pytest.raises(ConfigError) as caught:
        load(config)
    assert str(caught.value).startswith(f"{config}: {message}") and "\n" not in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "job.toml"]


def test_config_partition_by_builds_a_partitioned_sink(data: Path, tmp_path: Path):
    config = tmp_path / "job.toml"
    config.write_text(
        f'[source]\npath = "{data}"\n[[stages]]\nname = "keep"\nuses = "stages.clean:drop_nulls"\n'
        '[sink]\npath = "out"\npartition_by = ["year", "month"]\n'
    )
    assert load(config).sink.partition_by == ("year", "month")
