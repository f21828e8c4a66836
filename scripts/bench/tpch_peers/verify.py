"""Check a peer's queries against the reference answers, in this process:

    python scripts/bench/tpch_peers/verify.py MODULE --sf 0.01 [--queries 1,3] [--ray]

MODULE is a module of this package (`lazy_polars`, `pandas_whole`, `dask_frame`, `ray_data`). One line per
query (`Q01  ok  0.12s` or the first difference); exit code 1 if any is wrong or fails.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # `bench` and `tpch`, however we are started

from tpch import check, data  # noqa: E402
from tpch.queries import QUERIES as ORDERS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module")
    parser.add_argument("--sf", type=float, default=0.01)
    parser.add_argument("--queries", default="")
    parser.add_argument("--ray", action="store_true", help="start a private Ray first")
    args = parser.parse_args(argv)
    peer = importlib.import_module(f"bench.tpch_peers.{args.module}")
    where = data.generate(data.DEFAULT_ROOT, args.sf)
    con = check.reference_connection(where)
    if args.ray:
        from bench.sys_ours import start_ray

        start_ray(2)
    numbers = [int(n) for n in args.queries.split(",") if n.strip()] or sorted(peer.QUERIES)
    failures = 0
    for number in numbers:
        started = time.perf_counter()
        try:
            result = peer.QUERIES[number](str(where))
        except Exception as exc:  # noqa: BLE001 - reported per query
            print(f"Q{number:02d}  FAILED: {type(exc).__name__}: {exc}", flush=True)
            failures += 1
            continue
        seconds = time.perf_counter() - started
        found = check.difference(check.reference(con, number), check.answer_rows(result), ORDERS[number].order_by)
        print(f"Q{number:02d}  {'WRONG: ' + found if found else 'ok'}  {seconds:.2f}s", flush=True)
        failures += bool(found)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
