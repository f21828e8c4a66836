"""Tests for the built-in stages, the example user stages, the configs and the data scripts."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import sys
import tomllib
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stages import clean, transform

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
SCRIPTS = ROOT / "scripts"


def load(path: Path) -> ModuleType:
    """Import a file that is not part of a package, as a config or a user would."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # so process pools can pickle its functions
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def user() -> ModuleType:
    return load(CONFIGS / "flights_stages.py")


@pytest.fixture(scope="module")
def taxi() -> ModuleType:
    return load(SCRIPTS / "make_taxi.py")


@pytest.fixture
def flights_like() -> pd.DataFrame:
    return pd.DataFrame({
        "carrier": ["UA", "AA", "UA", "DL", None],
        "dep_time": [517.0, None, 542.0, 600.0, 700.0],
        "arr_time": [830.0, None, 923.0, None, 900.0],
        "air_time": [227.0, None, 160.0, None, 60.0],
        "distance": [1400, 1416, 1089, 762, 500],
        "dep_delay": [2.0, None, 20.0, 15.0, -5.0],
        "arr_delay": [11.0, None, 33.0, None, 15.0],
    })


# --- clean --------------------------------------------------------------------

def test_drop_nulls_subset_all_and_single_name(flights_like):
    assert clean.drop_nulls(flights_like, columns=["arr_delay"]).index.tolist() == [0, 2, 4]
    assert clean.drop_nulls(flights_like, columns="dep_time").index.tolist() == [0, 2, 3, 4]
    assert clean.drop_nulls(flights_like).index.tolist() == [0, 2]


def test_drop_nulls_names_missing_columns(flights_like):
    with pytest.raises(KeyError, match=r"drop_nulls: missing column\(s\) 'nope', 'gone'"):
        clean.drop_nulls(flights_like, columns=["arr_delay", "nope", "gone"])


def test_filter_rows_keeps_matches_and_drops_missing(flights_like):
    out = clean.filter_rows(flights_like, "arr_delay > 10 and distance < 1400")
    assert out.index.tolist() == [2, 4]
    assert len(flights_like) == 5  # input untouched


@pytest.mark.parametrize("where", [
    "arr_delay > 10 and distance < 1400", "distance > 800 & dep_delay < 16 | arr_delay > 30",
    "distance > 800 & distance < 1400",
    "not (distance > 1000) or carrier in ['DL', 'AA']", "carrier not in ['UA']", "500 < distance <= 1416",
    "`dep_time` > 540", "index > 1", "abs(dep_delay) > 4 and distance % 2 == 0", "~(carrier == 'UA')",
    "dep_delay > @limit",
])
def test_filter_rows_keeps_what_query_keeps(flights_like, where):
    """Expressions are applied to the columns directly, as `DataFrame.eval` applies them: `&` and `|` ranked
    as `and` and `or`, backquoted names, the index."""
    out = clean.filter_rows(flights_like, where, {"limit": 3})
    assert out.index.tolist() == flights_like.query(where, local_dict={"limit": 3}).index.tolist()


def test_filter_rows_reads_ampersand_as_and_over_decimal_arithmetic():
    """Arithmetic on decimals, which `DataFrame.eval` refuses, is applied to the columns: `&` and `|` still
    bind as `and` and `or` there, not as Python's bitwise operators (which would compare `p * (1 - d)` with
    `2 & q`)."""
    decimal = pd.ArrowDtype(pa.decimal128(5, 2))
    df = pd.DataFrame({"p": pd.array([Decimal("1.5"), Decimal("7"), Decimal("9")], dtype=decimal),
                       "d": pd.array([Decimal("0.5")] * 3, dtype=decimal), "q": [1, 2, 5]})
    for where in ("p * (1 - d) > 2 & q < 3", "p * (1 - d) > 2 and q < 3", "not (p * (1 - d) <= 2 | q >= 3)"):
        assert clean.filter_rows(df, where).index.tolist() == [1], where


