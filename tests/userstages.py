"""Stage functions for the tests, standing in for a user's own module."""

import pandas as pd


def long_flights(df: pd.DataFrame, min_distance: int = 1000) -> pd.DataFrame:
    return df[df["distance"] >= min_distance]


def add_speed(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(score=df["distance"] / 100 + df["delay"].fillna(0))


def fail_on(df: pd.DataFrame, bad_id: int) -> pd.DataFrame:
    if (df["id"] == bad_id).any():
        raise ValueError(f"row {bad_id} is poisoned")
    return df
