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


def die_once(df: pd.DataFrame, marker: str, bad_id: int) -> pd.DataFrame:
    """SIGKILL the worker running the chunk holding `bad_id`, the first time only (`marker` remembers)."""
    import os
    import signal

    if (df["id"] == bad_id).any() and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return df


def segfault(df: pd.DataFrame) -> pd.DataFrame:
    """Crash the worker with a real segmentation fault, every time: a reader or extension gone wrong."""
    import ctypes

    ctypes.string_at(0)
    return df


def segfault_on(df: pd.DataFrame, bad_id: int) -> pd.DataFrame:
    """Crash the worker with a real segmentation fault on the chunk holding `bad_id`, every time."""
    if (df["id"] == bad_id).any():
        segfault(df)
    return df


def slow_logged(df: pd.DataFrame, log: str, seconds: float = 0.2, gate: str = "") -> pd.DataFrame:
    """Record which chunk (by its first id) was processed, slowly: room to kill the run in the middle.

    While the file `gate` exists and holds a number N, a chunk that finds N or more chunks logged waits (up to
    120 s) until `gate` is removed: the run holds still after about N chunks however slow the machine is."""
    import os
    import time

    def held() -> bool:
        try:
            with open(gate) as fh:
                after = int(fh.read() or 0)
        except FileNotFoundError:
            return False
        if not os.path.exists(log):
            return after <= 0
        with open(log) as fh:
            return len(fh.read().split()) >= after

    deadline = time.monotonic() + 120
    while gate and held() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(seconds)
    with open(log, "a") as fh:
        fh.write(f"{int(df['id'].iloc[0])}\n")
    return df


def refuse_more_than(df: pd.DataFrame, rows: int) -> pd.DataFrame:
    """Fail on a chunk bigger than `rows`: a stage no single small file makes fail."""
    if len(df) > rows:
        raise ValueError(f"{len(df)} rows is more than {rows}")
    return df


def hog_on(df: pd.DataFrame, bad_id: int, megabytes: int, marker: str = "") -> pd.DataFrame:
    """On the chunk holding `bad_id`, take and touch `megabytes` of memory, 16 MB at a time (every time, or
    only the first time when `marker` names a file to remember it by): one skewed chunk among small ones."""
    import os

    import numpy as np

    if (df["id"] == bad_id).any() and not (marker and os.path.exists(marker)):
        if marker:
            open(marker, "w").close()
        held = [np.ones(2 * 2**20) for _ in range(megabytes // 16)]
        return df.assign(held=len(held))
    return df.assign(held=0)