def test_filter_rows_drops_missing_from_nullable_columns():
    df = pd.DataFrame({"n": pd.array([1, None, 3], dtype="Int64")})
    assert clean.filter_rows(df, "n > 1")["n"].tolist() == [3]


def test_filter_rows_on_strings(flights_like):
    out = clean.filter_rows(flights_like, "carrier == 'UA'")
    assert out.index.tolist() == [0, 2]


def test_filter_rows_unknown_column_is_named(flights_like):
    with pytest.raises(KeyError, match="filter_rows: missing column.*'arr_dely'"):
        clean.filter_rows(flights_like, "arr_dely > 0")


def test_filter_rows_rejects_non_boolean_and_locals(flights_like):
    with pytest.raises(ValueError, match="must give True/False per row"):
        clean.filter_rows(flights_like, "arr_delay + 1")
    with pytest.raises(ValueError, match="unknown @name .* give it in the stage's `values` \\(has: none\\)"):
        clean.filter_rows(flights_like, "arr_delay > @stage")  # a name inside the stage stays hidden
    with pytest.raises(ValueError, match="expression must be a non-empty string"):
        clean.filter_rows(flights_like, "  ")


def test_drop_columns(flights_like):
    assert "carrier" not in clean.drop_columns(flights_like, "carrier").columns
    with pytest.raises(KeyError, match=r"missing column\(s\) 'x', 'y'"):
        clean.drop_columns(flights_like, ["carrier", "x", "y"])


def test_rename_and_its_errors(flights_like):
    out = clean.rename(flights_like, {"dep_delay": "delay"})
    assert "delay" in out.columns and "dep_delay" not in out.columns
    with pytest.raises(KeyError, match="rename: missing column.*'nope'"):
        clean.rename(flights_like, {"nope": "x"})
    with pytest.raises(ValueError, match="duplicate column.*'carrier'"):
        clean.rename(flights_like, {"distance": "carrier"})
    with pytest.raises(ValueError, match="non-empty table"):
        clean.rename(flights_like, ["dep_delay"])


def test_cast_converts_and_names_failures():
    df = pd.DataFrame({"n": ["1", "2"], "f": [1.0, None], "s": ["x", "y"]})
    out = clean.cast(df, {"n": "int16", "f": "Int64"})
    assert out["n"].dtype == np.int16 and str(out["f"].dtype) == "Int64"
    assert df["n"].dtype == "str"  # input untouched
    with pytest.raises(ValueError, match="cannot cast column 's' to 'int64'"):
        clean.cast(df, {"s": "int64"})
    with pytest.raises(ValueError, match="cannot cast column 'f' to 'int64'"):
        clean.cast(df, {"f": "int64"})
    with pytest.raises(ValueError, match="'category' would give each chunk"):
        clean.cast(df, {"s": "category"})
    with pytest.raises(KeyError, match="cast: missing column.*'zz'"):
        clean.cast(df, {"zz": "int64"})


def test_clip_bounds():
    df = pd.DataFrame({"a": [-5.0, 5.0, 50.0], "b": [1, 2, 3], "s": ["x", "y", "z"]})
    out = clean.clip(df, {"a": [0, math.inf], "b": [None, 2]})
    assert out["a"].tolist() == [0.0, 5.0, 50.0]
    assert out["b"].tolist() == [1, 2, 2]
    with pytest.raises(ValueError, match="lower bound 10 > upper bound 1"):
        clean.clip(df, {"a": [10, 1]})
    with pytest.raises(ValueError, match=r"must be \[lo, hi\]"):
        clean.clip(df, {"a": [1]})
    with pytest.raises(ValueError, match="'s' is str, not numeric"):
        clean.clip(df, {"s": [0, 1]})
    with pytest.raises(KeyError, match="clip: missing column.*'c'"):
        clean.clip(df, {"c": [0, 1]})


