"""The taxi job, once, as plain pandas: every system runs these steps, written in its own idiom.

clean (drop null passenger_count, negative fare or total, non-positive distance, dropoff before pickup)
→ transform (trip minutes, mph, tip percent) → per (pickup_zone, payment_type): trips, mean fare,
mean tip percent, total amount, max distance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = [
    "pickup_at", "dropoff_at", "passenger_count", "trip_distance",
    "pickup_zone", "payment_type", "fare_amount", "tip_amount", "total_amount",
]
KEYS = ["pickup_zone", "payment_type"]
# output = [input column, function]: the framework's `aggregate` spelling, pandas named aggregation
AGGS = {
    "trips": ["fare_amount", "count"],
    "mean_fare": ["fare_amount", "mean"],
    "mean_tip_pct": ["tip_pct", "mean"],
    "total_amount": ["total_amount", "sum"],
    "max_distance": ["trip_distance", "max"],
}
RESULT_COLUMNS = [*KEYS, *AGGS]


def clean(df: pd.DataFrame) -> pd.DataFrame:
    """Drop the generator's planted bad rows. Works unchanged on a Dask DataFrame."""
    keep = (
        df["passenger_count"].notnull()
        & (df["fare_amount"] >= 0)
        & (df["trip_distance"] > 0)
        & (df["dropoff_at"] >= df["pickup_at"])
        & (df["total_amount"] >= 0)
    )
    return df[keep]


def transform(df: pd.DataFrame) -> pd.DataFrame:
    """Derived columns. Works unchanged on a Dask DataFrame."""
    minutes = (df["dropoff_at"] - df["pickup_at"]).dt.total_seconds() / 60
    return df.assign(
        trip_minutes=minutes,
        mph=df["trip_distance"] / (minutes / 60),
        tip_pct=100 * df["tip_amount"] / df["fare_amount"],
    )


def clean_transform(df: pd.DataFrame) -> pd.DataFrame:
    return transform(clean(df))


def named_aggs() -> dict[str, tuple[str, str]]:
    """AGGS as pandas/Dask named aggregation."""
    return {out: (column, fn) for out, (column, fn) in AGGS.items()}


def aggregate_whole(df: pd.DataFrame) -> pd.DataFrame:
    """The group-by over one whole (cleaned, transformed) frame."""
    return df.groupby(KEYS, observed=True).agg(**named_aggs()).reset_index()


# --- hand-written partial aggregation: sums and counts per chunk, combined at the end ---------------

def partial(df: pd.DataFrame) -> pd.DataFrame:
    """One chunk's mergeable state per group: counts, sums and the max."""
    grouped = df.groupby(KEYS, observed=True, sort=False)
    return grouped.agg(
        trips=("fare_amount", "count"),
        fare_sum=("fare_amount", "sum"),
        tip_pct_sum=("tip_pct", "sum"),
        tip_pct_count=("tip_pct", "count"),
        total_amount=("total_amount", "sum"),
        max_distance=("trip_distance", "max"),
    )


def combine(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Merge chunk states and finish the means."""
    state = pd.concat(parts).groupby(level=KEYS, observed=True).agg(
        {"trips": "sum", "fare_sum": "sum", "tip_pct_sum": "sum", "tip_pct_count": "sum",
         "total_amount": "sum", "max_distance": "max"}
    )
    return pd.DataFrame({
        "trips": state["trips"],
        "mean_fare": state["fare_sum"] / state["trips"],
        "mean_tip_pct": state["tip_pct_sum"] / state["tip_pct_count"],
        "total_amount": state["total_amount"],
        "max_distance": state["max_distance"],
    }).reset_index()


def partial_of_file(path: str) -> pd.DataFrame:
    """Read one file's projected columns and reduce it to its partial state."""
    return partial(clean_transform(pd.read_parquet(path, columns=COLUMNS)))


# --- comparing answers across systems --------------------------------------------------------------

def normalize(df: pd.DataFrame) -> pd.DataFrame:
    """One comparable shape: keys as int64 and str, values as int64/float64, sorted by keys."""
    df = df.reset_index(drop=not set(KEYS) - set(df.columns))[RESULT_COLUMNS].copy()
    df["pickup_zone"] = df["pickup_zone"].astype("int64")
    df["payment_type"] = df["payment_type"].astype(str).astype(object)
    df["trips"] = df["trips"].astype("int64")
    for column in RESULT_COLUMNS[3:]:
        df[column] = df[column].astype("float64")
    return df.sort_values(KEYS, ignore_index=True)


def differences(expected: pd.DataFrame, got: pd.DataFrame, rtol: float = 1e-6) -> list[str]:
    """What differs between two normalized results (empty if they agree)."""
    if list(expected.columns) != list(got.columns):
        return [f"columns {list(got.columns)} != {list(expected.columns)}"]
    if len(expected) != len(got):
        return [f"{len(got)} groups != {len(expected)}"]
    problems = []
    for column in KEYS:
        if not expected[column].equals(got[column]):
            problems.append(f"keys differ in {column}")
    if problems:
        return problems
    for column in RESULT_COLUMNS[2:]:
        a, b = expected[column].to_numpy(), got[column].to_numpy()
        bad = ~np.isclose(b, a, rtol=rtol, atol=0.0, equal_nan=True)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            problems.append(f"{column}: {int(bad.sum())} groups differ, e.g. {expected.loc[i, KEYS].tolist()}: "
                            f"{b[i]!r} != {a[i]!r}")
    return problems
