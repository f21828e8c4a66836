"""Built-in transform stages: new columns, buckets, projections per chunk.

Outputs keep the same dtype in every chunk (e.g. buckets are plain strings,
date parts are nullable integers), so chunks concatenate and write cleanly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from numbers import Real

import pandas as pd

from stages._checks import as_list, evaluate, require_columns, require_mapping

# Part name -> ``Series.dt`` attribute (the short names are deprecated there).
DATETIME_PARTS = {
    "year": "year", "quarter": "quarter", "month": "month", "day": "day",
    "hour": "hour", "minute": "minute", "second": "second",
    "dayofweek": "day_of_week", "dayofyear": "day_of_year", "week": "week",
}


def derive(df: pd.DataFrame, columns: dict[str, str], values: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Add or replace columns from ``DataFrame.eval`` expressions, in order.

    Later expressions may use columns made by earlier ones; ``@name`` is ``values[name]``.

    >>> df = pd.DataFrame({"distance": [100.0, 300.0], "air_time": [30.0, 60.0]})
    >>> derive(df, {"hours": "air_time / 60", "mph": "distance / hours"})
       distance  air_time  hours    mph
    0     100.0      30.0    0.5  200.0
    1     300.0      60.0    1.0  300.0
    """
    mapping = require_mapping(columns, "derive", "columns")
    out = df.copy(deep=False)
    for name, expr in mapping.items():
        value = evaluate(out, expr, "derive", values)
        if isinstance(value, pd.DataFrame):
            raise ValueError(f"derive: {name!r} = {expr!r} must give one value per row; "
                             "write 'new = expression' as a separate entry instead")
        out[name] = value
    return out


def _check_bins(bins: object) -> list[float]:
    if isinstance(bins, Real):
        raise ValueError("bucketize: bins must be a list of edges; a bin count would "
                         "give each chunk different edges")
    if isinstance(bins, str) or not isinstance(bins, Iterable):
        raise ValueError(f"bucketize: bins must be a list of edges, got {bins!r}")
    edges = list(bins)
    if len(edges) < 2 or any(isinstance(b, bool) or not isinstance(b, Real) or math.isnan(b)
                             for b in edges):
        raise ValueError("bucketize: bins must be at least 2 numbers (use -inf/inf for "
                         f"open ends), got {bins!r}")
    if any(lo >= hi for lo, hi in zip(edges, edges[1:])):
        raise ValueError(f"bucketize: bins must be strictly increasing, got {bins!r}")
    return edges


def _edge(x: float) -> str:
    """Format an edge the same way whatever the column dtype (1 -> '1', 1.5 -> '1.5')."""
    return str(int(x)) if math.isfinite(x) and x == int(x) else str(float(x))


def _interval_labels(edges: list[float], right: bool) -> list[str]:
    lo, hi = ("(", "]") if right else ("[", ")")
    return [f"{lo}{_edge(a)}, {_edge(b)}{hi}" for a, b in zip(edges, edges[1:])]