def test_deduplicate_is_per_chunk():
    df = pd.DataFrame({"id": [1, 1, 2, 2], "v": [10, 11, 12, 13]})
    assert clean.deduplicate(df, subset="id")["v"].tolist() == [10, 12]
    assert clean.deduplicate(df, subset=["id"], keep="last")["v"].tolist() == [11, 13]
    assert len(clean.deduplicate(df)) == 4
    # the same rows split across two chunks: each chunk keeps its own copy
    chunks = [df.iloc[[0, 2]], df.iloc[[1, 3]]]
    assert sum(len(clean.deduplicate(c, subset="id")) for c in chunks) == 4
    with pytest.raises(ValueError, match="keep must be"):
        clean.deduplicate(df, keep="none")


# --- transform ----------------------------------------------------------------

def test_derive_in_order_without_mutating(flights_like):
    out = transform.derive(flights_like, {"hours": "air_time / 60", "mph": "distance / hours",
                                          "ua": "carrier == 'UA'"})
    assert out["mph"].iloc[0] == pytest.approx(1400 / (227 / 60))
    assert out["ua"].tolist() == [True, False, True, False, False]
    assert "hours" not in flights_like.columns


def test_derive_errors_name_the_problem(flights_like):
    with pytest.raises(KeyError, match="derive: missing column.*'speed'.*'speed \\* 2'"):
        transform.derive(flights_like, {"x": "speed * 2"})
    with pytest.raises(ValueError, match="one value per row"):
        transform.derive(flights_like, {"x": "y = distance + 1"})
    with pytest.raises(ValueError, match="cannot evaluate"):
        transform.derive(flights_like, {"x": "distance +"})


DELAY_BINS = [-math.inf, 0, 15, 60, math.inf]
DELAY_LABELS = ["early", "on_time", "late", "very_late"]


def test_bucketize_labels_edges_and_plain_strings():
    df = pd.DataFrame({"d": [-1.0, 0.0, 14.9, 15.0, 60.0, None]})
    left = transform.bucketize(df, "d", DELAY_BINS, labels=DELAY_LABELS, right=False)
    assert left["d_bucket"].tolist()[:5] == ["early", "on_time", "on_time", "late", "very_late"]
    assert pd.isna(left["d_bucket"].iloc[5])
    assert left["d_bucket"].dtype == "str"  # not categorical
    right = transform.bucketize(df, "d", DELAY_BINS, labels=DELAY_LABELS, output="b")
    assert right["b"].tolist()[:5] == ["early", "early", "on_time", "on_time", "late"]


def test_bucketize_default_labels_do_not_depend_on_dtype():
    ints = pd.DataFrame({"x": [5, 50]})
    floats = pd.DataFrame({"x": [5.0, 50.0]})
    a = transform.bucketize(ints, "x", [0, 10, 100])["x_bucket"].tolist()
    b = transform.bucketize(floats, "x", [0.0, 10.0, 100.0])["x_bucket"].tolist()
    assert a == b == ["(0, 10]", "(10, 100]"]
    c = transform.bucketize(floats, "x", [0, 10, math.inf], right=False)["x_bucket"].tolist()
    assert c == ["[0, 10)", "[10, inf)"]


def test_bucketize_outside_bins_and_empty_chunk_keep_dtype():
    out = transform.bucketize(pd.DataFrame({"x": [-5.0]}), "x", [0, 10])
    assert pd.isna(out["x_bucket"].iloc[0]) and out["x_bucket"].dtype == "str"
    empty = transform.bucketize(pd.DataFrame({"x": pd.Series([], dtype=float)}), "x", [0, 10])
    assert empty["x_bucket"].dtype == "str"


