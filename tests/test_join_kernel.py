"""The per-partition join kernel: every `how` equals a pandas reference with SQL null semantics, and the
column rules (shared keys once and coalesced, suffixes, key casts, pass-through types) hold exactly."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import ConfigError
from pipeline.join import HOWS, JoinSpec, check_join, join_tables


def canonical(df: pd.DataFrame) -> pd.DataFrame:
    """One form for both sides of a comparison: numbers as float64 (ints with nulls become floats after outer
    joins), everything else as objects with None for missing; rows sorted, since row order is not promised."""
    columns = {}
    for name, col in df.items():
        if pd.api.types.is_numeric_dtype(col) and not isinstance(col.dtype, pd.CategoricalDtype):
            columns[name] = col.astype("float64")
        else:
            columns[name] = col.astype(object).where(col.notna(), None)
    return pd.DataFrame(columns, columns=list(df.columns)).sort_values(list(df.columns)).reset_index(drop=True)


def assert_same_rows(got: pa.Table, expected: pd.DataFrame) -> None:
    assert got.column_names == list(expected.columns)
    # dtypes of empty or all-null columns are inferred differently by pandas and pyarrow; values must match
    pd.testing.assert_frame_equal(canonical(got.to_pandas()), canonical(expected), check_dtype=False)


def reference(left: pd.DataFrame, right: pd.DataFrame, spec: JoinSpec) -> pd.DataFrame:
    """pandas `merge` matches missing keys to each other, so merge only the rows with complete keys and add the
    null-key rows back as unmatched on their outer side (semi/anti compare key tuples instead)."""
    lk, rk = list(spec.left_on), list(spec.right_on)
    lnull, rnull = left[lk].isna().any(axis=1), right[rk].isna().any(axis=1)
    if spec.how in ("semi", "anti"):
        found = pd.MultiIndex.from_frame(left[lk]).isin(pd.MultiIndex.from_frame(right.loc[~rnull, rk]))
        return left[(found & ~lnull) if spec.how == "semi" else ~(found & ~lnull)]
    how = "outer" if spec.how == "full" else spec.how
    merged = left[~lnull].merge(right[~rnull], how=how, left_on=lk, right_on=rk, suffixes=spec.suffixes)
    shared = set(spec.shared_keys())
    overlap = (set(left.columns) & set(right.columns)) - shared
    unmatched = [merged]
    if spec.how in ("left", "full"):
        unmatched.append(left[lnull].rename(columns={c: c + spec.suffixes[0] for c in overlap}))
    if spec.how in ("right", "full"):
        unmatched.append(right[rnull].rename(columns={c: c + spec.suffixes[1] for c in overlap}))
    return pd.concat(unmatched, ignore_index=True)[list(merged.columns)]


def pandas_frame(table: pa.Table) -> pd.DataFrame:
    """The reference's input: categories as plain values and ints as floats, so pandas compares by value."""
    return canonical(table.to_pandas())


@st.composite
def cases(draw: st.DrawFn) -> tuple[pa.Table, pa.Table, JoinSpec]:
    """Small tables with int and string keys holding nulls, a shared payload name, and varied key types."""
    two_keys, same_names = draw(st.booleans()), draw(st.booleans())
    rkeys = ("k1", "k2") if same_names else ("rk1", "rk2")
    string_type = draw(st.sampled_from(["string", "large_string", "dictionary"]))

    def side(keys: tuple[str, str], int_type: pa.DataType, payload: dict[str, pa.DataType]) -> pa.Table:
        rows = draw(st.integers(0, 10))
        ints = draw(st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=rows, max_size=rows))
        strs = draw(st.lists(st.sampled_from(["a", "b", None]), min_size=rows, max_size=rows))
        columns = {keys[0]: pa.array(ints, int_type), keys[1]: pa.array(strs, pa.string())}
        for name, kind in payload.items():
            columns[name] = pa.array(draw(st.lists(st.one_of(st.none(), st.integers(-5, 5)), min_size=rows,
                                                   max_size=rows)), kind)
        return pa.table(columns)

    left = side(("k1", "k2"), pa.int64(), {"v": pa.int64(), "a": pa.int64()})
    right = side(rkeys, pa.int32(), {"v": pa.float64(), "b": pa.int64()})
    strings = right.column(rkeys[1])
    strings = strings.dictionary_encode() if string_type == "dictionary" else strings.cast(string_type)
    right = right.set_column(1, rkeys[1], strings)
    keys = 2 if two_keys else 1
    spec = JoinSpec.of(left_on=["k1", "k2"][:keys], right_on=list(rkeys[:keys]), how=draw(st.sampled_from(HOWS)),
                       suffixes=draw(st.sampled_from([("", "_right"), ("_l", "_r")])))
    return left, right, spec


