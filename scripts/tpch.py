"""Run the 22 TPC-H queries, written as datasets, on any engine and check each answer against duckdb's.

    python scripts/tpch.py --sf 0.01 [--engine processes] [--workers N] [--queries 1,3,6] [--stages polars]
                           [--check] [--data DIR]

The tables are generated once per scale factor (duckdb's dbgen, offline) into DIR/sf{SF} and reused. One
line per query (`Q01  ok  0.84s  4 rows`, `Q07  WRONG: <first difference>`, `Q07  FAILED: <error>`), then
`N/M queries expressed, K correct` (M: the queries asked for). Exit code 1 if a query fails or is wrong.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the `tpch` package, however we are started

from pipeline.engines import ENGINES, get_engine  # noqa: E402
from tpch import check, data  # noqa: E402
from tpch.queries import QUERIES, Query, answer  # noqa: E402
from tpch.stage_sets import FORMATS  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sf", type=float, required=True, help="scale factor (1 = about 1 GB of tables)")
    parser.add_argument("--engine", default="processes", choices=list(ENGINES), help="engine to run on")
    parser.add_argument("--workers", type=int, default=None, help="workers (default: all cores)")
    parser.add_argument("--queries", default="", help="comma-separated query numbers (default: all 22)")
    parser.add_argument("--stages", default="pandas", choices=FORMATS, help="batch format of the per-chunk stages")
    parser.add_argument("--check", action="store_true", help="compare every answer with duckdb's")
    parser.add_argument("--data", type=Path, default=data.DEFAULT_ROOT, help="where generated tables are kept")
    return parser.parse_args(argv)


def chosen(text: str) -> list[int]:
    """Query numbers from `1,3,6` (empty: all of them); an unknown number is an error."""
    numbers = [int(part) for part in text.split(",") if part.strip()] or sorted(QUERIES)
    unknown = [n for n in numbers if n not in QUERIES]
    if unknown:
        raise SystemExit(f"error: no TPC-H query {unknown[0]} (there are 1 to 22)")
    return numbers


def run_one(query: Query, where: Path, engine: Any, reference: Any, stages: str) -> tuple[str, bool | None]:
    """One query's report line and whether it is right (None: not checked)."""
    started = time.perf_counter()
    try:
        result = answer(query, where, engine, stages=stages)
    except Exception as exc:  # reported as the query's failure; the other queries still run
        return f"{query.label}  FAILED: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}", False
    seconds = time.perf_counter() - started
    done = f"{seconds:.2f}s  {len(result)} row{'' if len(result) == 1 else 's'}"
    if reference is None:
        return f"{query.label}  ran  {done}", None
    found = check.difference(check.reference(reference, query.number), check.answer_rows(result), query.order_by)
    return (f"{query.label}  WRONG: {found}", False) if found else (f"{query.label}  ok  {done}", True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    numbers = chosen(args.queries)
    where = data.generate(args.data, args.sf)
    reference = check.reference_connection(where) if args.check else None
    outcomes: list[bool | None] = []
    with get_engine(args.engine, workers=args.workers) as engine:
        for number in numbers:
            line, outcome = run_one(QUERIES[number], where, engine, reference, args.stages)
            print(line, flush=True)
            outcomes.append(outcome)
    verdict = f"{outcomes.count(True)} correct" if args.check else "not checked"
    print(f"{len(numbers)}/{len(numbers)} queries expressed, {verdict}")  # all 22 are expressed as datasets
    return 1 if False in outcomes else 0


if __name__ == "__main__":
    sys.exit(main())