def test_bucketize_validation():
    df = pd.DataFrame({"x": [1.0], "s": ["a"]})
    with pytest.raises(ValueError, match="bin count would"):
        transform.bucketize(df, "x", 4)
    with pytest.raises(ValueError, match="strictly increasing"):
        transform.bucketize(df, "x", [0, 10, 5])
    with pytest.raises(ValueError, match="2 bins need 2 labels, got 3"):
        transform.bucketize(df, "x", [0, 1, 2], labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="'s' is str, not numeric"):
        transform.bucketize(df, "s", [0, 1])
    with pytest.raises(KeyError, match="bucketize: missing column.*'arr_delay'"):
        transform.bucketize(df, "arr_delay", [0, 1])


def test_select(flights_like):
    assert transform.select(flights_like, ["distance", "carrier"]).columns.tolist() == [
        "distance", "carrier"]
    with pytest.raises(KeyError, match="select: missing column.*'dst'"):
        transform.select(flights_like, ["carrier", "dst"])
    with pytest.raises(ValueError, match="more than once"):
        transform.select(flights_like, ["carrier", "carrier"])


def test_extract_datetime_parts_and_stable_dtype():
    with_nat = pd.DataFrame({"t": pd.to_datetime(["2013-03-10 07:30", None])})
    without = pd.DataFrame({"t": pd.to_datetime(["2013-12-31 23:59"])})
    a = transform.extract_datetime(with_nat, "t")
    b = transform.extract_datetime(without, "t")
    parts = ["t_year", "t_month", "t_day", "t_hour", "t_dayofweek"]
    assert a.columns.tolist() == ["t", *parts]
    assert a.loc[0, parts].tolist() == [2013, 3, 10, 7, 6]  # a Sunday
    assert a[parts].iloc[1].isna().all()
    assert all(a[p].dtype == b[p].dtype == "Int32" for p in parts)


def test_extract_datetime_tz_strings_and_errors():
    df = pd.DataFrame({"t": ["2013-01-01T10:00:00Z", "2013-07-01T10:00:00Z"], "x": [1, 2]})
    local = transform.extract_datetime(df, "t", parts="hour", prefix="", tz="America/New_York")
    assert local["hour"].tolist() == [5, 6]  # EST, then EDT
    with pytest.raises(ValueError, match="unknown part.*'weekday'"):
        transform.extract_datetime(df, "t", parts=["weekday"])
    with pytest.raises(ValueError, match="'x' is int64, not datetime"):
        transform.extract_datetime(df, "x")
    naive = pd.DataFrame({"t": pd.to_datetime(["2013-01-01"])})
    with pytest.raises(ValueError, match="no time zone"):
        transform.extract_datetime(naive, "t", tz="UTC")
    with pytest.raises(KeyError, match="extract_datetime: missing column.*'time'"):
        transform.extract_datetime(df, "time")


# --- the user's own stages ----------------------------------------------------

def test_drop_cancelled(user, flights_like):
    assert user.drop_cancelled(flights_like).index.tolist() == [0, 2, 4]


def test_add_speed(user, flights_like):
    out = user.add_speed(flights_like)
    assert out["speed_mph"].iloc[4] == pytest.approx(500.0)
    assert pd.isna(out["speed_mph"].iloc[1])


def test_flag_delays_threshold(user, flights_like):
    out = user.flag_delays(flights_like)
    assert out["arr_late"].tolist() == [False, False, True, False, True]  # 15 counts as late
    assert out["on_time"].tolist() == [True, False, False, False, False]  # unknown: neither
    assert out["dep_late"].tolist() == [False, False, True, True, False]
    assert user.flag_delays(flights_like, threshold=30)["arr_late"].sum() == 1


# --- configs ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["flights.toml", "flights_clean.toml", "taxi.toml"])
def test_config_stages_resolve_and_params_bind(name, monkeypatch):
    monkeypatch.syspath_prepend(str(CONFIGS))
    config = tomllib.loads((CONFIGS / name).read_text())
    assert config["source"]["format"] == "parquet"
    names = [s["name"] for s in config["stages"]]
    assert len(set(names)) == len(names)
    for stage in config["stages"]:
        module, func = stage["uses"].split(":")
        fn = getattr(importlib.import_module(module), func)
        inspect.signature(fn).bind(pd.DataFrame(), **stage.get("params", {}))


