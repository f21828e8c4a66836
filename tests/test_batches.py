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
import pytest

from pipeline import GroupAggregate, Pipeline, declare
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
