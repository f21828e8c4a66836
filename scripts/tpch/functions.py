"""What the queries share beyond the built-in stages: SQL's LIKE and SUBSTRING as per-chunk stage
functions over pandas `.str`, and the discounted-price expression most queries sum.
"""

from __future__ import annotations

import re

import pandas as pd

# l_extendedprice * (1 - l_discount): the discounted price most queries sum, for `derive`
VOLUME = {"volume": "l_extendedprice * (1 - l_discount)"}


def _like_regex(pattern: str) -> str:
    """SQL LIKE as a regular expression: `%` any characters, `_` one character, the rest literal."""
    return "(?s)" + "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)


def like(df: pd.DataFrame, column: str, pattern: str, negate: bool = False) -> pd.DataFrame:
    """Rows whose `column` matches the SQL LIKE `pattern` (with `negate`: NOT LIKE)."""
    matches = df[column].str.fullmatch(_like_regex(pattern)).fillna(False).astype(bool)
    return df[matches != negate]


def substring(df: pd.DataFrame, column: str, out: str, start: int, length: int) -> pd.DataFrame:
    """`out` = SQL `substring(column FROM start FOR length)` (`start` counts from 1)."""
    return df.assign(**{out: df[column].str.slice(start - 1, start - 1 + length)})
