"""Bad input files, made for real: empty, truncated, corrupt page, not Parquet, conflicting schemas.
Each is named without a traceback and nothing is committed; with on_bad_file = "skip" they are left out
and listed in the manifest."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import spawned
from pipeline import Pipeline
from pipeline.errors import BadInputFiles, InputError
from pipeline.io import FileSource, Manifest
from stages.analyze import aggregate

PIPELINE = str(Path(sys.executable).parent / "pipeline")


def keep(df: pd.DataFrame) -> pd.DataFrame:
    return df


@pytest.fixture
def folder(dataset: Path, tmp_path: Path) -> Path:
    """A copy of the good dataset to spoil."""
    return Path(shutil.copytree(dataset, tmp_path / "in"))


def spoil(folder: Path, how: str) -> Path:
    good = (folder / "data-000.parquet").read_bytes()
    target = folder / "data-900.parquet"
    if how == "empty":
        target.write_bytes(b"")
    elif how == "truncated":
        target.write_bytes(good[: len(good) // 2])
    elif how == "not parquet":
        target.write_text("id,carrier\n1,AA\n")
    elif how == "type conflict":
        table = pq.read_table(folder / "data-000.parquet")
        pq.write_table(table.set_column(0, "id", table["id"].cast(pa.string())), target)
    elif how == "column conflict":
        pq.write_table(pq.read_table(folder / "data-000.parquet").drop_columns(["delay"]), target)
    return target


EXPECTED = {
    "empty": "empty file (0 bytes)",
    "truncated": "not a Parquet file, or truncated (no Parquet footer)",
    "not parquet": "not a Parquet file, or truncated (no Parquet footer)",
    "type conflict": "field 'id' is string here but int64 in",
    "column conflict": "missing column(s) delay",
}


@pytest.mark.parametrize("how", list(EXPECTED))
def test_bad_file_is_named_and_nothing_is_committed(folder: Path, tmp_path: Path, how: str):
    bad = spoil(folder, how)
    out = tmp_path / "out"
    Pipeline().then(keep).run(str(folder / "data-001.parquet"), str(out), "sync")  # yesterday's output
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(BadInputFiles) as caught:
        Pipeline().then(keep).run(str(folder), str(out), "processes", mode="overwrite")
    assert caught.value.problems == [(str(bad), caught.value.problems[0][1])]
    assert EXPECTED[how] in caught.value.problems[0][1]
    assert sorted(p.name for p in out.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]


def test_every_bad_file_is_named_in_one_message_from_the_cli(folder: Path, tmp_path: Path):
    spoil(folder, "empty")
    (folder / "data-901.parquet").write_text("hello")
    config = tmp_path / "job.toml"
    config.write_text(f'[source]\npath = "{folder}"\n[[stages]]\nname = "k"\nuses = "stages.clean:drop_nulls"\n'
                      f'[sink]\npath = "{tmp_path / "out"}"\n')
    result = spawned.run([PIPELINE, "run", str(config), "--quiet"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "2 bad input file(s):" in result.stderr
    assert "data-900.parquet: empty file (0 bytes)" in result.stderr and "data-901.parquet: not a Parquet" in result.stderr
    assert 'on_bad_file = "skip"' in result.stderr
    assert not (tmp_path / "out").exists()


def test_corrupt_page_is_named_with_its_chunk(folder: Path, tmp_path: Path):
    target = folder / "data-002.parquet"
    data = bytearray(target.read_bytes())
    for offset in range(200, 2200):  # inside the first row group's pages, footer left intact
        data[offset] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(InputError) as caught:
        Pipeline().then(keep).run(FileSource(str(folder), chunk_rows=500), str(tmp_path / "out"), "processes")
    assert "data-002.parquet (row group 0)" in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_skip_leaves_bad_files_out_and_lists_them(folder: Path, table: pd.DataFrame, tmp_path: Path):
    bad = spoil(folder, "truncated")
    target = folder / "data-002.parquet"
    data = bytearray(target.read_bytes())
    for offset in range(200, 2200):
        data[offset] ^= 0xFF
    target.write_bytes(bytes(data))
    source = FileSource(str(folder), on_bad_file="skip", chunk_rows=10**6)
    pipeline = Pipeline().then(aggregate, by=["carrier"], aggs={"n": ["id", "count"]})
    manifest = pipeline.run(source, str(tmp_path / "agg.parquet"), "processes")
    assert [why[:40] for _, why in manifest.skipped][:1] == [EXPECTED["truncated"][:40]]
    assert [Path(f).name for f, _ in manifest.skipped] == [bad.name, "data-002.parquet (row groups 0-2)"]
    assert Manifest.read(str(tmp_path / "agg.parquet")).skipped == manifest.skipped
    kept = table.iloc[list(range(0, 3000)) + list(range(4500, 6000))]
    assert pd.read_parquet(tmp_path / "agg.parquet")["n"].sum() == len(kept)