# --- data scripts -------------------------------------------------------------

def read_bytes(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_make_taxi_is_deterministic_and_cached(taxi, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    args = dict(rows=30_001, files=3, seed=7, row_group_rows=4_000)
    assert taxi.generate_taxi(tmp_path / "a", **args, workers=1) is True
    assert taxi.generate_taxi(tmp_path / "b", **args, workers=2) is True
    assert read_bytes(tmp_path / "a") == read_bytes(tmp_path / "b")
    assert taxi.generate_taxi(tmp_path / "a", **args) is False  # cached
    assert taxi.generate_taxi(tmp_path / "a", **{**args, "seed": 8}, workers=1) is True
    assert read_bytes(tmp_path / "a") != read_bytes(tmp_path / "b")

    meta = pq.ParquetFile(tmp_path / "b" / "trips-0000.parquet").metadata
    assert meta.num_rows == 10_001 and meta.row_group(0).num_rows == 4_000


def test_make_taxi_refuses_foreign_directory(taxi, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        taxi.generate_taxi(tmp_path, rows=10, files=1, workers=1)
    assert (tmp_path / "notes.txt").exists()


def test_make_taxi_schema_and_bad_row_fractions(taxi, tmp_path):
    taxi.generate_taxi(tmp_path, rows=200_000, files=2, seed=0, workers=1)
    df = pd.read_parquet(tmp_path)
    assert len(df) == 200_000
    assert df["vendor_id"].dtype == np.int8 and set(df["vendor_id"]) == {1, 2}
    assert str(df["passenger_count"].dtype) == "Int8"
    assert df["payment_type"].cat.categories.tolist() == ["card", "cash", "no_charge", "dispute"]
    assert df["pickup_zone"].between(1, 265).all() and df["dropoff_zone"].between(1, 265).all()
    assert str(df["pickup_at"].dtype).startswith("datetime64")

    def near(fraction: float, expected: float) -> bool:
        return abs(fraction - expected) < 0.3 * expected

    assert near((df["dropoff_at"] < df["pickup_at"]).mean(), taxi.P_BAD_TIME)
    assert near((df["trip_distance"] == 0).mean(), taxi.P_ZERO_DIST)
    assert near((df["trip_distance"] < 0).mean(), taxi.P_NEG_DIST)
    assert near(df["passenger_count"].isna().mean(), taxi.P_NULL_PASSENGERS)
    assert near((df["fare_amount"] < 0).mean(), taxi.P_NEG_AMOUNT)
    good = df[df["fare_amount"] > 0]
    assert (good["total_amount"] >= good["fare_amount"] + good["tip_amount"]).all()
    assert (df.loc[df["payment_type"] == "cash", "tip_amount"] == 0).all()


def test_prepare_flights_writes_twelve_monthly_files(tmp_path, capsys):
    prep = load(SCRIPTS / "prepare_flights.py")
    out = tmp_path / "flights"
    assert prep.main(["--out", str(out)]) == 0
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"flights-2013-{m:02d}.parquet" for m in range(1, 13)]
    metas = [pq.ParquetFile(f).metadata for f in files]
    assert sum(m.num_rows for m in metas) == 336_776
    assert max(m.row_group(i).num_rows for m in metas for i in range(m.num_row_groups)) == 10_000

    df = pd.read_parquet(files[0])
    assert str(df["time_hour"].dtype) == "datetime64[us, UTC]"
    assert df["carrier"].dtype == "str" and df["dep_delay"].dtype == np.float64
    assert (df["month"] == 1).all() and len(df.columns) == 19

    mtime = files[0].stat().st_mtime_ns
    capsys.readouterr()
    assert prep.main(["--out", str(out)]) == 0
    assert "already holds 336,776 rows" in capsys.readouterr().out
    assert files[0].stat().st_mtime_ns == mtime
