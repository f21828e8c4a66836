"""Aggregates without keys (one row over the whole table, as `select sum(x), count(x) from t`), empty input
included, and the top-k reduction: any chunking gives pandas' answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import GroupAggregate, Pipeline
from pipeline.io import FileSource
from pipeline.stage import Stage
from pipeline.topk import TopK
from stages.analyze import aggregate, top
from stages.clean import filter_rows

AGGS = {
    "rows": ["delay", "size"],
    "delays": ["delay", "count"],
    "total": ["delay", "sum"],
    "miles": ["distance", "sum"],
    "mean": ["delay", "mean"],
    "lowest": ["delay", "min"],
    "highest": ["distance", "max"],
    "var": ["delay", "var"],
    "std": ["delay", "std"],
    "kinds": ["kind", "nunique"],
    "first": ["delay", "first"],
    "last": ["distance", "last"],
    "median": ["delay", "median"],
    "p90": ["distance", "quantile", 0.9],
}


def whole_table(df: pd.DataFrame) -> pd.DataFrame:
    """pandas over whole columns, one row."""
    delay, distance = df["delay"], df["distance"]
    present = delay.dropna()
    return pd.DataFrame({
        "rows": [len(df)], "delays": [delay.count()], "total": [delay.sum()], "miles": [distance.sum()],
        "mean": [delay.mean()], "lowest": [delay.min()], "highest": [distance.max()], "var": [delay.var()],
        "std": [delay.std()], "kinds": [df["kind"].nunique()], "first": [present.iloc[0]],
        "last": [distance.iloc[-1]], "median": [delay.median()], "p90": [distance.quantile(0.9)],
    })


NOTHING = pd.DataFrame({
    "rows": [0], "delays": [0], "total": [0.0], "miles": [0], "mean": [np.nan], "lowest": [np.nan],
    "highest": [np.nan], "var": [np.nan], "std": [np.nan], "kinds": [0], "first": [np.nan], "last": [np.nan],
    "median": [np.nan], "p90": [np.nan],
})


def test_without_keys_one_row_equals_pandas_over_whole_columns(table: pd.DataFrame):
    assert GroupAggregate(aggs=AGGS).by == () and GroupAggregate([], AGGS).by == ()
    pd.testing.assert_frame_equal(aggregate(table, aggs=AGGS), whole_table(table), check_exact=False, rtol=1e-12)
    result = Pipeline().then(aggregate, by=[], aggs=AGGS).run_frame(table, chunks=9)
    pd.testing.assert_frame_equal(result, whole_table(table), check_exact=False, rtol=1e-12)
    exact = [name for name in AGGS if name not in ("mean", "var", "std")]
    pd.testing.assert_frame_equal(result[exact], whole_table(table)[exact], check_exact=True)


def test_no_rows_give_one_row_of_zero_counts_and_sums(table: pd.DataFrame):
    pd.testing.assert_frame_equal(aggregate(table.iloc[:0], aggs=AGGS), NOTHING)
    result = Pipeline().then(aggregate, aggs=AGGS).run_frame(table.iloc[:0])
    pd.testing.assert_frame_equal(result, NOTHING)


def test_through_files_and_a_filter_that_keeps_nothing(dataset: Path, table: pd.DataFrame, tmp_path: Path):
    some = Pipeline().then(filter_rows, where="distance > 2000").then(aggregate, aggs=AGGS)
    some.run(FileSource(str(dataset), chunk_rows=500), str(tmp_path / "some.parquet"), engine="sync")
    expected = whole_table(table[table["distance"] > 2000])
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "some.parquet"), expected, check_exact=False, rtol=1e-12)
    none = Pipeline().then(filter_rows, where="distance < 0").then(aggregate, aggs=AGGS)
    none.run(FileSource(str(dataset), chunk_rows=500), str(tmp_path / "none.parquet"), engine="sync")
    assert pq.read_metadata(tmp_path / "none.parquet").num_rows == 1
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "none.parquet"), NOTHING)


@pytest.mark.parametrize("lazy", [False, True])
def test_polars_partials_without_keys_give_the_pandas_answer(table: pd.DataFrame, lazy: bool):
    agg = GroupAggregate(aggs=AGGS)
    frames = [pl.from_pandas(table.iloc[i : i + 700]) for i in range(0, len(table), 700)]
    frames = [frame.lazy() if lazy else frame for frame in frames]
    result = agg.finalize(agg.combine([agg.partial(frame) for frame in frames]))
    pd.testing.assert_frame_equal(result, whole_table(table), check_exact=False, rtol=1e-12)
    empty = agg.finalize(agg.combine([agg.partial(frames[0].filter(pl.col("distance") < 0))]))
    pd.testing.assert_frame_equal(empty, NOTHING)


def test_a_column_named_like_nothing_special_is_not_confused_with_the_whole_table_key():
    df = pd.DataFrame({"_": [1, 2, 3], "__": [4.0, 5.0, None]})
    agg = GroupAggregate(aggs={"a": ["_", "sum"], "b": ["__", "median"], "n": ["__", "nunique"]})
    expected = pd.DataFrame({"a": [6], "b": [4.5], "n": [2]})
    pd.testing.assert_frame_equal(agg.apply(df), expected)
    pd.testing.assert_frame_equal(agg.finalize(agg.partial(pl.from_pandas(df))), expected)


# --- top k ---------------------------------------------------------------------------------------------------------

@st.composite
def rows(draw: st.DrawFn) -> pd.DataFrame:
    """Few distinct keys (ties everywhere), missing values, a row number to tell tied rows apart."""
    n = draw(st.integers(0, 50))
    column = lambda values: draw(st.lists(values, min_size=n, max_size=n))  # noqa: E731
    return pd.DataFrame({
        "row": np.arange(n, dtype="int64"),
        "score": pd.Series(column(st.one_of(st.none(), st.integers(-3, 3).map(float))), dtype="float64"),
        "level": pd.Series(column(st.integers(0, 2)), dtype="int64"),
        "name": pd.Series(column(st.sampled_from(["a", "b", "c"])), dtype="str"),
    })


def boundaries(draw: st.DrawFn, length: int) -> list[int]:
    return [0, *sorted(draw(st.lists(st.integers(0, length), max_size=6))), length]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(df=rows(), k=st.integers(0, 12), by=st.lists(st.sampled_from(["score", "level", "name"]), min_size=1,
       max_size=3, unique=True), data=st.data())
def test_top_k_of_any_chunking_is_the_stable_sort_head(df: pd.DataFrame, k: int, by: list[str], data: st.DataObject):
    ascending = data.draw(st.one_of(st.booleans(), st.lists(st.booleans(), min_size=len(by), max_size=len(by))))
    reduction = TopK(k, by if len(by) > 1 else by[0], ascending)
    bounds = boundaries(data.draw, len(df))
    parts = [reduction.partial(df.iloc[a:b]) for a, b in zip(bounds, bounds[1:])]
    while len(parts) > 1:
        size = data.draw(st.integers(2, 4))
        parts = [reduction.combine(parts[i : i + size]) for i in range(0, len(parts), size)]
    expected = df.sort_values(by, ascending=ascending, kind="stable", na_position="last").head(k)
    pd.testing.assert_frame_equal(reduction.finalize(parts[0]), expected.reset_index(drop=True))


def test_top_stage_in_a_pipeline_reads_every_column(dataset: Path, table: pd.DataFrame, tmp_path: Path):
    assert Stage(top, params={"k": 5, "by": "delay"}).reads() is None
    pipeline = Pipeline().then(top, k=25, by=["distance", "delay"], ascending=[False, True])
    pipeline.run(FileSource(str(dataset), chunk_rows=500), str(tmp_path / "top.parquet"), engine="sync")
    expected = table.sort_values(["distance", "delay"], ascending=[False, True], kind="stable", na_position="last")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "top.parquet"), expected.head(25).reset_index(drop=True),
                                  check_categorical=False)
    assert top(table, 3, "delay").equals(table.sort_values("delay", ascending=False, kind="stable").head(3)
                                         .reset_index(drop=True))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"k": -1, "by": "a"}, "k must be a whole number"),
        ({"k": 2.5, "by": "a"}, "k must be a whole number"),
        ({"k": True, "by": "a"}, "k must be a whole number"),
        ({"k": 3, "by": []}, "by must be a column name or a non-empty list"),
        ({"k": 3, "by": ["a", 1]}, "by must be a column name or a non-empty list"),
        ({"k": 3, "by": ["a", "b"], "ascending": [True]}, "one per column of by"),
        ({"k": 3, "by": "a", "ascending": "yes"}, "ascending must be true/false"),
    ],
)
def test_bad_top_params_are_refused_before_running(params: dict, message: str):
    with pytest.raises(ValueError, match=message):
        Stage(top, params=params).check_params()


def test_top_names_a_missing_column():
    with pytest.raises(KeyError, match="top: missing column.*'fare'"):
        top(pd.DataFrame({"a": [1]}), 1, "fare")
