"""The exchange's data side on real files: any split of a table into map pieces, written and read back by
partition, gives back every row exactly once; range partitions concatenate into the global stable sort; hash
ids depend only on key values (not on int width, string kind, dictionary encoding, or the process)."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.exchange import (
    BATCH_BYTES,
    BATCH_ROWS,
    choose_boundaries,
    hash_partitions,
    partition_sizes,
    range_partitions,
    read_partition,
    sample_keys,
    write_map_output,
)

KEY_SETS = [["i"], ["s"], ["i", "s"], ["s", "i"]]
INT32 = 2**31 - 1


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    """Int and string keys with nulls, few distinct values (ties) plus some far apart; `row` names each row."""
    rows = draw(st.integers(0, 60))
    ints = st.one_of(st.none(), st.integers(-3, 3), st.integers(-INT32, INT32))
    strings = st.one_of(st.none(), st.sampled_from(["", "a", "b", "ab", "é", "zz"]))
    return pa.table(
        {
            "i": pa.array(draw(st.lists(ints, min_size=rows, max_size=rows)), pa.int64()),
            "s": pa.array(draw(st.lists(strings, min_size=rows, max_size=rows)), pa.string()),
            "row": pa.array(range(rows), pa.int64()),
        }
    )


def split(draw: st.DrawFn, table: pa.Table) -> list[pa.Table]:
    """Consecutive map pieces, 1 to 4 of them, empty ones allowed."""
    inner = sorted(draw(st.lists(st.integers(0, table.num_rows), max_size=3)))
    edges = [0, *inner, table.num_rows]
    return [table.slice(a, b - a) for a, b in zip(edges, edges[1:])]


def key_tuples(table: pa.Table, keys: list[str]) -> list[tuple]:
    return list(zip(*(table[k].to_pylist() for k in keys)))


def variants(table: pa.Table) -> list[pa.Table]:
    """The same keys as other types that must hash alike."""
    i, s = table["i"], table["s"]
    return [
        table.set_column(0, "i", i.cast(pa.int32())).set_column(1, "s", s.dictionary_encode()),
        table.set_column(0, "i", i.cast(pa.float64())).set_column(1, "s", s.cast(pa.large_string())),
        table.set_column(1, "s", s.cast(pa.string_view())),
    ]


@settings(max_examples=80, deadline=None)
@given(table=tables(), keys=st.sampled_from(KEY_SETS), n=st.integers(1, 7), data=st.data())
def test_hash_exchange_gives_back_every_row_once(tmp_path_factory, table, keys, n, data):
    folder = tmp_path_factory.mktemp("hash")
    pieces = split(data.draw, table)
    outputs = [
        write_map_output(str(folder / f"map-{j}.arrow"), piece, hash_partitions(piece, keys, n), n)
        for j, piece in enumerate(pieces)
    ]
    paths = [o.path for o in outputs]
    home: dict[tuple, set[int]] = {}
    read = []
    for p in range(n):
        part = read_partition(paths, p)
        assert part.column("row").to_pylist() == sorted(part.column("row").to_pylist())  # file, then row order
        assert set(hash_partitions(part, keys, n).tolist()) <= {p}  # the read-back types hash alike
        for key in key_tuples(part, keys):
            home.setdefault(key, set()).add(p)
        read.append(part)
    everything = pa.concat_tables(read).sort_by("row")
    assert everything.to_pylist() == table.to_pylist()
    assert all(len(places) == 1 for places in home.values())
    assert all(places == {0} for key, places in home.items() if None in key)
    rows, _ = partition_sizes(outputs, n)
    assert rows == [r.num_rows for r in read]
    ids = hash_partitions(table, keys, n)
    for variant in variants(table):
        assert hash_partitions(variant, keys, n).tolist() == ids.tolist()


def pandas_sort(df: pd.DataFrame, keys: list[str], ascending: list[bool]) -> pd.DataFrame:
    return df.sort_values(keys, ascending=ascending, kind="stable", na_position="last")


def range_exchange(folder: Path, pieces: list[pa.Table], keys: list[str], ascending: list[bool], n: int,
                   sample_size: int) -> list[pa.Table]:
    """Sample every piece, choose boundaries, write each piece by range, read every partition back."""
    boundaries = choose_boundaries([sample_keys(p, keys, sample_size) for p in pieces], keys, ascending, n)
    assert boundaries.num_rows <= n - 1
    paths = []
    for j, piece in enumerate(pieces):
        ids = range_partitions(piece, keys, ascending, boundaries)
        assert ids.dtype == np.int64 and all(0 <= x < n for x in ids)
        paths.append(write_map_output(str(folder / f"map-{j}.arrow"), piece, ids, n).path)
    return [read_partition(paths, p) for p in range(n)]


def assert_globally_sorted(parts: list[pa.Table], table: pa.Table, keys: list[str], ascending: list[bool]) -> None:
    """Partitions sorted one by one and put end to end are the whole table sorted: same rows, same order."""
    ordered = [pandas_sort(p.to_pandas(), keys, ascending) for p in parts]
    got = pd.concat(ordered)["row"].tolist() if ordered else []
    assert got == pandas_sort(table.to_pandas(), keys, ascending)["row"].tolist()


@settings(max_examples=80, deadline=None)
@given(table=tables(), keys=st.sampled_from(KEY_SETS), n=st.integers(1, 7), data=st.data())
def test_range_partitions_concatenate_into_the_stable_global_sort(tmp_path_factory, table, keys, n, data):
    """Strings of every kind; as a dictionary they are a categorical, sorted in category order."""
    ascending = data.draw(st.lists(st.booleans(), min_size=len(keys), max_size=len(keys)))
    text = data.draw(st.sampled_from(["string", "large_string", "string_view", "dictionary"]))
    strings = table["s"].dictionary_encode() if text == "dictionary" else table["s"].cast(getattr(pa, text)())
    table = table.set_column(1, "s", strings)
    pieces = split(data.draw, table)
    parts = range_exchange(tmp_path_factory.mktemp("range"), pieces, keys, ascending, n, data.draw(st.integers(1, 9)))
    assert_globally_sorted(parts, table, keys, ascending)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.integers(-INT32, INT32), max_size=60), cuts=st.lists(st.integers(-INT32, INT32), max_size=6),
       kind=st.sampled_from([pa.int64(), pa.int32(), pa.uint32()]))
def test_integer_keys_are_searched_as_all_keys_are_ranked(values: list[int], cuts: list[int], kind: pa.DataType):
    """One ascending integer key without nulls takes a binary search of the boundaries: the same ids as the
    ranking every other key takes (the same numbers as floats go that way)."""
    if pa.types.is_unsigned_integer(kind):
        values, cuts = [abs(v) for v in values], [abs(c) for c in cuts]
    table = pa.table({"k": pa.array(values, kind)})
    boundaries = pa.table({"k": pa.array(sorted(set(cuts)), kind)})
    as_floats = range_partitions(table.cast(pa.schema([("k", pa.float64())])), ["k"], [True],
                                 boundaries.cast(pa.schema([("k", pa.float64())])))
    assert range_partitions(table, ["k"], [True], boundaries).tolist() == as_floats.tolist()


def typed_table() -> pa.Table:
    """Decimal, date, timestamp and float keys, with ties and nulls; the floats with many NaN as well as nulls,
    which pandas sorts as equally missing, so a boundary falls among them."""
    rng = np.random.default_rng(1)
    rows = 400
    nulls = rng.random(rows) < 0.1
    day = rng.integers(0, 30, rows)
    cents = [None if z else Decimal(int(c)) / 100 for z, c in zip(nulls, rng.integers(-500, 500, rows))]
    floats = np.where(rng.random(rows) < 0.25, np.nan, rng.integers(0, 9, rows) / 2)  # NaN and null: 40%
    return pa.table(
        {
            "d": pa.array(cents, pa.decimal128(12, 2)),
            "day": pa.array([None if z else datetime.date(2024, 1, 1 + int(x)) for z, x in zip(nulls[::-1], day)]),
            "t": pa.array(day * 3_600_000_000 + rng.integers(0, 3, rows), pa.timestamp("us", "UTC"), mask=nulls),
            "f": pa.array(floats, pa.float64(), mask=rng.random(rows) < 0.2),
            "row": pa.array(range(rows), pa.int64()),
        }
    )


@pytest.mark.parametrize("keys, ascending", [
    (["d"], [True]), (["day", "d"], [False, True]), (["t"], [False]), (["f"], [True]), (["f", "t"], [False, True]),
])
def test_range_partitions_sort_decimal_date_timestamp_and_float_keys(tmp_path: Path, keys, ascending):
    table = typed_table()
    pieces = [table.slice(0, 150), table.slice(150, 100), table.slice(250)]
    parts = range_exchange(tmp_path, pieces, keys, ascending, 5, 20)
    assert sum(p.num_rows > 0 for p in parts) >= 3  # the boundaries really split
    assert_globally_sorted(parts, table, keys, ascending)


@pytest.mark.parametrize("keys, ascending", [(["kind"], [True]), (["kind", "n"], [False, True])])
def test_a_categorical_key_sorts_in_category_order_as_pandas_does(tmp_path: Path, keys, ascending):
    rng = np.random.default_rng(2)
    kinds = rng.choice(["x", "y", "z", None], 300)  # categories below are not in alphabetical order
    frame = pd.DataFrame({"kind": pd.Categorical(kinds, categories=["z", "x", "y"]), "n": rng.integers(0, 4, 300)})
    table = pa.Table.from_pandas(frame.assign(row=np.arange(300)), preserve_index=False)
    pieces = [table.slice(0, 120), table.slice(120, 90), table.slice(210)]
    parts = range_exchange(tmp_path, pieces, keys, ascending, 4, 30)
    assert sum(p.num_rows > 0 for p in parts) >= 3
    assert_globally_sorted(parts, table, keys, ascending)


def test_many_high_cardinality_keys_still_sort_globally(tmp_path: Path):
    """Five keys of thousands of distinct values each in one map piece: too many combinations to pack into
    one int64, so the ranks are combined by a sort instead."""
    rng = np.random.default_rng(3)
    rows = 9_000
    columns = {f"k{j}": pa.array(rng.permutation(rows) // (1 + (j == 0) * 3), mask=rng.random(rows) < 0.02)
               for j in range(5)}
    table = pa.table({**columns, "row": pa.array(range(rows))})
    keys, ascending = list(columns), [True, False, True, False, True]
    parts = range_exchange(tmp_path, [table.slice(0, 8_500), table.slice(8_500)], keys, ascending, 6, 200)
    assert sum(p.num_rows > 0 for p in parts) == 6
    assert_globally_sorted(parts, table, keys, ascending)


def test_hash_partitions_agree_for_equal_decimals_dates_and_instants():
    table = typed_table()
    same = pa.table(
        {
            "d": table["d"].cast(pa.decimal128(30, 2)),
            "day": table["day"].cast(pa.date64()),
            "t": table["t"].cast(pa.timestamp("ns")),
            "f": table["f"].cast(pa.float32()),
        }
    )
    for key in ["d", "day", "t", "f"]:
        ids = hash_partitions(table, [key], 7)
        assert ids.tolist() == hash_partitions(same, [key], 7).tolist()
        assert len(set(ids.tolist())) > 1
        home: dict = {}
        for value, p in zip(table[key].to_pylist(), ids.tolist()):
            home.setdefault(value, set()).add(p)
        assert all(len(places) == 1 for places in home.values())


def test_numbers_of_any_type_agree_by_value():
    """Both sides of a join may hold the key as another number type: equal values must meet."""
    values = [Decimal("1.50"), Decimal("2.00"), Decimal("-7.00"), Decimal("12345678.25")] * 20
    two = pa.table({"k": pa.array(values, pa.decimal128(10, 2))})
    variants = [two["k"].cast(pa.decimal128(12, 3)), two["k"].cast(pa.float64())]
    expected = hash_partitions(two, ["k"], 97).tolist()
    for variant in variants:
        assert hash_partitions(pa.table({"k": variant}), ["k"], 97).tolist() == expected
    integral = pa.table({"k": pa.array([2, -7] * 5, pa.int32())})
    as_decimal = pa.table({"k": integral["k"].cast(pa.decimal128(12, 2))})
    assert hash_partitions(integral, ["k"], 97).tolist() == hash_partitions(as_decimal, ["k"], 97).tolist()


def test_hash_ids_are_the_same_in_another_process_with_another_hash_seed(tmp_path: Path):
    table = pa.table(
        {
            "s": pa.array([f"key-{i % 37}" if i % 11 else None for i in range(500)]),
            "c": pa.array([f"c{i % 5}" for i in range(500)]).dictionary_encode(),
            "i": pa.array(range(-250, 250), pa.int64()),
        }
    )
    path = tmp_path / "keys.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    key_sets = [["s"], ["c"], ["i"], ["s", "c", "i"]]
    script = (
        "import json, sys, pyarrow as pa\n"
        "from pipeline.exchange import hash_partitions\n"
        "table = pa.ipc.open_file(pa.memory_map(sys.argv[1])).read_all()\n"
        "print(json.dumps([hash_partitions(table, keys, 13).tolist() for keys in json.loads(sys.argv[2])]))\n"
    )
    here = [hash_partitions(table, keys, 13).tolist() for keys in key_sets]
    for seed in ["1", "2"]:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", script, str(path), json.dumps(key_sets)], env=env,
                              capture_output=True, text=True, timeout=120, check=True)
        assert json.loads(done.stdout) == here
    assert len(set(here[0])) > 5


def test_a_big_partition_is_stored_in_pieces_and_read_back_whole(tmp_path: Path):
    rows = 4 * BATCH_ROWS
    table = pa.table({"v": pa.array(np.arange(rows))})
    ids = (np.arange(rows) % 4 == 0).astype(np.int64)  # partition 0 holds 3/4 of the rows, over two files
    halves = [slice(0, rows // 2), slice(rows // 2, rows)]
    paths = [write_map_output(str(tmp_path / f"map-{j}.arrow"), table[half], ids[half], 2).path
             for j, half in enumerate(halves)]
    batches = read_partition(paths, 0).to_batches()
    assert len(batches) == 4 and all(b.num_rows <= BATCH_ROWS for b in batches)
    assert pa.Table.from_batches(batches).column("v").to_pylist() == np.flatnonzero(ids == 0).tolist()


def test_a_partition_of_wide_rows_is_cut_by_bytes(tmp_path: Path):
    table = pa.table({"text": pa.array(["x" * 10_000] * 1_000)})
    write_map_output(str(tmp_path / "map.arrow"), table, np.zeros(1_000, dtype=np.int64), 1)
    batches = read_partition([str(tmp_path / "map.arrow")], 0).to_batches()
    assert len(batches) > 1 and all(b.nbytes <= 1.1 * BATCH_BYTES for b in batches)
    assert pa.Table.from_batches(batches).equals(table)


def test_different_dictionaries_in_and_across_map_files_read_back_as_values(tmp_path: Path):
    a = pa.Table.from_pandas(pd.DataFrame({"c": pd.Categorical(["x", "y", "x"], categories=["y", "x"])}))
    b = pa.Table.from_pandas(pd.DataFrame({"c": pd.Categorical(["z", "x"], categories=["z", "x", "w"])}))
    chunked = pa.concat_tables([a, b])  # one column, two dictionaries
    first = write_map_output(str(tmp_path / "m0.arrow"), chunked, np.array([0, 1, 0, 1, 0]), 2)
    second = write_map_output(str(tmp_path / "m1.arrow"), b, np.array([0, 0]), 2)
    part = read_partition([first.path, second.path], 0)
    assert pa.types.is_dictionary(part.schema.field("c").type)
    assert part.column("c").to_pylist() == ["x", "x", "x", "z", "x"]
    assert part.schema.metadata is None  # neither pandas' metadata nor the index leak out


def test_files_whose_schemas_differ_in_nullability_and_width_read_as_one(tmp_path: Path):
    narrow = pa.table({"v": pa.array([1, 2], pa.int32())}, schema=pa.schema([pa.field("v", pa.int32(), False)]))
    wide = pa.table({"v": pa.array([3, None], pa.int64())})
    paths = [write_map_output(str(tmp_path / f"m{j}.arrow"), t, np.zeros(2, dtype=np.int64), 1).path
             for j, t in enumerate([narrow, wide])]
    assert read_partition(paths, 0).column("v").to_pylist() == [1, 2, 3, None]
    wanted = pa.schema([pa.field("v", pa.float64())])
    assert read_partition(paths, 0, wanted).schema == wanted


def test_rewriting_replaces_the_file_whole_and_leaves_no_temporary_files(tmp_path: Path):
    path = str(tmp_path / "map.arrow")
    old = pa.table({"v": [1, 2, 3]})
    write_map_output(path, old, np.array([0, 1, 0]), 2)
    held = read_partition([path], 0)  # a reader still holding the first attempt's rows
    write_map_output(path, pa.table({"v": [7, 8]}), np.array([1, 1]), 2)  # the retried task
    assert os.listdir(tmp_path) == ["map.arrow"]
    assert read_partition([path], 0).num_rows == 0 and read_partition([path], 1).column("v").to_pylist() == [7, 8]
    assert held.column("v").to_pylist() == [1, 3]


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path):
    (tmp_path / "map.arrow").mkdir()  # the rename onto it fails
    with pytest.raises(OSError):
        write_map_output(str(tmp_path / "map.arrow"), pa.table({"v": [1]}), np.array([0]), 1)
    assert os.listdir(tmp_path) == ["map.arrow"]


def test_an_empty_piece_writes_a_valid_file_with_its_schema(tmp_path: Path):
    empty = pa.table({"k": pa.array([], pa.string()), "v": pa.array([], pa.float64())})
    output = write_map_output(str(tmp_path / "map.arrow"), empty, hash_partitions(empty, ["k"], 3), 3)
    assert output.rows == [0, 0, 0] and output.bytes == [0, 0, 0]
    assert read_partition([output.path], 2).schema == empty.schema
    assert read_partition([output.path], 1).to_batches() == []
    assert choose_boundaries([sample_keys(empty, ["k"], 5)], ["k"], [True], 3).num_rows == 0


def test_partition_ids_out_of_range_are_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="partition id"):
        write_map_output(str(tmp_path / "map.arrow"), pa.table({"v": [1, 2]}), np.array([0, 2]), 2)
    assert os.listdir(tmp_path) == []