def bucketize(df: pd.DataFrame, column: str, bins: Sequence[float],
              labels: Sequence[str] | None = None, output: str | None = None,
              right: bool = True) -> pd.DataFrame:
    """Label each value of ``column`` with the bin it falls in (``pandas.cut``).

    The result, in ``output`` (default ``f"{column}_bucket"``), holds plain
    strings, not a categorical, so every chunk has the same dtype. Values
    outside all bins or missing become missing. ``right=False`` makes bins
    ``[lo, hi)`` instead of ``(lo, hi]``. Without ``labels`` the label is the
    interval, written the same for int and float columns.

    >>> df = pd.DataFrame({"arr_delay": [-10.0, 5.0, 30.0, 200.0, None]})
    >>> out = bucketize(df, "arr_delay", [-math.inf, 0, 15, 60, math.inf],
    ...                 labels=["early", "on_time", "late", "very_late"], right=False)
    >>> out["arr_delay_bucket"].tolist()
    ['early', 'on_time', 'late', 'very_late', nan]
    >>> bucketize(df, "arr_delay", [0, 60, math.inf])["arr_delay_bucket"].tolist()[1:4]
    ['(0, 60]', '(0, 60]', '(60, inf]']
    """
    require_columns(df, [column], "bucketize")
    edges = _check_bins(bins)
    if labels is None:
        labels = _interval_labels(edges, right)
    else:
        labels = [str(label) for label in labels]
        if len(labels) != len(edges) - 1:
            raise ValueError(f"bucketize: {len(edges) - 1} bins need {len(edges) - 1} labels, "
                             f"got {len(labels)}")
    if not pd.api.types.is_numeric_dtype(df[column].dtype) or \
            pd.api.types.is_bool_dtype(df[column].dtype):
        raise ValueError(f"bucketize: column {column!r} is {df[column].dtype}, not numeric")
    ordered = len(set(labels)) == len(labels)
    buckets = pd.cut(df[column], bins=edges, labels=labels, right=right, ordered=ordered)
    out = df.copy(deep=False)
    out[output or f"{column}_bucket"] = buckets.astype("str")
    return out


def select(df: pd.DataFrame, columns: str | Iterable[str]) -> pd.DataFrame:
    """Keep only ``columns``, in the order given.

    >>> df = pd.DataFrame({"a": [1], "b": [2], "c": [3]})
    >>> list(select(df, ["c", "a"]).columns)
    ['c', 'a']
    """
    names = as_list(columns, "select", "columns")
    require_columns(df, names, "select")
    if len(set(names)) != len(names):
        raise ValueError(f"select: columns listed more than once in {names!r}")
    return df[names]


def _as_datetime(df: pd.DataFrame, column: str) -> pd.Series:
    values = df[column]
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values
    if pd.api.types.is_string_dtype(values.dtype):
        try:
            return pd.to_datetime(values, format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"extract_datetime: column {column!r} has strings that are "
                             f"not ISO 8601 timestamps: {exc}") from exc
    raise ValueError(f"extract_datetime: column {column!r} is {values.dtype}, not datetime")


def extract_datetime(df: pd.DataFrame, column: str,
                     parts: str | Iterable[str] = ("year", "month", "day", "hour", "dayofweek"),
                     prefix: str | None = None, tz: str | None = None) -> pd.DataFrame:
    """Add integer date/time parts of ``column`` as ``f"{prefix}{part}"`` columns.

    ``prefix`` defaults to ``f"{column}_"``; pass ``""`` for bare part names.
    ``tz`` converts tz-aware timestamps first (e.g. UTC to local hours).
    ISO 8601 strings are parsed. Parts are nullable ``Int32`` so chunks with
    and without missing timestamps share a dtype. ``dayofweek``: Monday=0;
    ``week``: ISO week.

    >>> df = pd.DataFrame({"t": pd.to_datetime(["2013-01-01 05:15", None])})
    >>> extract_datetime(df, "t", parts=["month", "hour", "dayofweek"], prefix="")
                        t  month  hour  dayofweek
    0 2013-01-01 05:15:00      1     5          1
    1                 NaT   <NA>  <NA>       <NA>
    """
    require_columns(df, [column], "extract_datetime")
    names = as_list(parts, "extract_datetime", "parts")
    unknown = [p for p in names if p not in DATETIME_PARTS]
    if unknown or not names:
        raise ValueError(f"extract_datetime: unknown part(s) {unknown!r}; "
                         f"choose from {', '.join(DATETIME_PARTS)}")
    values = _as_datetime(df, column)
    if tz is not None:
        if values.dt.tz is None:
            raise ValueError(f"extract_datetime: column {column!r} has no time zone, "
                             "so tz cannot convert it")
        values = values.dt.tz_convert(tz)
    prefix = f"{column}_" if prefix is None else prefix
    out = df.copy(deep=False)
    for part in names:
        attr = DATETIME_PARTS[part]
        raw = values.dt.isocalendar().week if attr == "week" else getattr(values.dt, attr)
        out[f"{prefix}{part}"] = raw.astype("Int32")
    return out
