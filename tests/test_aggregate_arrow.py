"""The Arrow-computed group-by states (`pipeline.aggregate_arrow`) give pandas' answer: NaN as missing, null
keys dropped, a sum over no values 0, decimals exact; and they combine with states pandas computed."""

from __future__ import annotations

import pickle
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipeline import aggregate
from pipeline.aggregate import GroupAggregate

AGGS = {"n": ["v", "count"], "total": ["v", "sum"], "avg": ["v", "mean"], "low": ["i", "min"],
        "high": ["i", "max"], "rows": ["v", "size"]}


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"k": ["a", "b", "a", None, "b", "c"], "v": [1.5, np.nan, 4.0, 5.0, np.nan, 2.0],
                         "i": [3, 2, 1, 4, 5, 6]})


def _expected(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    named = {out: (column, fn) for out, (column, fn) in AGGS.items()}
    return df.groupby(by, observed=True).agg(**named).reset_index()


def test_arrow_states_give_the_pandas_answer_over_any_split():
    df, agg = _frame(), GroupAggregate(by=["k"], aggs=AGGS)
    assert isinstance(agg.partial(df).frame, pa.Table), "this aggregate should take the Arrow path"
    for cut in range(len(df) + 1):
        got = agg.finalize(agg.combine([agg.partial(df[:cut]), agg.partial(df[cut:])]))
        pd.testing.assert_frame_equal(got, _expected(df, ["k"]))


def test_arrow_states_combine_with_states_pandas_computed(monkeypatch: pytest.MonkeyPatch):
    df, agg = _frame(), GroupAggregate(by=["k"], aggs=AGGS)
    arrow_state = agg.partial(df[:3])
    monkeypatch.setattr(aggregate, "arrow_partial", lambda *_: None)  # as for a chunk Arrow cannot take
    pandas_state = agg.partial(df[3:])
    assert isinstance(arrow_state.frame, pa.Table) and isinstance(pandas_state.frame, pd.DataFrame)
    for order in ([arrow_state, pandas_state], [pandas_state, arrow_state]):
        pd.testing.assert_frame_equal(agg.finalize(agg.combine(order)), _expected(df, ["k"]))


def test_decimal_sums_stay_exact_and_an_empty_group_sums_to_zero():
    values = pd.array([Decimal("0.10"), Decimal("0.20"), None], dtype=pd.ArrowDtype(pa.decimal128(15, 2)))
    df = pd.DataFrame({"k": [1, 1, 2], "v": values})
    agg = GroupAggregate(by=["k"], aggs={"total": ["v", "sum"], "n": ["v", "count"]})
    got = agg.finalize(agg.combine([agg.partial(df[:1]), agg.partial(df[1:])]))
    assert got["total"].tolist() == [Decimal("0.30"), Decimal("0")]
    assert got["n"].tolist() == [2, 0]


def test_whole_table_without_rows_is_one_row_of_zeros():
    agg = GroupAggregate(aggs={"total": ["v", "sum"], "rows": ["v", "size"]})
    got = agg.apply(_frame()[:0])
    assert got.to_dict("records") == [{"total": 0.0, "rows": 0}]


def test_a_combined_state_pickles_to_its_own_size_not_its_parents_buffers():
    """Arrow's group-by returns slices of shared buffers, and a pickled slice carries its whole buffer: a
    state sent to the next task must be compact, or a million-group combine travels as a gigabyte."""
    keys = np.arange(200_000) % 50_000
    df = pd.DataFrame({"k": keys, "v": np.ones(len(keys))})
    agg = GroupAggregate(by=["k"], aggs={"total": ["v", "sum"]})
    parts = [agg.partial(pa.Table.from_pandas(df[i : i + 50_000])) for i in range(0, len(df), 50_000)]
    for state in [*parts, agg.combine(parts)]:
        assert isinstance(state.frame, pa.Table)
        assert len(pickle.dumps(state.frame, protocol=5)) < 2 * state.frame.nbytes
