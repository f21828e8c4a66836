"""Benchmark this framework side by side with its peers on the taxi job, each run in a fresh process.

Peers: a hand-written multiprocessing Pool, pandas, Dask DataFrame, Ray Data, Polars and DuckDB; plus
per-task overhead, a scaling curve and peak memory at 1× and 10× the data.

    python scripts/benchmark.py [--rows 10_000_000 --files 40 --repeats 3 --json bench-results/latest.json]
    python scripts/benchmark.py --quick            # small scales, one repeat: a couple of minutes
    python scripts/benchmark.py --markdown bench-results/latest.json   # the README's tables from a run
    python scripts/benchmark.py --s3               # reading the taxi data from a local S3 server vs disk

The TPC-H suite (the 22 queries of `scripts/tpch.py`, this framework on processes, dask and ray against
DuckDB, Polars, pandas, Dask DataFrame and Ray Data, and against itself on float64 data):

    python scripts/benchmark.py --tpch [--sf 1] [--queries 1,3] [--only duckdb,ours-processes] [--limit 300]
    python scripts/benchmark.py --tpch --sf 10 --only ours-processes --baseline bench-results/tpch-sf1.json

Prints tables and PASS/FAIL per target (exit code 0 either way); exits 1 if any system gives a different
answer or fails to run. `--run-one SYSTEM` is the child side of one measurement (used internally).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `bench` and `make_taxi`, however we are started

from bench.spec import RunSpec  # noqa: E402

QUICK = {"rows": 1_000_000, "files": 8, "repeats": 1, "tasks": 200, "memory_base": (200_000, 2)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="total rows (underscores allowed)")
    parser.add_argument("--files", type=int, default=40, help="Parquet files the rows are spread over")
    parser.add_argument("--repeats", type=int, default=3, help="runs per system; medians are reported")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="workers/threads for every system")
    parser.add_argument("--tasks", type=int, default=2000, help="tiny tasks in the per-task overhead runs")
    parser.add_argument("--json", default="bench-results/latest.json", help="where to write all the numbers")
    parser.add_argument("--quick", action="store_true",
                        help="1M rows in 8 files, 1 repeat, 200 tiny tasks, small memory scales")
    parser.add_argument("--only", default="", help="comma-separated labels to run (e.g. pool,ours-processes)")
    parser.add_argument("--breakdown", action="store_true",
                        help="only time each step of a chunk, ours against the Pool's function, in this process")
    parser.add_argument("--markdown", metavar="JSON", help="only print the README tables of a complete run's JSON")
    parser.add_argument("--tpch", action="store_true", help="run the TPC-H suite instead of the taxi job")
    parser.add_argument("--sf", type=float, default=1.0, help="TPC-H scale factor")
    parser.add_argument("--queries", default="", help="TPC-H: comma-separated query numbers (default: all)")
    parser.add_argument("--limit", type=float, default=300.0, help="TPC-H: seconds a query may take before "
                        "it counts as not run")
    parser.add_argument("--baseline", default="", help="TPC-H: a SF 1 run's JSON, for the peak-memory target")
    parser.add_argument("--s3", action="store_true",
                        help="only time reading the taxi data from a local S3 server against local disk")
    parser.add_argument("--whole-process", action="store_true",
                        help="pipeline run against a hand-written Pool script, as whole processes")
    parser.add_argument("--imports", action="store_true",
                        help="only the import-time budget of `pipeline run` on the taxi job")
    parser.add_argument("--recording", action="store_true",
                        help="the taxi job with the run's timeline recorded and not: what recording costs")
    parser.add_argument("--waiting", action="store_true",
                        help="stages that wait: 2,000 slow URLs fetched, and what the pipe stage costs per chunk")
    parser.add_argument("--run-one", metavar="SYSTEM", help=argparse.SUPPRESS)
    parser.add_argument("--run-tpch", metavar="SYSTEM", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    parser.add_argument("--tiny-file", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        given = {a.lstrip("-").split("=")[0].replace("-", "_") for a in (argv or sys.argv[1:]) if a.startswith("--")}
        for key, value in QUICK.items():
            if key not in given:
                setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.run_one:
        from bench.child import run_one

        return run_one(args.run_one, RunSpec(args.data, args.workers, args.scratch, args.tasks, args.tiny_file))
    if args.run_tpch:
        from bench.tpch_child import run_tpch
        from bench.tpch_systems import TpchSpec

        return run_tpch(args.run_tpch, TpchSpec(args.data, args.workers, args.scratch, _numbers(args.queries)))
    if args.markdown:
        from bench.markdown import render

        print(render(args.markdown))
        return 0
    if args.breakdown:
        from bench import breakdown, data

        breakdown.main(data.taxi(args.rows, args.files))
        return 0
    if args.tpch:
        return _tpch(args, argv)
    if args.whole_process:
        from bench import data, whole_process

        whole_process.main(data.taxi(args.rows, args.files), args.workers, args.repeats)
        return 0
    if args.imports:
        from bench import data, imports, report

        imports.show(imports.budget(data.taxi(args.rows, args.files), args.workers), report.console)
        return 0
    if args.recording:
        from bench import data, recording

        recording.main(data.taxi(args.rows, args.files), args.workers, max(args.repeats, 5))
        return 0
    if args.waiting:
        from bench import waiting

        waiting.main(args.workers, args.repeats)
        return 0
    if args.s3:
        from bench import data, s3_read

        s3_read.main(data.taxi(args.rows, args.files), args.workers, args.repeats)
        return 0
    from bench.suite import Options
    from bench.suite import main as run_suite

    base = getattr(args, "memory_base", (args.rows, args.files))
    return run_suite(Options(args.rows, args.files, args.repeats, args.workers, args.tasks, tuple(base), args.json,
                             tuple(s for s in args.only.split(",") if s)))


def _numbers(text: str) -> tuple[int, ...]:
    from tpch.queries import QUERIES

    return tuple(int(n) for n in text.split(",") if n.strip()) or tuple(sorted(QUERIES))


def _tpch(args: argparse.Namespace, argv: list[str] | None) -> int:
    from bench.tpch_suite import TpchOptions, main as run_suite
    from bench.tpch_systems import DEFAULT_LABELS

    given = {a.split("=")[0] for a in (argv or sys.argv[1:])}
    json_path = args.json if "--json" in given else f"bench-results/tpch-sf{args.sf:g}.json"
    labels = tuple(s for s in args.only.split(",") if s) or DEFAULT_LABELS
    repeats = args.repeats if "--repeats" in given else 1
    return run_suite(TpchOptions(args.sf, repeats, args.workers, labels, _numbers(args.queries), args.limit,
                                 json_path, args.baseline))


if __name__ == "__main__":
    raise SystemExit(main())
