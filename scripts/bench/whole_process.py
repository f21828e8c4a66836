"""`pipeline run` against a hand-written `multiprocessing.Pool` script, as whole processes: the comparison a
reader of a multiprocessing tutorial makes first. Imports, worker start-up and the run all count.

Both do the taxi job with the user's own stage module next to the config/script (clean → transform), then a
group-by of (pickup_zone, payment_type); the Pool script is written as carefully as by hand: pyarrow reads of
the needed columns, a partial per file, one combine. Each run is a fresh process, the two interleaved;
medians of `repeats`, the ratio against the target (≤ 0.9).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from dev import compile_project

ROOT = Path(__file__).resolve().parents[2]
TARGET = 0.9
STAGES = '''
import pandas as pd


def clean(df: pd.DataFrame) -> pd.DataFrame:
    keep = (df["passenger_count"].notnull() & (df["fare_amount"] >= 0) & (df["trip_distance"] > 0)
            & (df["dropoff_at"] >= df["pickup_at"]) & (df["total_amount"] >= 0))
    return df[keep]


def transform(df: pd.DataFrame) -> pd.DataFrame:
    minutes = (df["dropoff_at"] - df["pickup_at"]).dt.total_seconds() / 60
    return df.assign(trip_minutes=minutes, tip_pct=100 * df["tip_amount"] / df["fare_amount"])
'''
COLUMNS = ["pickup_at", "dropoff_at", "passenger_count", "trip_distance", "pickup_zone", "payment_type",
           "fare_amount", "tip_amount", "total_amount"]
CONFIG = '''
[source]
path = "{data}"
columns = {columns!r}

[[stages]]
name = "clean"
uses = "taxistages:clean"

[[stages]]
name = "transform"
uses = "taxistages:transform"

[[stages]]
name = "by_zone_payment"
uses = "stages.analyze:aggregate"
params = {{ by = ["pickup_zone", "payment_type"], aggs = {{ trips = ["fare_amount", "count"], mean_fare = ["fare_amount", "mean"], mean_tip_pct = ["tip_pct", "mean"], total_amount = ["total_amount", "sum"], max_distance = ["trip_distance", "max"] }} }}

[sink]
path = "{out}"
mode = "overwrite"

[engine]
name = "processes"
workers = {workers}
'''
POOL = '''
import glob
import multiprocessing
import sys

import pandas as pd
import pyarrow.parquet as pq

from taxistages import clean, transform

COLUMNS = {columns!r}
KEYS = ["pickup_zone", "payment_type"]


def partial(path):
    df = transform(clean(pq.read_table(path, columns=COLUMNS).to_pandas()))
    return df.groupby(KEYS, observed=True, sort=False).agg(
        trips=("fare_amount", "count"), fare_sum=("fare_amount", "sum"), tip_sum=("tip_pct", "sum"),
        tip_n=("tip_pct", "count"), total_amount=("total_amount", "sum"), max_distance=("trip_distance", "max"))


if __name__ == "__main__":
    files = sorted(glob.glob({data!r} + "/*.parquet"))
    with multiprocessing.Pool({workers}) as pool:
        parts = pool.map(partial, files, chunksize=1)
    state = pd.concat(parts).groupby(level=KEYS, observed=True).agg(
        {{"trips": "sum", "fare_sum": "sum", "tip_sum": "sum", "tip_n": "sum", "total_amount": "sum",
          "max_distance": "max"}})
    result = pd.DataFrame({{"trips": state["trips"], "mean_fare": state["fare_sum"] / state["trips"],
                           "mean_tip_pct": state["tip_sum"] / state["tip_n"], "total_amount": state["total_amount"],
                           "max_distance": state["max_distance"]}}).reset_index()
    result.to_parquet({out!r}, index=False)
'''


def main(data: str, workers: int, repeats: int) -> dict[str, float]:
    compile_project(sys.executable)  # the framework as installed: byte-compiled, as a wheel install leaves it
    folder = Path(tempfile.mkdtemp(prefix="whole-process-"))
    try:
        (folder / "taxistages.py").write_text(STAGES)
        ours, pool = folder / "ours.parquet", folder / "pool.parquet"
        (folder / "taxi.toml").write_text(CONFIG.format(data=data, columns=COLUMNS, out=ours, workers=workers))
        (folder / "pool_script.py").write_text(POOL.format(data=data, columns=COLUMNS, out=str(pool),
                                                           workers=workers))
        commands = {"ours": [str(Path(sys.executable).parent / "pipeline"), "run", "taxi.toml", "--quiet"],
                    "pool": [sys.executable, "pool_script.py"]}
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(repeats):
            for name, command in commands.items():
                started = time.perf_counter()
                subprocess.run(command, cwd=folder, check=True, capture_output=True)
                times[name].append(time.perf_counter() - started)
        _same_answer(ours, pool)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    medians = {name: statistics.median(t) for name, t in times.items()}
    ratio = medians["ours"] / medians["pool"]
    print(f"whole process, taxi job, {workers} workers, median of {repeats}: pipeline run {medians['ours']:.2f} s, "
          f"Pool script {medians['pool']:.2f} s, ours/Pool = {ratio:.2f} (target ≤ {TARGET}: "
          f"{'met' if ratio <= TARGET else 'missed'})")
    return {**medians, "ratio": ratio}


def _same_answer(ours: Path, pool: Path) -> None:
    keys = ["pickup_zone", "payment_type"]
    a = pd.read_parquet(ours).sort_values(keys).reset_index(drop=True)
    b = pd.read_parquet(pool).sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[b.columns], b, check_dtype=False, check_categorical=False, rtol=1e-9)
