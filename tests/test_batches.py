"""Stages over Arrow tables and Polars frames, conversions only where formats change, and column
projection inferred from what stages declare they read."""

from __future__ import annotations

import sys
from pathlib import Path

import cloudpickle
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipeline import GroupAggregate, Pipeline, StageError, declare
from pipeline.io import FileSource, MemorySink
from pipeline.plan import compile_plan
from stages.analyze import aggregate

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # cluster workers cannot import tests
SEEN: list[str] = []


@declare(batch="arrow", reads=["distance", "delay"])
def long_arrow(table: pa.Table) -> pa.Table:
    SEEN.append(type(table).__name__)
    return table.filter(pc.greater_equal(table["distance"], 1000))


@declare(batch="polars", reads=["delay"])
def score_polars(df: pl.DataFrame) -> pl.DataFrame:
    SEEN.append(type(df).__name__)
    return df.with_columns(score=pl.col("delay").fill_null(0) * 2)


def score_pandas(df: pd.DataFrame) -> pd.DataFrame:
    SEEN.append(type(df).__name__)
    return df.assign(score=df["delay"].fillna(0) * 2)


def test_arrow_then_polars_then_aggregate_equals_pandas(engine, dataset: Path, table: pd.DataFrame, tmp_path: Path):
    aggs = {"n": ["score", "count"], "total": ["score", "sum"], "worst": ["score", "max"]}
    pipeline = Pipeline().then(long_arrow).then(score_polars).then(aggregate, by=["carrier"], aggs=aggs)
    pipeline.run(str(dataset), str(tmp_path / "a.parquet"), engine)
    expected = aggregate(score_pandas(table[table["distance"] >= 1000]), by=["carrier"], aggs=aggs)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), expected)


def test_each_stage_gets_its_own_format_and_parts_are_written_from_any(dataset: Path, tmp_path: Path):
    SEEN.clear()
    pipeline = Pipeline().then(long_arrow).then(score_polars).then(score_pandas, name="again")
    pipeline.run(str(dataset), str(tmp_path / "out"), "sync")
    assert SEEN[:3] == ["Table", "DataFrame", "DataFrame"]
    polars_only = Pipeline().then(long_arrow).then(score_polars)
    polars_only.run(str(dataset), str(tmp_path / "out2"), "sync")
    got = pd.read_parquet(tmp_path / "out2")
    assert list(got.columns)[-1] == "score" and (got["distance"] >= 1000).all()


def test_a_stage_returning_the_wrong_format_is_named():
    @declare(batch="arrow")
    def wrong(table: pa.Table) -> pd.DataFrame:
        return table.to_pandas()

    with pytest.raises(Exception, match="stage 'wrong' failed.*returned pandas, but declares batch format 'arrow'"):
        Pipeline().then(wrong).run_frame(pd.DataFrame({"a": [1]}))


def test_projection_is_inferred_only_when_every_stage_declares(dataset: Path):
    declared = Pipeline().then(long_arrow).then(aggregate, by=["carrier"], aggs={"n": ["delay", "count"]})
    source, chunks = FileSource(str(dataset)).discover()
    plan = compile_plan(declared.stages, source, chunks, MemorySink())
    assert plan.tasks["chunk-00000"].args[0].columns == ("carrier", "delay", "distance")  # schema order

    undeclared = Pipeline().then(score_pandas).then(aggregate, by=["carrier"], aggs={"n": ["score", "count"]})
    plan = compile_plan(undeclared.stages, source, chunks, MemorySink())
    assert plan.tasks["chunk-00000"].args[0].columns is None

    no_reduction = Pipeline().then(long_arrow)
    plan = compile_plan(no_reduction.stages, source, chunks, MemorySink())
    assert plan.tasks["chunk-00000"].args[0].columns is None  # every column passes through to the output


def test_polars_chunks_are_reduced_by_polars_with_the_pandas_answer(table: pd.DataFrame):
    """Every function, null values and keys, NaN produced inside Polars: same frame as pandas."""
    from pipeline.aggregate import FUNCTIONS

    df = table.assign(carrier=table["carrier"].where(table["id"] % 17 != 0))  # some null keys
    aggs = {f"{c}_{fn}": [c, fn] for c in ("delay", "distance") for fn in FUNCTIONS}
    agg = GroupAggregate(["carrier", "month"], aggs)
    chunks = [pl.from_pandas(df.iloc[i : i + 700]) for i in range(0, len(df), 700)]
    result = agg.finalize(agg.combine([agg.partial(c) for c in chunks]))
    expected = aggregate(df, by=["carrier", "month"], aggs=aggs)
    pd.testing.assert_frame_equal(result, expected, check_exact=False, rtol=1e-9)
    # Polars partials and pandas partials interleaved (chunk order matters for first/last): the same answer
    mixed = [agg.partial(c if i % 3 else c.to_pandas()) for i, c in enumerate(chunks)]
    assert {type(p.frame).__module__.split(".")[0] for p in mixed} == {"pandas", "polars"}
    pd.testing.assert_frame_equal(agg.finalize(agg.combine(mixed)), expected, check_exact=False, rtol=1e-9)


