"""Built-in cleaning stages: drop, filter, rename and fix values per chunk.

Each function sees one chunk and returns a new DataFrame; none of them look
at other chunks, so results do not depend on how the table was split
(except ``deduplicate``, see its docstring).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from stages._checks import as_list, evaluate, require_columns, require_mapping


def drop_nulls(df: pd.DataFrame, columns: str | Iterable[str] | None = None) -> pd.DataFrame:
    """Drop rows with a missing value in ``columns`` (default: any column).

    >>> df = pd.DataFrame({"a": [1.0, None, 3.0], "b": ["x", "y", None]})
    >>> drop_nulls(df, columns=["a"])
         a    b
    0  1.0    x
    2  3.0  NaN
    >>> len(drop_nulls(df))
    1
    """
    if columns is None:
        return df.dropna()
    names = as_list(columns, "drop_nulls", "columns")
    require_columns(df, names, "drop_nulls")
    return df.dropna(subset=names)


def filter_rows(df: pd.DataFrame, where: str, values: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Keep rows where the ``DataFrame.query`` expression ``where`` is true.

    Rows where it evaluates to missing are dropped. Quote column names with
    spaces in backticks. ``@name`` is ``values[name]``: a config's dates and
    lists, e.g. ``where = "day < @cutoff"``, ``values = { cutoff = 1995-03-15 }``.

    >>> df = pd.DataFrame({"dist": [1.5, 0.0, -2.0], "fare": [7.0, 3.0, 5.0]})
    >>> filter_rows(df, "dist > 0 and fare >= 5")
       dist  fare
    0   1.5   7.0
    """
    mask = evaluate(df, where, "filter_rows", values)
    if not (isinstance(mask, pd.Series) and pd.api.types.is_bool_dtype(mask.dtype)):
        kind = mask.dtype if isinstance(mask, pd.Series) else type(mask).__name__
        raise ValueError(f"filter_rows: where={where!r} must give True/False per row, "
                         f"got {kind}")
    return df[mask.fillna(False).astype(bool)]


def drop_columns(df: pd.DataFrame, columns: str | Iterable[str]) -> pd.DataFrame:
    """Remove ``columns``; all of them must exist, so typos fail loudly.

    >>> df = pd.DataFrame({"a": [1], "b": [2], "c": [3]})
    >>> list(drop_columns(df, ["a", "c"]).columns)
    ['b']
    """
    names = as_list(columns, "drop_columns", "columns")
    require_columns(df, names, "drop_columns")
    return df.drop(columns=names)


def rename(df: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """Rename columns with an ``{old: new}`` mapping.

    >>> df = pd.DataFrame({"dep_delay": [3.0]})
    >>> list(rename(df, {"dep_delay": "delay_min"}).columns)
    ['delay_min']
    """
    mapping = require_mapping(columns, "rename", "columns")
    require_columns(df, mapping, "rename")
    kept = [c for c in df.columns if c not in mapping]
    new_names = kept + list(mapping.values())
    clashes = sorted({n for n in new_names if new_names.count(n) > 1})
    if clashes:
        raise ValueError(f"rename: would create duplicate column(s) {clashes!r}")
    return df.rename(columns=mapping)


def cast(df: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    """Convert columns with ``{column: dtype}`` (any dtype ``astype`` accepts).

    Plain ``"category"`` is refused: each chunk would infer its own categories,
    so chunks would no longer share a dtype. Use ``"str"`` instead.

    >>> df = pd.DataFrame({"n": ["1", "2"], "x": [1.5, 2.5]})
    >>> cast(df, {"n": "int64", "x": "float32"}).dtypes.astype(str).to_dict()
    {'n': 'int64', 'x': 'float32'}
    """
    mapping = require_mapping(types, "cast", "types")
    require_columns(df, mapping, "cast")
    out = df.copy(deep=False)
    for col, dtype in mapping.items():
        if isinstance(dtype, str) and dtype.strip() == "category":
            raise ValueError(f"cast: column {col!r} to 'category' would give each chunk "
                             "different categories; cast to 'str' instead")
        try:
            out[col] = out[col].astype(dtype)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"cast: cannot cast column {col!r} to {dtype!r}: {exc}") from exc
    return out


def _bound(value: object, col: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"clip: bounds for {col!r} must be numbers, got {value!r}")
    return None if math.isinf(value) else value


def clip(df: pd.DataFrame, columns: dict[str, list[float]]) -> pd.DataFrame:
    """Limit numeric columns to ``{column: [lo, hi]}``; values outside are set to the bound.

    Use ``-inf``/``inf`` (or None) for an open side; TOML writes them as ``-inf``, ``inf``.

    >>> df = pd.DataFrame({"speed": [-5.0, 300.0, 900.0]})
    >>> clip(df, {"speed": [0, 650]})["speed"].tolist()
    [0.0, 300.0, 650.0]
    """
    mapping = require_mapping(columns, "clip", "columns")
    require_columns(df, mapping, "clip")
    out = df.copy(deep=False)
    for col, bounds in mapping.items():
        if isinstance(bounds, (str, bytes)) or not hasattr(bounds, "__len__") or len(bounds) != 2:
            raise ValueError(f"clip: bounds for {col!r} must be [lo, hi], got {bounds!r}")
        lo, hi = (_bound(b, col) for b in bounds)
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"clip: lower bound {lo} > upper bound {hi} for {col!r}")
        if not pd.api.types.is_numeric_dtype(out[col].dtype):
            raise ValueError(f"clip: column {col!r} is {out[col].dtype}, not numeric")
        out[col] = out[col].clip(lower=lo, upper=hi)
    return out


def deduplicate(df: pd.DataFrame, subset: str | Iterable[str] | None = None,
                keep: str = "first") -> pd.DataFrame:
    """Drop repeated rows (judged on ``subset``, default all columns) within a chunk only.

    Duplicates that land in different chunks are not detected; dedupe on a
    key the source is partitioned by, or in a later whole-table step.

    >>> df = pd.DataFrame({"id": [1, 1, 2], "v": [10, 11, 12]})
    >>> deduplicate(df, subset=["id"])["v"].tolist()
    [10, 12]
    """
    if keep not in ("first", "last"):
        raise ValueError(f"deduplicate: keep must be 'first' or 'last', got {keep!r}")
    names = None
    if subset is not None:
        names = as_list(subset, "deduplicate", "subset")
        require_columns(df, names, "deduplicate")
    return df.drop_duplicates(subset=names, keep=keep)