@settings(max_examples=300, deadline=None)
@given(cases())
def test_every_how_equals_pandas_with_sql_nulls(case: tuple[pa.Table, pa.Table, JoinSpec]):
    left, right, spec = case
    got = join_tables(left, right, spec)
    assert_same_rows(got, reference(pandas_frame(left), pandas_frame(right), spec))
    assert got.schema == spec.output_schema(left.schema, right.schema)


@settings(max_examples=100, deadline=None)
@given(few=st.lists(st.one_of(st.none(), st.integers(0, 40)), max_size=4),
       many=st.lists(st.one_of(st.none(), st.integers(0, 40)), min_size=64, max_size=200),
       how=st.sampled_from(["semi", "anti"]), few_on_left=st.booleans())
def test_a_semi_join_of_sides_far_apart_in_size_equals_pandas(few: list, many: list, how: str, few_on_left: bool):
    """One side at least 16 times the other: its keys are looked up in a set of the other's (int32 against
    int64, nulls never matching), not hash-joined; the same rows."""
    lkeys, rkeys = (few, many) if few_on_left else (many, few)
    left = pa.table({"k": pa.array(lkeys, pa.int64()), "a": pa.array(range(len(lkeys)), pa.int64())})
    right = pa.table({"k": pa.array(rkeys, pa.int32()), "b": pa.array(range(len(rkeys)), pa.int64())})
    spec = JoinSpec.of(on="k", how=how)
    assert_same_rows(join_tables(left, right, spec), reference(pandas_frame(left), pandas_frame(right), spec))


NULLS = pa.table({"k": pa.array([None], pa.int64()), "a": [1]})
NULLS_RIGHT = pa.table({"k": pa.array([None], pa.int64()), "b": [2]})


def test_a_null_key_never_matches_even_a_null():
    assert join_tables(NULLS, NULLS_RIGHT, JoinSpec.of(on="k")).num_rows == 0
    assert join_tables(NULLS, NULLS_RIGHT, JoinSpec.of(on="k", how="semi")).num_rows == 0
    assert join_tables(NULLS, NULLS_RIGHT, JoinSpec.of(on="k", how="full")).to_pylist() in (
        [{"k": None, "a": 1, "b": None}, {"k": None, "a": None, "b": 2}],
        [{"k": None, "a": None, "b": 2}, {"k": None, "a": 1, "b": None}],
    )


def test_anti_keeps_a_null_key_row_as_not_exists_does():
    left = pa.table({"k": pa.array([None, 1, 2], pa.int64())})
    got = join_tables(left, pa.table({"k": pa.array([None, 1], pa.int64())}), JoinSpec.of(on="k", how="anti"))
    assert sorted(got.column("k").to_pylist(), key=str) == [2, None]


def test_a_row_with_one_null_key_part_has_no_match():
    table = pa.table({"a": pa.array([1, 1], pa.int64()), "b": pa.array([None, "x"])})
    got = join_tables(table, table, JoinSpec.of(on=["a", "b"]))
    assert got.to_pylist() == [{"a": 1, "b": "x"}]


@pytest.mark.parametrize("how", ["right", "full"])
def test_a_shared_key_appears_once_with_values_from_either_side(how: str):
    left = pa.table({"k": pa.array([1, 2], pa.int32()), "a": ["x", "y"]})
    right = pa.table({"k": pa.array([2, 3], pa.int64()), "b": [20, 30]})
    got = join_tables(left, right, JoinSpec.of(on="k", how=how)).sort_by("k")
    assert got.column_names == ["k", "a", "b"]
    expected = {"right": [2, 3], "full": [1, 2, 3]}[how]
    assert got.column("k").to_pylist() == expected and got.schema.field("k").type == pa.int64()


def test_keys_with_different_names_are_both_kept():
    left = pa.table({"lk": [1, 2], "a": ["x", "y"]})
    right = pa.table({"rk": [2, 3], "b": [20, 30]})
    got = join_tables(left, right, JoinSpec.of(left_on="lk", right_on="rk", how="full")).sort_by("b")
    assert got.to_pydict() == {"lk": [2, None, 1], "a": ["y", None, "x"], "rk": [2, 3, None], "b": [20, 30, None]}


