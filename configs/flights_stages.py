"""Our own stages for the flights job; configs next to this file can use them.

Referenced from flights.toml as ``uses = "flights_stages:add_speed"``.
"""

import pandas as pd


def drop_cancelled(df: pd.DataFrame) -> pd.DataFrame:
    """Drop cancelled or diverted flights: no departure, arrival or air time recorded."""
    flown = df[["dep_time", "arr_time", "air_time"]].notna().all(axis=1)
    return df[flown]


def add_speed(df: pd.DataFrame) -> pd.DataFrame:
    """Average ground speed in miles per hour, to spot suspicious air times."""
    return df.assign(speed_mph=df["distance"] / (df["air_time"] / 60))


def flag_delays(df: pd.DataFrame, threshold: float = 15) -> pd.DataFrame:
    """Mark flights at least ``threshold`` minutes late (the usual 15-minute rule).

    A flight with no recorded delay counts as neither late nor on time.
    """
    arr_known = df["arr_delay"].notna()
    return df.assign(
        dep_late=df["dep_delay"] >= threshold,
        arr_late=df["arr_delay"] >= threshold,
        on_time=arr_known & (df["arr_delay"] < threshold),
    )
