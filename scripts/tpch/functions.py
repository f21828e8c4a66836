"""The pandas stages the queries need beyond the built-in ones: SQL's LIKE and SUBSTRING over pandas `.str`,
a constant join key and two CASE expressions; and the discounted-price expression most queries sum. Their
Polars counterparts are in `tpch.polars_stages`.
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


def on_every_row(df: pd.DataFrame) -> pd.DataFrame:
    """A constant join key: joining two tables on it pairs every row of one with every row of the other."""
    return df.assign(every_row=0)


def brazil_volume(df: pd.DataFrame) -> pd.DataFrame:
    """brazil = CASE WHEN nation = 'BRAZIL' THEN volume ELSE 0 END."""
    return df.assign(brazil=df["volume"].where(df["nation"] == "BRAZIL", 0))


def promo_volume(df: pd.DataFrame) -> pd.DataFrame:
    """promo = CASE WHEN p_type LIKE 'PROMO%' THEN volume ELSE 0 END."""
    return df.assign(promo=df["volume"].where(df["p_type"].str.startswith("PROMO"), 0))