def test_colliding_names_get_suffixes_and_a_remaining_collision_is_refused():
    left = pa.table({"k": [1], "v": [1], "w": [1]})
    right = pa.table({"k": [1], "v": [2], "w_r": [3], "w": [4]})
    got = join_tables(left, right, JoinSpec.of(on="k", suffixes=("_l", "_x")))
    assert got.to_pylist() == [{"k": 1, "v_l": 1, "w_l": 1, "v_x": 2, "w_r": 3, "w_x": 4}]
    assert join_tables(left, right, JoinSpec.of(on="k")).column_names == ["k", "v", "w", "v_right", "w_r", "w_right"]
    with pytest.raises(ValueError, match="'w_r'"):
        join_tables(left, right, JoinSpec.of(on="k", suffixes=("", "_r")))


def test_dictionary_keys_join_plain_string_keys():
    left = pa.table({"k": pa.chunked_array([pa.array(["b", "a"]).dictionary_encode(),
                                           pa.array([None, "c", "a"]).dictionary_encode()]), "a": [1, 2, 3, 4, 5]})
    right = pa.table({"k": pa.array(["a", "c", None], pa.large_string()), "b": [10, 30, 99]})
    got = join_tables(left, right, JoinSpec.of(on="k")).sort_by("a")
    assert got.to_pydict() == {"k": ["a", "c", "a"], "a": [2, 4, 5], "b": [10, 30, 10]}
    assert pa.types.is_dictionary(got.schema.field("k").type)


def test_dictionary_payload_columns_stay_dictionaries():
    left = pa.table({"k": [1, 2], "c": pa.array(["x", "y"]).dictionary_encode()})
    got = join_tables(left, pa.table({"k": [2]}), JoinSpec.of(on="k", how="left")).sort_by("k")
    assert got.schema.field("c").type == left.schema.field("c").type
    assert got.column("c").to_pylist() == ["x", "y"]


@pytest.mark.parametrize("right_keys", [
    pa.array([3, 1, None], pa.int64()), pa.array([3, 1, None], pa.int8()), pa.array([3, 1, None], pa.uint16()),
    pa.array([3.0, 1.0, None], pa.float64()),
    pa.array([Decimal("3.000"), Decimal("1.000"), None], pa.decimal128(12, 3)),
], ids=lambda keys: str(keys.type))
def test_numeric_keys_of_different_types_match_by_value(right_keys: pa.Array):
    left = pa.table({"k": pa.array([1, 2, 3], pa.int32()), "a": ["x", "y", "z"]})
    right = pa.table({"k": right_keys, "b": [30, 10, 0]})
    got = join_tables(left, right, JoinSpec.of(on="k")).sort_by("k")
    assert got.to_pydict() == {"k": [1, 3], "a": ["x", "z"], "b": [10, 30]}


def test_decimals_dates_and_timestamps_pass_through_exactly():
    decimals = pa.array([Decimal("12345678901234567.891"), Decimal("-0.001"), None], pa.decimal128(38, 3))
    stamps = pa.array([datetime.datetime(2021, 3, 4, 5, 6, 7, 123456), None, datetime.datetime(1970, 1, 1)],
                      pa.timestamp("us", tz="UTC"))
    left = pa.table({"k": [1, 2, 3], "d": decimals, "t": stamps})
    right = pa.table({"k": [3, 2, 1], "day": pa.array([datetime.date(1, 1, 1), None, datetime.date(9999, 12, 31)])})
    got = join_tables(left, right, JoinSpec.of(on="k", how="full")).sort_by("k")
    assert got.schema.field("d").type == decimals.type and got.schema.field("t").type == stamps.type
    assert got.column("d").to_pylist() == decimals.to_pylist()
    assert got.column("t").to_pylist() == stamps.to_pylist()
    assert got.column("day").to_pylist() == [datetime.date(9999, 12, 31), None, datetime.date(1, 1, 1)]


def test_list_and_struct_payload_columns_pass_through():
    left = pa.table({"k": [1, 2], "l": pa.array([[1, 2], None]), "s": pa.array([{"x": 1}, {"x": None}])})
    right = pa.table({"k": [2, 3], "m": pa.array([[b"a"], []], pa.large_list(pa.binary()))})
    got = join_tables(left, right, JoinSpec.of(on="k", how="full")).sort_by("k")
    assert got.to_pydict() == {"k": [1, 2, 3], "l": [[1, 2], None, None], "s": [{"x": 1}, {"x": None}, None],
                               "m": [None, [b"a"], []]}


