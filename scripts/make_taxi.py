"""Generate a deterministic synthetic taxi-trips dataset at any scale.

Used by ``configs/taxi.toml`` and the benchmarks. Each file is drawn from its
own ``numpy.random.default_rng([seed, file_index])``, so the bytes depend only
on the arguments, not on how many workers wrote them or in which order.

    python scripts/make_taxi.py --rows 10_000_000 --files 40 --out data/taxi --seed 0
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "data" / "taxi"
MARKER = "_generated.json"
FILE_GLOB = "trips-*.parquet"
# Bump when the generated data changes, so cached outputs are regenerated.
GENERATOR_VERSION = 1

PAYMENT_TYPES = ["card", "cash", "no_charge", "dispute"]
PAYMENT_P = [0.72, 0.25, 0.02, 0.01]
N_ZONES = 265
# Fractions of deliberately bad rows, for cleaning stages to find.
P_BAD_TIME = 0.003       # dropoff before pickup
P_ZERO_DIST = 0.01       # trip_distance == 0
P_NEG_DIST = 0.002       # trip_distance < 0
P_NULL_PASSENGERS = 0.03
P_NEG_AMOUNT = 0.005     # fare, tip and total all negative (voided trips)

YEAR_START = np.datetime64("2024-01-01T00:00:00", "us")
YEAR_US = 366 * 86_400 * 1_000_000
# Relative pickup frequency by hour of day: quiet nights, evening peak.
HOUR_WEIGHTS = np.array([
    3.0, 2.2, 1.6, 1.1, 0.9, 1.0, 2.0, 3.5, 4.5, 4.6, 4.6, 4.8,
    5.0, 5.0, 5.2, 5.4, 5.6, 6.2, 6.8, 6.5, 5.8, 5.3, 4.8, 3.9,
])
HOUR_P = HOUR_WEIGHTS / HOUR_WEIGHTS.sum()
# Zone popularity follows a power law over a fixed shuffle of zone ids
# (37 is coprime with 265, so this is a permutation), shared by all files.
_RANK = (np.arange(N_ZONES) * 37) % N_ZONES + 1
ZONE_P = 1.0 / _RANK**0.7
ZONE_P /= ZONE_P.sum()


def rows_per_file(rows: int, files: int) -> list[int]:
    """Split ``rows`` as evenly as possible; earlier files get the remainder."""
    base, extra = divmod(rows, files)
    return [base + (i < extra) for i in range(files)]


def file_name(index: int, files: int) -> str:
    return f"trips-{index:0{max(4, len(str(files - 1)))}d}.parquet"


def make_trips(n: int, seed: int, file_index: int, files: int) -> pd.DataFrame:
    """Draw one file's trips; file ``i`` covers the ``i``-th slice of 2024."""
    rng = np.random.default_rng([seed, file_index])
    window = YEAR_US // files
    base = file_index * window + rng.integers(0, window, n)
    day = base // (86_400 * 1_000_000)
    hour = rng.choice(24, size=n, p=HOUR_P)
    us_in_hour = rng.integers(0, 3_600 * 1_000_000, n)
    offset = day * 86_400 * 1_000_000 + hour * 3_600 * 1_000_000 + us_in_hour
    pickup = YEAR_START + np.sort(offset).astype("timedelta64[us]")

    minutes = np.clip(rng.lognormal(np.log(12.0), 0.6, n), 1.0, 180.0)
    mph = np.clip(rng.lognormal(np.log(11.0), 0.35, n), 2.0, 60.0)
    distance = np.round(mph * minutes / 60.0, 2)
    fare = np.round(3.0 + 1.75 * distance + 0.70 * minutes, 2)

    payment = rng.choice(len(PAYMENT_TYPES), size=n, p=PAYMENT_P).astype(np.int8)
    tip_pct = rng.choice([0.15, 0.18, 0.20, 0.22, 0.25, 0.30], size=n)
    tip_pct = tip_pct + rng.normal(0.0, 0.01, n)
    tips = (payment == 0) & (rng.random(n) < 0.85)
    tip = np.where(tips, np.round(fare * tip_pct, 2), 0.0)
    tolls = np.where(rng.random(n) < 0.05, 6.94, 0.0)
    total = np.round(fare + tip + tolls + 2.50, 2)

    passengers = rng.choice(np.arange(1, 7, dtype=np.int8), size=n,
                            p=[0.70, 0.15, 0.06, 0.04, 0.03, 0.02])

    # Bad rows, drawn independently so several can hit the same trip.
    bad_time = rng.random(n) < P_BAD_TIME
    minutes = np.where(bad_time, -minutes, minutes)
    dist_draw = rng.random(n)
    distance = np.where(dist_draw < P_ZERO_DIST, 0.0, distance)
    distance = np.where(dist_draw > 1.0 - P_NEG_DIST, -distance, distance)
    null_passengers = rng.random(n) < P_NULL_PASSENGERS
    sign = np.where(rng.random(n) < P_NEG_AMOUNT, -1.0, 1.0)

    dropoff = pickup + np.round(minutes * 60e6).astype("timedelta64[us]")
    return pd.DataFrame({
        "vendor_id": rng.choice(np.array([1, 2], dtype=np.int8), size=n, p=[0.4, 0.6]),
        "pickup_at": pickup,
        "dropoff_at": dropoff,
        "passenger_count": pd.arrays.IntegerArray(passengers, null_passengers),
        "trip_distance": distance,
        "pickup_zone": rng.choice(np.arange(1, N_ZONES + 1, dtype=np.int16), size=n, p=ZONE_P),
        "dropoff_zone": rng.choice(np.arange(1, N_ZONES + 1, dtype=np.int16), size=n, p=ZONE_P),
        "payment_type": pd.Categorical.from_codes(payment, categories=PAYMENT_TYPES),
        "fare_amount": sign * fare,
        "tip_amount": sign * tip,
        "total_amount": sign * total,
    })


