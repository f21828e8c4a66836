"""The TPC-H suite: every system over every query asked for, round-robin in fresh processes, each answer
checked against the reference, then tables, targets and JSON.

    python scripts/benchmark.py --tpch [--sf 1] [--queries 1,3] [--only duckdb,ours-processes] [--repeats 1]
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bench import machine, report, tpch_report
from bench.measure import wait_until_quiet
from bench.tpch_breakdown import breakdown
from bench.tpch_measure import measure_system
from bench.tpch_systems import FLOAT64
from bench.tpch_targets import targets
from tpch import check
from tpch import data as tables
from tpch.queries import QUERIES


@dataclass(frozen=True)
class TpchOptions:
    sf: float
    repeats: int
    workers: int
    labels: tuple[str, ...]
    queries: tuple[int, ...]
    limit: float  # seconds one query may take before it counts as not run
    json_path: str
    baseline: str = ""  # a SF 1 run's JSON, for the memory target of a larger scale factor


def check_answers(records: list[dict], expected: dict[int, tuple]) -> None:
    """Replace each record's answer by its verdict: `ok`, or the first difference from the reference."""
    for record in records:
        answer = record.pop("answer", None)
        if answer is not None:
            found = check.difference(expected[record["query"]], check.answer_rows(answer),
                                     QUERIES[record["query"]].order_by)
            record["verdict"] = "ok" if found is None else f"WRONG: {found}"


def summarise(records: list[dict]) -> dict[str, dict[int, dict]]:
    """Per label and query: median seconds over the runs that finished (quiet ones if any), peak RSS, and
    the error when none finished."""
    out: dict[str, dict[int, dict]] = {}
    for label in dict.fromkeys(r["label"] for r in records):
        out[label] = {}
        for number in dict.fromkeys(r["query"] for r in records if r["label"] == label):
            runs = [r for r in records if r["label"] == label and r["query"] == number]
            finished = [r for r in runs if "seconds" in r]
            quiet = [r for r in finished if not r.get("noisy")] or finished
            row: dict = {"runs": len(runs), "used": len(quiet)}
            if quiet:
                row.update(seconds=statistics.median(r["seconds"] for r in quiet),
                           peak_rss_mb=max(r["peak_rss_mb"] for r in quiet),
                           temp_mb=max(r.get("temp_mb", 0.0) for r in quiet),
                           cpu_s=statistics.median(r.get("cpu_s", 0.0) for r in quiet),
                           verdict=next((r["verdict"] for r in quiet if r["verdict"] != "ok"), "ok"))
            else:
                row["error"] = runs[0]["error"]
            out[label][number] = row
    return out


def main(opts: TpchOptions) -> int:
    started = time.perf_counter()
    console = report.console
    where = tables.generate(tables.DEFAULT_ROOT, opts.sf)
    folders = {label: str(tables.float64_copy(where) if label.endswith(FLOAT64) else where) for label in opts.labels}
    con = check.reference_connection(where)
    expected = {n: check.reference(con, n) for n in opts.queries}
    con.close()
    console.rule(f"TPC-H SF {opts.sf:g}: {len(opts.labels)} systems × {len(opts.queries)} queries × "
                 f"{opts.repeats} repeats, {opts.workers} workers, limit {opts.limit:.0f} s per query")
    records: list[dict] = []
    phases: dict[str, dict] = {}
    scratch = Path(tables.DEFAULT_ROOT).parent / "bench-scratch"
    for repeat in range(opts.repeats):
        k = repeat % len(opts.labels)
        for label in opts.labels[k:] + opts.labels[:k]:
            waited = wait_until_quiet()
            found, phases[label] = measure_system(label, folders[label], opts.workers, list(opts.queries),
                                                  scratch, opts.limit)
            for record in found:
                record.update(label=label, repeat=repeat, waited_s=waited)
            check_answers(found, expected)
            records += found
            tpch_report.progress_line(repeat, opts.repeats, label, found)
    summary = summarise(records)
    split = {}
    if "ours-processes" in opts.labels:
        console.rule("breakdown: one more run of ours-processes with spans recorded")
        split = breakdown(str(where), opts.workers, list(opts.queries), scratch, opts.limit)
    found_targets = targets(summary, opts)
    console.rule("results")
    tpch_report.query_table(summary, opts.queries)
    tpch_report.breakdown_table(split)
    tpch_report.targets_table(found_targets)
    problems = [f"{label} Q{n:02d}: {row['verdict']}" for label, rows in summary.items() for n, row in rows.items()
                if row.get("verdict", "ok") != "ok"]
    for problem in problems:
        console.print(f"[red]{problem}[/red]", highlight=False)
    seconds = time.perf_counter() - started
    report.write_json(opts.json_path, {
        "suite": "tpch", "complete": True,
        "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine.info(), "options": opts.__dict__, "seconds": seconds,
        "summary": {label: {str(n): row for n, row in rows.items()} for label, rows in summary.items()},
        "phases": phases, "breakdown": {str(n): row for n, row in split.items()}, "targets": [t.as_dict() for t in found_targets], "problems": problems,
        "runs": [{k: v for k, v in r.items() if k != "traceback"} for r in records],
    })
    console.print(f"done in {seconds / 60:.1f} min")
    return 1 if problems else 0  # a wrong answer is a failure; a peer that cannot run a query is a finding
