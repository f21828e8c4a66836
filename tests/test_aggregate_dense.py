"""The numpy path for keys with few possible values gives the pandas path's states, group for group: integer
keys (negative ones too), categorical keys with unused categories and missing values, NaN values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.aggregate import GroupAggregate
from pipeline.aggregate_dense import MOST_GROUPS, dense_partial

AGGS = {"n": ["v", "count"], "rows": ["v", "size"], "total": ["v", "sum"], "avg": ["v", "mean"],
        "low": ["v", "min"], "high": ["v", "max"], "w_top": ["w", "max"]}


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    rows = draw(st.integers(1, 80))
    ints = st.integers(-3, 3)
    values = st.one_of(st.none(), st.integers(-400, 400).map(lambda i: i / 4))
    return pd.DataFrame({
        "k": pd.Series(draw(st.lists(ints, min_size=rows, max_size=rows)), dtype=draw(st.sampled_from(["int8", "int64"]))),
        "c": pd.Categorical(draw(st.lists(st.sampled_from(["x", "y", None]), min_size=rows, max_size=rows)),
                            categories=["z", "x", "y"]),
        "v": pd.Series([np.nan if x is None else x for x in draw(st.lists(values, min_size=rows, max_size=rows))]),
        "w": pd.Series([np.nan if x is None else x for x in draw(st.lists(values, min_size=rows, max_size=rows))]),
    })


def pandas_partial(agg: GroupAggregate, df: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    """The state pandas' own group-by computes (the other paths switched off)."""
    with monkeypatch.context() as patched:
        patched.setattr("pipeline.aggregate.dense_partial", lambda *_: None)
        patched.setattr("pipeline.aggregate.arrow_partial", lambda *_: None)
        return agg.partial(df).frame


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(df=frames(), by=st.sampled_from([["k"], ["c"], ["k", "c"], ["c", "k"]]))
def test_dense_states_are_the_pandas_states(df: pd.DataFrame, by: list[str], monkeypatch: pytest.MonkeyPatch):
    agg = GroupAggregate(by=by, aggs=AGGS)
    state = dense_partial(agg, df)
    assert state is not None
    expected = pandas_partial(agg, df, monkeypatch)
    got = state.frame.reindex(expected.index)
    assert len(state.frame) == len(expected)
    pd.testing.assert_frame_equal(got, expected[got.columns], check_exact=True)
    pd.testing.assert_frame_equal(agg.finalize(state), agg.finalize(agg.partial(df)))


@pytest.mark.parametrize("case", ["strings", "nullable ints", "first", "wide keys", "int values", "huge unsigned"])
def test_other_chunks_are_left_to_pandas_or_arrow(case: str):
    df = pd.DataFrame({"k": [1, 2, 2], "v": [1.0, 2.0, 3.0]})
    by, aggs = ["k"], {"s": ["v", "sum"]}
    if case == "strings":
        df["k"] = ["a", "b", "b"]
    elif case == "nullable ints":
        df["k"] = df["k"].astype("Int64")
    elif case == "first":
        aggs = {"s": ["v", "first"]}
    elif case == "wide keys":
        df["k"] = [0, MOST_GROUPS, 5]
    elif case == "huge unsigned":
        df["k"] = np.array([2**64 - 1, 2**64 - 2, 2**64 - 2], dtype=np.uint64)
    else:
        df["v"] = [1, 2, 3]
    assert dense_partial(GroupAggregate(by=by, aggs=aggs), df) is None
