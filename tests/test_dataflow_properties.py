"""Properties of the dataset-graph API against pandas, for random tables cut into random chunks (in-memory
frames, or Parquet files with random row-group sizes): every join kind, on every strategy, has the rows of
the SQL join (null keys never match); a sort is pandas' stable sort, row for row; deduplicate keeps the rows
pandas keeps after a stable sort by `order_by`."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.dataset import Dataset, from_frame, read
from pipeline.engines import get_engine
from test_dataflow import BROADCASTABLE, HOWS, assert_same_rows, canonical, expected_join

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

INTS = [-2, 0, 1, 3, None]
TEXTS = ["a", "b", "c", None]
FLOATS = [-1.5, 0.0, 2.25, 7.0, float("nan")]


@pytest.fixture(scope="module", params=["threads", "processes"])
def engine(request: pytest.FixtureRequest) -> Iterator:
    """In this module, in place of the six-engine fixture: threads and processes, two workers, one engine
    shared by every example."""
    with get_engine(request.param, workers=2) as built:
        yield built


@st.composite
def frames(draw: st.DrawFn, id_name: str = "id", max_rows: int = 40) -> pd.DataFrame:
    """Rows with a nullable int key, a nullable text key, a float with NaN and a unique row id."""
    rows = draw(st.integers(0, max_rows))

    def pick(values: list) -> list:
        return draw(st.lists(st.sampled_from(values), min_size=rows, max_size=rows))

    return pd.DataFrame({
        "k1": pd.array(pick(INTS), dtype="Int64"),
        "k2": pd.Series(pick(TEXTS), dtype=object),
        "v": pd.Series(pick(FLOATS), dtype="float64"),
        id_name: np.arange(rows, dtype="int64"),
    })


@st.composite
def chunkings(draw: st.DrawFn) -> tuple[str, int]:
    """How a table becomes a dataset: ("frame", chunks) or ("parquet", row-group rows)."""
    return draw(st.sampled_from(["frame", "parquet"])), draw(st.integers(1, 12))


def as_dataset(df: pd.DataFrame, chunking: tuple[str, int], folder: str, name: str) -> Dataset:
    kind, size = chunking
    if kind == "frame":
        return from_frame(df, chunks=size, name=name)
    path = os.path.join(folder, name)
    os.makedirs(path)
    table = pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(table, os.path.join(path, "data.parquet"), row_group_size=size)
    return read(path, chunk_rows=size, name=name)


def stored(df: pd.DataFrame, chunking: tuple[str, int]) -> pd.DataFrame:
    """`df` as the dataset holds it: through Arrow, as a Parquet file would keep it."""
    return pa.Table.from_pandas(df, preserve_index=False).to_pandas() if chunking[0] == "parquet" else df


@st.composite
def joins(draw: st.DrawFn) -> dict:
    how = draw(st.sampled_from(HOWS))
    strategies = ["auto", "shuffle"] + (["broadcast"] if how in BROADCASTABLE else [])
    return {
        "how": how,
        "strategy": draw(st.sampled_from(strategies)),
        "keys": draw(st.sampled_from([["k1"], ["k2"], ["k1", "k2"], ["k2", "k1"]])),
        "renamed": draw(st.booleans()),
    }


@SETTINGS
@given(left=frames(), right=frames(id_name="rid"), left_chunks=chunkings(), right_chunks=chunkings(), join=joins())
def test_every_join_equals_the_sql_join_in_pandas(engine, left: pd.DataFrame, right: pd.DataFrame,
                                                  left_chunks: tuple[str, int], right_chunks: tuple[str, int],
                                                  join: dict):
    left_on = join["keys"]
    right_on = [f"r_{k}" for k in left_on] if join["renamed"] else left_on
    right = right.rename(columns=dict(zip(left_on, right_on)))
    with tempfile.TemporaryDirectory() as folder:
        lhs = as_dataset(left, left_chunks, folder, "left")
        rhs = as_dataset(right, right_chunks, folder, "right")
        result = lhs.join(rhs, left_on=left_on, right_on=right_on, how=join["how"],
                          strategy=join["strategy"]).collect(engine)
    expected = expected_join(stored(left, left_chunks), stored(right, right_chunks), left_on, right_on, join["how"])
    assert_same_rows(result, expected)


@SETTINGS
@given(df=frames(), chunking=chunkings(),
       by=st.lists(st.sampled_from(["k1", "k2", "v"]), min_size=1, max_size=3, unique=True), data=st.data())
def test_sort_is_the_stable_pandas_sort_row_for_row(engine, df: pd.DataFrame, chunking: tuple[str, int],
                                                    by: list[str], data: st.DataObject):
    ascending = data.draw(st.lists(st.booleans(), min_size=len(by), max_size=len(by)))
    with tempfile.TemporaryDirectory() as folder:
        result = as_dataset(df, chunking, folder, "table").sort(by, ascending=ascending).collect(engine)
    expected = stored(df, chunking).sort_values(by, ascending=ascending, kind="stable", na_position="last")
    assert result["id"].tolist() == expected["id"].tolist()
    pd.testing.assert_frame_equal(canonical(result, keep_order=True), canonical(expected, keep_order=True))


@SETTINGS
@given(df=frames(), chunking=chunkings(),
       by=st.lists(st.sampled_from(["k1", "k2"]), min_size=1, max_size=2, unique=True),
       keep=st.sampled_from(["first", "last"]), order_by=st.sampled_from([None, "v", "id"]))
def test_deduplicate_keeps_the_rows_pandas_keeps(engine, df: pd.DataFrame, chunking: tuple[str, int],
                                                 by: list[str], keep: str, order_by: str | None):
    with tempfile.TemporaryDirectory() as folder:
        result = as_dataset(df, chunking, folder, "table").deduplicate(by, keep=keep, order_by=order_by).collect(engine)
    table = stored(df, chunking)
    ordered = table.sort_values(order_by, kind="stable") if order_by else table
    expected = ordered.drop_duplicates(by, keep=keep)
    assert_same_rows(result, expected)