@declare(batch="polars-lazy")
def long_scored_lazy(df: pl.LazyFrame) -> pl.LazyFrame:
    SEEN.append(type(df).__name__)
    return df.filter(pl.col("distance") >= 1000).with_columns(score=pl.col("delay").fill_null(0) * 2)


@pytest.mark.parametrize("chunk_rows", [500, 1000, 10**6])  # a row group a chunk (a slice), slices of 2 files, 4 files
def test_lazy_polars_stages_then_aggregate_equal_pandas(engine, dataset: Path, table: pd.DataFrame, tmp_path: Path,
                                                        chunk_rows: int):
    from pipeline.aggregate import FUNCTIONS

    aggs = {f"{c}_{fn}": [c, fn] for c in ("score", "delay") for fn in FUNCTIONS}
    pipeline = Pipeline().then(long_scored_lazy).then(aggregate, by=["carrier", "month"], aggs=aggs)
    pipeline.run(FileSource(str(dataset), chunk_rows=chunk_rows), str(tmp_path / "a.parquet"), engine)
    expected = aggregate(score_pandas(table[table["distance"] >= 1000]), by=["carrier", "month"], aggs=aggs)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), expected, check_exact=False, rtol=1e-9)


def test_lazy_polars_parts_are_collected_when_written(dataset: Path, table: pd.DataFrame, tmp_path: Path):
    SEEN.clear()
    manifest = Pipeline().then(long_scored_lazy).run(FileSource(str(dataset), chunk_rows=500), str(tmp_path / "out"),
                                                     "sync")
    assert set(SEEN) == {"LazyFrame"}  # the stage got a scan of the chunk, not data
    got = pd.read_parquet(tmp_path / "out")
    expected = score_pandas(table[table["distance"] >= 1000]).reset_index(drop=True)
    # Polars categoricals keep their values, not pandas' category order
    pd.testing.assert_frame_equal(got[list(expected.columns)], expected, check_dtype=False, check_categorical=False)
    assert manifest.rows == len(expected) and manifest.stats["write"].rows_out == len(expected)
    assert manifest.stats["long_scored_lazy"].rows_out is None  # not counted: never materialised on its own


def test_a_chunk_is_scanned_by_polars_only_where_the_scan_is_exact(dataset: Path, table: pd.DataFrame,
                                                                    tmp_path: Path):
    source, chunks = FileSource(str(dataset), chunk_rows=500).discover()
    spanning = FileSource(str(dataset), chunk_rows=1000).discover()[1][1:2]  # a file's tail, the next one's head
    for chunk in [*chunks[:3], *spanning, *FileSource(str(dataset)).discover()[1]]:
        scanned = source.scan(chunk).collect().to_pandas()
        pd.testing.assert_frame_equal(scanned, source.read(chunk).to_pandas(), check_dtype=False,
                                      check_categorical=False)
    filtered, some = FileSource(str(dataset), filters=[("month", ">", 6)]).discover()
    skipping, more = FileSource(str(dataset), on_bad_file="skip").discover()
    assert filtered.scan(some[0]) is None and skipping.scan(more[0]) is None  # pyarrow reads those
    pq.write_to_dataset(pa.Table.from_pandas(table.head(300), preserve_index=False), tmp_path / "hive",
                        partition_cols=["carrier"])
    hive, parts = FileSource(str(tmp_path / "hive")).discover()
    assert hive.scan(parts[0]) is None  # the partition column comes from the path: pyarrow adds it


def test_chunk_size_left_open_is_chosen_for_the_first_stage(dataset: Path, monkeypatch: pytest.MonkeyPatch):
    """Unset, chunk_rows is the source's default for eager stages and bigger for a chain that starts lazy;
    set, it holds for every chain."""
    from pipeline import plan as plan_module
    from pipeline.io import source as source_module

    monkeypatch.setattr(source_module, "DEFAULT_CHUNK_ROWS", 1000)
    monkeypatch.setattr(plan_module, "LAZY_CHUNK_ROWS", 3000)
    eager, lazy = Pipeline().then(score_pandas).stages, Pipeline().then(long_scored_lazy).stages
    assert [len(plan_module.discover(s, FileSource(str(dataset)))[1]) for s in (eager, lazy)] == [6, 2]
    assert [len(plan_module.discover(s, FileSource(str(dataset), chunk_rows=1500))[1]) for s in (eager, lazy)] == [4, 4]


@declare(batch="polars-lazy")
def needs_missing_column(df: pl.LazyFrame) -> pl.LazyFrame:
    return df.with_columns(x=pl.col("no_such_column") * 2)


def test_a_lazy_chain_failing_when_written_names_the_stage_and_file(dataset: Path, tmp_path: Path):
    with pytest.raises(StageError) as caught:
        Pipeline().then(needs_missing_column).run(FileSource(str(dataset)), str(tmp_path / "out"), "sync")
    first = str(caught.value).splitlines()[0]
    assert "stage 'needs_missing_column' failed on chunk 0 (input" in first and "no_such_column" in first
    assert not (tmp_path / "out").exists()
