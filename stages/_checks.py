"""Parameter checks shared by the built-in stages.

Errors name the stage and the offending column(s); the framework adds which
stage instance and chunk failed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd
from pandas.errors import UndefinedVariableError


def as_list(value: str | Iterable[str], stage: str, param: str) -> list[str]:
    """Accept one column name or a list of them, as configs write either."""
    if isinstance(value, str):
        return [value]
    try:
        names = list(value)
    except TypeError:
        raise ValueError(f"{stage}: {param} must be a column name or a list of names, "
                         f"got {value!r}") from None
    bad = [v for v in names if not isinstance(v, str)]
    if bad:
        raise ValueError(f"{stage}: {param} must contain column names, got {bad!r}")
    return names


def require_columns(df: pd.DataFrame, columns: Iterable[str], stage: str) -> None:
    """Raise KeyError naming every requested column the chunk lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"{stage}: missing column(s) {', '.join(map(repr, missing))}; "
                       f"available: {', '.join(map(str, df.columns))}")


def require_mapping(value: object, stage: str, param: str) -> dict:
    """Mapping parameters come from TOML tables; catch lists and strings early."""
    if not isinstance(value, dict) or not value:
        raise ValueError(f"{stage}: {param} must be a non-empty table/dict, got {value!r}")
    return value


def evaluate(df: pd.DataFrame, expr: str, stage: str) -> pd.Series | object:
    """Run ``DataFrame.eval`` on columns only; name unknown columns in a KeyError.

    Local and global Python names are hidden so a config cannot reach into
    the stage's own variables with ``@name``.
    """
    if not isinstance(expr, str) or not expr.strip():
        raise ValueError(f"{stage}: expression must be a non-empty string, got {expr!r}")
    try:
        return df.eval(expr, local_dict={}, global_dict={})
    except UndefinedVariableError as exc:
        if "local variable" in str(exc):
            raise ValueError(f"{stage}: @names are not available in {expr!r}; "
                             "write values into the expression") from None
        match = re.search(r"'(.+?)' is not defined", str(exc))
        name = match.group(1) if match else str(exc)
        raise KeyError(f"{stage}: missing column(s) {name!r} in expression {expr!r}; "
                       f"available: {', '.join(map(str, df.columns))}") from None
    except (SyntaxError, NotImplementedError, TypeError, ValueError) as exc:
        raise ValueError(f"{stage}: cannot evaluate {expr!r}: {exc}") from exc
