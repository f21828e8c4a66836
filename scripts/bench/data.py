"""Input data for the benchmark: the taxi trips at a given scale (cached), and the tiny-chunks file."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from make_taxi import generate_taxi

from bench.overhead import make_tiny_file

ROOT = Path(__file__).resolve().parents[2] / "data" / "bench"


def taxi(rows: int, files: int) -> str:
    """`data/bench/taxi-<rows>-<files>/`, generated once per scale by `make_taxi.generate_taxi`."""
    path = ROOT / f"taxi-{rows}-{files}"
    wrote = generate_taxi(path, rows, files)
    print(f"{'generated' if wrote else 'cached'}: {path}", flush=True)
    return str(path)


def tiny(tasks: int, source_dir: str) -> str:
    """One file of `tasks` row groups of 10 rows, cut from the first taxi file."""
    path = ROOT / f"tiny-{tasks}x10.parquet"
    make_tiny_file(str(path), sorted(glob.glob(os.path.join(source_dir, "trips-*.parquet")))[0], tasks)
    return str(path)


def warm_page_cache(*paths: str) -> int:
    """Read every input byte once, so no system pays for the first cold read; returns bytes read."""
    total = 0
    for path in paths:
        names = [path] if os.path.isfile(path) else sorted(glob.glob(os.path.join(path, "*.parquet")))
        for name in names:
            with open(name, "rb") as f:
                while chunk := f.read(1 << 24):
                    total += len(chunk)
    return total