@pytest.mark.parametrize("how", HOWS)
def test_empty_sides_and_key_only_tables(how: str):
    left = pa.table({"k": pa.array([1, None], pa.int64())})
    right = pa.table({"k": pa.array([1, 2], pa.int64())})
    empty = right.slice(0, 0)
    expected_rows = {"inner": 1, "left": 2, "right": 2, "full": 3, "semi": 1, "anti": 1}[how]
    assert join_tables(left, right, JoinSpec.of(on="k", how=how)).num_rows == expected_rows
    assert join_tables(left, empty, JoinSpec.of(on="k", how=how)).num_rows == (
        2 if how in ("left", "full", "anti") else 0)
    assert join_tables(empty, right, JoinSpec.of(on="k", how=how)).num_rows == (2 if how in ("right", "full") else 0)


def test_check_join_names_the_dataset_and_the_missing_key():
    spec = JoinSpec.of(left_on="o_orderkey", right_on="l_orderkey")
    with pytest.raises(ConfigError) as error:
        check_join(spec, pa.schema([("a", pa.int64()), ("b", pa.int64())]), pa.schema([("l_orderkey", pa.int64())]),
                   "orders", "lineitem")
    message = str(error.value)
    assert "\n" not in message and "orders" in message and "'o_orderkey'" in message and "has: a, b" in message


@pytest.mark.parametrize("left_type, right_type", [
    (pa.int64(), pa.string()), (pa.date32(), pa.int64()), (pa.date32(), pa.timestamp("us")),
    (pa.string(), pa.binary()), (pa.bool_(), pa.int8()),
])
def test_check_join_refuses_keys_that_cannot_be_compared(left_type: pa.DataType, right_type: pa.DataType):
    spec = JoinSpec.of(left_on="o_orderkey", right_on="l_orderkey")
    with pytest.raises(ConfigError) as error:
        check_join(spec, pa.schema([("o_orderkey", left_type)]), pa.schema([("l_orderkey", right_type)]),
                   "orders", "lineitem")
    message = str(error.value)
    assert "\n" not in message and "orders.o_orderkey" in message and "lineitem.l_orderkey" in message
    assert str(left_type) in message and str(right_type) in message


@pytest.mark.parametrize("left_type, right_type", [
    (pa.int32(), pa.int64()), (pa.int64(), pa.float32()), (pa.decimal128(10, 2), pa.int64()),
    (pa.decimal128(10, 2), pa.decimal128(20, 5)), (pa.string(), pa.large_string()),
    (pa.dictionary(pa.int32(), pa.string()), pa.string()), (pa.date32(), pa.date32()),
])
def test_check_join_accepts_keys_compared_by_value(left_type: pa.DataType, right_type: pa.DataType):
    check_join(JoinSpec.of(on="k"), pa.schema([("k", left_type)]), pa.schema([("k", right_type)]), "a", "b")


def test_check_join_refuses_nested_keys():
    schema = pa.schema([("k", pa.list_(pa.int64()))])
    with pytest.raises(ConfigError, match="orders.k"):
        check_join(JoinSpec.of(on="k"), schema, schema, "orders", "lineitem")


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("keys", [{"on": "k"}, {"left_on": "k", "right_on": "rk"}])
def test_output_schema_is_the_schema_of_the_result(how: str, keys: dict[str, str]):
    rk = keys.get("right_on", "k")
    left = pa.table({"k": pa.array([1, 2, None], pa.int32()), "v": pa.array(["x", "y", "z"]).dictionary_encode(),
                     "d": pa.array([Decimal("1.5"), None, Decimal("2")], pa.decimal128(5, 2))})
    right = pa.table({rk: pa.array([2, None, 4], pa.int64()), "v": pa.array([[1], [2], None]),
                      "t": pa.array([0, 1, 2], pa.timestamp("ms"))})
    spec = JoinSpec.of(how=how, **keys)
    assert join_tables(left, right, spec).schema == spec.output_schema(left.schema, right.schema)


@pytest.mark.parametrize("arguments, message", [
    ({}, "needs keys"),
    ({"on": []}, "needs keys"),
    ({"on": "k", "left_on": "k"}, "not both"),
    ({"left_on": "k"}, "needs keys"),
    ({"left_on": ["a", "b"], "right_on": ["a"]}, "2 keys"),
    ({"on": ["k", ""]}, "non-empty"),
    ({"on": "k", "how": "outer"}, "'outer'"),
    ({"on": "k", "suffixes": ("_x", "_x")}, "suffixes"),
    ({"on": "k", "strategy": "sorted"}, "'sorted'"),
])
def test_misuse_is_refused_with_one_line(arguments: dict, message: str):
    with pytest.raises(ValueError, match=message) as error:
        JoinSpec.of(**arguments)
    assert "\n" not in str(error.value)
