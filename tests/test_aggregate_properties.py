"""Property: for any table and any chunking and any combine-tree shape, the tree aggregate equals pandas'
group-by over the whole table, for every function — categorical keys, null keys and values, empty chunks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import Pipeline
from pipeline.aggregate import FUNCTIONS, GroupAggregate
from stages.analyze import aggregate

KEYS = ["s", "n", "c"]


@st.composite
def tables(draw: st.DrawFn) -> pd.DataFrame:
    rows = draw(st.integers(0, 60))
    s = draw(st.lists(st.sampled_from(["a", "b", "c", None]), min_size=rows, max_size=rows))
    n = draw(st.lists(st.integers(0, 3), min_size=rows, max_size=rows))
    c = draw(st.lists(st.sampled_from(["x", "y", "z"]), min_size=rows, max_size=rows))
    # quarter-integers: sums are exact in any order, so only var/std need a tolerance
    v = draw(st.lists(st.one_of(st.none(), st.integers(-400, 400).map(lambda i: i / 4)), min_size=rows, max_size=rows))
    i = draw(st.lists(st.integers(-1000, 1000), min_size=rows, max_size=rows))
    return pd.DataFrame(
        {
            "s": pd.Series(s, dtype="str"),
            "n": pd.Series(n, dtype="int64"),
            "c": pd.Categorical(c, categories=["z", "x", "y"]),
            "v": pd.Series([np.nan if x is None else x for x in v], dtype="float64"),
            "i": pd.Series(i, dtype="int64"),
        }
    )


def cuts(draw: st.DrawFn, length: int) -> list[int]:
    """Chunk boundaries, empty chunks allowed."""
    inner = draw(st.lists(st.integers(0, length), max_size=6))
    return [0, *sorted(inner), length]


def tree_combine(agg: GroupAggregate, parts: list, draw: st.DrawFn):
    """Combine in chunk order, in groups of random size, until one is left."""
    while len(parts) > 1:
        size = draw(st.integers(2, 4))
        parts = [agg.combine(parts[j : j + size]) for j in range(0, len(parts), size)]
    return parts[0]


def expected(df: pd.DataFrame, by: list[str], aggs: dict) -> pd.DataFrame:
    return df.groupby(by, observed=True).agg(**{k: tuple(v) for k, v in aggs.items()}).reset_index()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(df=tables(), by=st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True), data=st.data())
def test_any_chunking_gives_the_pandas_answer(df: pd.DataFrame, by: list[str], data: st.DataObject):
    values = [c for c in ("v", "i") if c not in by]
    aggs = {f"{column}_{fn}": [column, fn] for column in values for fn in FUNCTIONS}
    aggs["c_nunique"] = ["c", "nunique"]
    agg = GroupAggregate(by, aggs)
    bounds = cuts(data.draw, len(df))
    parts = [agg.partial(df.iloc[a:b]) for a, b in zip(bounds, bounds[1:])]
    result = agg.finalize(tree_combine(agg, parts, data.draw))
    want = expected(df, by, aggs)
    if len(want) == 0:  # pandas' dtypes for an empty group-by are not meaningful; the shape is
        assert len(result) == 0 and list(result.columns) == list(want.columns)
        return
    pd.testing.assert_frame_equal(result, want, check_exact=False, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("fn", FUNCTIONS)
@settings(max_examples=40, deadline=None)
@given(df=tables(), chunks=st.integers(1, 8))
def test_each_function_through_a_pipeline(fn: str, df: pd.DataFrame, chunks: int):
    df = df[df["s"].notna()]
    if df.empty:
        return
    aggs = {"out": ["v", fn]}
    result = Pipeline().then(aggregate, by=["s"], aggs=aggs).run_frame(df, chunks=chunks)
    pd.testing.assert_frame_equal(result, expected(df, ["s"], aggs), check_exact=False, rtol=1e-9, atol=1e-9)


def test_categories_that_differ_between_chunks_are_unioned():
    a = pd.DataFrame({"k": pd.Categorical(["b", "a"]), "v": [1, 2]})
    b = pd.DataFrame({"k": pd.Categorical(["c", "a"]), "v": [3, 4]})
    agg = GroupAggregate(["k"], {"total": ["v", "sum"]})
    result = agg.finalize(agg.combine([agg.partial(a), agg.partial(b)]))
    assert list(result["k"]) == ["a", "b", "c"] and list(result["total"]) == [6, 1, 3]
    assert isinstance(result["k"].dtype, pd.CategoricalDtype)


@pytest.mark.parametrize(
    "by, aggs, message",
    [
        ([], {"n": ["v", "count"]}, "'by' must be a non-empty list"),
        (["k"], {}, "'aggs' must be a non-empty table"),
        (["k"], {"n": ["v", "median"]}, "unknown function 'median'"),
        (["k"], {"n": "v"}, "must be [column, function]"),
    ],
)
def test_bad_aggregate_params_are_refused_before_running(by, aggs, message):
    with pytest.raises(ValueError) as caught:
        GroupAggregate(by, aggs)
    assert message in str(caught.value)