def _write_file(task: tuple[Path, int, int, int, int, int]) -> int:
    """Worker: generate and write one file; returns bytes written."""
    out, index, n, seed, files, row_group_rows = task
    table = pa.Table.from_pandas(make_trips(n, seed, index, files), preserve_index=False)
    path = out / file_name(index, files)
    pq.write_table(table, path, row_group_size=row_group_rows)
    return path.stat().st_size


def _cached(out: Path, params: dict) -> bool:
    """True if ``out`` was generated with exactly these parameters and is complete."""
    try:
        previous = json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return False
    if previous != params:
        return False
    names = {file_name(i, params["files"]) for i in range(params["files"])}
    return all((out / name).is_file() for name in names)


def _replaceable(out: Path) -> bool:
    """Only replace a directory that holds nothing but our own output."""
    return all(p.is_file() and (p.name == MARKER or p.match(FILE_GLOB)) for p in out.iterdir())


def generate_taxi(path: str | Path = DEFAULT_OUT, rows: int = 10_000_000, files: int = 40,
                  seed: int = 0, row_group_rows: int = 250_000, *,
                  workers: int | None = None, force: bool = False) -> bool:
    """Write the dataset to ``path`` unless an identical one is already there.

    Returns True if files were written, False if the cached output was reused.
    Output is built in a sibling temp directory and renamed into place.
    """
    if rows < 0 or files < 1 or row_group_rows < 1:
        raise ValueError("need rows >= 0, files >= 1 and row_group_rows >= 1")
    out = Path(path).resolve()
    params = {"rows": rows, "files": files, "seed": seed,
              "row_group_rows": row_group_rows, "version": GENERATOR_VERSION}
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory")
    if out.exists() and not force:
        if _cached(out, params):
            return False
        if not _replaceable(out):
            raise FileExistsError(f"{out} holds files this generator did not write; "
                                  "pass force=True to replace it")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        tasks = [(tmp, i, n, seed, files, row_group_rows)
                 for i, n in enumerate(rows_per_file(rows, files))]
        workers = min(workers or os.cpu_count() or 1, files)
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                list(pool.map(_write_file, tasks))
        else:
            for task in tasks:
                _write_file(task)
        (tmp / MARKER).write_text(json.dumps(params, indent=2) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000,
                        help="total rows (underscores allowed: 10_000_000)")
    parser.add_argument("--files", type=int, default=40, help="number of Parquet files")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--row-group-rows", type=int, default=250_000)
    parser.add_argument("--workers", type=int, default=None,
                        help="processes (default: all cores); output is identical")
    parser.add_argument("--force", action="store_true", help="regenerate even if cached")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        wrote = generate_taxi(args.out, args.rows, args.files, args.seed, args.row_group_rows,
                              workers=args.workers, force=args.force)
    except (ValueError, FileExistsError) as exc:
        print(f"error: {exc}")
        return 1
    out = args.out.resolve()
    size = sum(f.stat().st_size for f in out.glob(FILE_GLOB))
    if not wrote:
        print(f"{out} already holds {args.rows:,} rows from the same arguments; "
              "nothing to do (--force to regenerate)")
        return 0
    print(f"wrote {args.rows:,} rows in {args.files} files to {out} "
          f"({size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
