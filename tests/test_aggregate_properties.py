"""Property: for any table and any chunking and any combine-tree shape, the tree aggregate equals pandas'
group-by over the whole table, for every function — categorical keys, null keys and values, empty chunks; and
without keys, pandas' reductions of the whole columns, in one row. Medians and quantiles are equal bit for bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import Pipeline, aggregate_ranges
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
    """pandas' answer: the group-by, or without keys each whole column's reduction in one row."""
    if not by:
        return pd.DataFrame({out: [whole(df[spec[0]], *spec[1:])] for out, spec in aggs.items()})
    grouped = df.groupby(by, observed=True)
    columns = {
        out: grouped[column].quantile(*rest) if fn == "quantile" else grouped[column].agg(fn)
        for out, (column, fn, *rest) in aggs.items()
    }
    return pd.DataFrame(columns).reset_index()


def whole(values: pd.Series, fn: str, q: float = 0.5) -> object:
    """A function over a whole column, as pandas computes it."""
    present = values.dropna()
    if fn in ("first", "last"):
        return present.iloc[0 if fn == "first" else -1] if len(present) else np.nan
    if fn == "size":
        return len(values)
    value = values.quantile(q) if fn == "quantile" else getattr(values, fn)()
    return np.nan if value is pd.NA else value  # a nullable column's missing result, as a float column has it


def run_tree(agg: GroupAggregate, df: pd.DataFrame, data: st.DataObject, polars: bool = False) -> pd.DataFrame:
    """The aggregate over random chunks of `df` combined in a random tree; with `polars`, some chunks reduced
    by Polars."""
    bounds = cuts(data.draw, len(df))
    chunks = [df.iloc[a:b] for a, b in zip(bounds, bounds[1:])]
    chunks = [pl.from_pandas(c) if polars and data.draw(st.booleans()) else c for c in chunks]
    return agg.finalize(tree_combine(agg, [agg.partial(c) for c in chunks], data.draw))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(df=tables(), by=st.lists(st.sampled_from(KEYS), max_size=3, unique=True), data=st.data())
def test_any_chunking_gives_the_pandas_answer(df: pd.DataFrame, by: list[str], data: st.DataObject):
    values = [c for c in ("v", "i") if c not in by]
    aggs = {f"{column}_{fn}": [column, fn] for column in values for fn in FUNCTIONS}
    aggs["c_nunique"] = ["c", "nunique"]
    aggs["v_q"] = ["v", "quantile", data.draw(st.floats(0, 1))]
    agg = GroupAggregate(by, aggs)
    result = run_tree(agg, df, data)
    want = expected(df, by, aggs)
    if len(want) == 0:  # pandas' dtypes for an empty group-by are not meaningful; the shape is
        assert len(result) == 0 and list(result.columns) == list(want.columns)
        return
    pd.testing.assert_frame_equal(result, want, check_exact=False, rtol=1e-9, atol=1e-9)
    exact = [out for out, (_, fn, *_) in aggs.items() if fn not in ("var", "std")]
    pd.testing.assert_frame_equal(result[exact], want[exact], check_exact=True)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(df=tables(), key=st.sampled_from(["n", "i", "d"]), second=st.lists(st.sampled_from(["s", "c"]), max_size=1),
       arrow=st.booleans(), data=st.data())
def test_data_sorted_by_the_first_key_gives_the_pandas_answer(df: pd.DataFrame, key: str, second: list[str],
                                                             arrow: bool, data: st.DataObject):
    """Sorted by the first key, chunks share only the groups cut at their edges: those are merged and the rest
    concatenated (`aggregate_ranges`), with Arrow states (`arrow`: the common functions only) or pandas ones."""
    df = df.assign(d=pd.Series(pd.to_datetime(df["i"], unit="D").dt.date, dtype=pd.ArrowDtype(pa.date32())))
    df = df.sort_values(key, kind="stable", ignore_index=True)
    by = [key, *second]
    functions = ("count", "size", "sum", "mean", "min", "max") if arrow else FUNCTIONS
    aggs = {f"v_{fn}": ["v", fn] for fn in functions}
    if not arrow:
        aggs |= {"c_nunique": ["c", "nunique"], "v_q": ["v", "quantile", 0.3]}
    agg = GroupAggregate(by, aggs)
    result = run_tree(agg, df, data)
    want = expected(df, by, aggs)
    if len(want) == 0:
        assert len(result) == 0
        return
    pd.testing.assert_frame_equal(result, want, check_exact=False, rtol=1e-9, atol=1e-9)


@st.composite
def spread(draw: st.DrawFn) -> pd.DataFrame:
    """Keys and values whose order statistics interpolate between arbitrary floats: repeats, nulls, infinities."""
    rows = draw(st.integers(0, 80))
    pool = draw(st.lists(st.floats(allow_nan=False, width=64), min_size=1, max_size=10))  # repeats are likely
    floats = st.one_of(st.none(), st.sampled_from(pool), st.floats(-1e9, 1e9))
    ints = st.integers(-10**6, 10**6)

    def column(values: st.SearchStrategy, dtype: str) -> pd.Series:
        return pd.Series(draw(st.lists(values, min_size=rows, max_size=rows)), dtype=dtype)

    return pd.DataFrame(
        {
            "k": column(st.sampled_from(["a", "b", None]), "str"),
            "f": column(floats, "float64"),
            "i": column(ints, "int64"),
            "n": column(st.one_of(st.none(), ints), "Int64"),
        }
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(df=spread(), by=st.sampled_from([[], ["k"]]), qs=st.lists(st.floats(0, 1), min_size=1, max_size=3),
       polars=st.booleans(), data=st.data())
def test_median_and_quantiles_are_exactly_pandas(df: pd.DataFrame, by: list[str], qs: list[float], polars: bool,
                                                 data: st.DataObject):
    aggs = {f"{column}_median": [column, "median"] for column in ("f", "i", "n")}
    aggs |= {f"{column}_q{j}": [column, "quantile", q] for column in ("f", "i", "n") for j, q in enumerate(qs)}
    result = run_tree(GroupAggregate(by, aggs), df, data, polars)
    want = expected(df, by, aggs).astype({out: "float64" for out in aggs})  # an Int64 column's are Float64
    if len(want) == 0:
        assert len(result) == 0
        return
    pd.testing.assert_frame_equal(result, want, check_exact=True)


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
        ([1], {"n": ["v", "count"]}, "'by' must be a list of column names"),
        (["k"], {}, "'aggs' must be a non-empty table"),
        (["k"], {"n": ["v", "mode"]}, "unknown function 'mode'"),
        (["k"], {"n": "v"}, "must be [column, function]"),
        (["k"], {"n": ["v", "quantile", 0.5, 1]}, "must be [column, function]"),
        (["k"], {"n": ["v", "sum", 0.5]}, "only quantile takes a third value"),
        (["k"], {"n": ["v", "quantile", 1.5]}, "q must be a number from 0 to 1, got 1.5"),
        (["k"], {"n": ["v", "quantile", -0.1]}, "q must be a number from 0 to 1"),
        (["k"], {"n": ["v", "quantile", float("nan")]}, "q must be a number from 0 to 1"),
        (["k"], {"n": ["v", "quantile", "0.5"]}, "q must be a number from 0 to 1"),
        (["k"], {"n": ["v", "quantile", True]}, "q must be a number from 0 to 1"),
    ],
)
def test_bad_aggregate_params_are_refused_before_running(by, aggs, message):
    with pytest.raises(ValueError) as caught:
        GroupAggregate(by, aggs)
    assert message in str(caught.value)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.integers(-50, 50), max_size=40),
       edges=st.lists(st.integers(-60, 60), min_size=2, max_size=8, unique=True),
       kind=st.sampled_from(["arrow", "numpy", "float", "nullable"]))
def test_inside_finds_the_values_in_any_interval(values: list[int], edges: list[int], kind: str):
    """Integers take a binary search of the intervals' starts, other types a comparison per interval: the
    same mask either way."""
    bounds = sorted(edges)
    intervals = list(zip(bounds[::2], bounds[1::2]))  # sorted and disjoint, as `shared_intervals` gives them
    column = {"arrow": lambda: pa.array(values, pa.int64()), "numpy": lambda: pd.Series(values, dtype="int64"),
              "float": lambda: pd.Series(values, dtype="float64"), "nullable": lambda: pd.Series(values, dtype="Int64")}
    got = aggregate_ranges.inside(column[kind](), intervals)
    mask = got.to_pylist() if kind == "arrow" else np.asarray(got, dtype=bool).tolist()
    assert mask == [any(low <= v <= high for low, high in intervals) for v in values]
