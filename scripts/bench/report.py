"""Print the results as tables (rich) and write them as JSON."""

from __future__ import annotations

import json
import os

from rich.console import Console
from rich.table import Table

from bench.summary import Target, efficiency, ratio

console = Console(width=140)


def _s(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def job_table(job: dict[str, dict], checks: dict[str, str], ours: str) -> None:
    table = Table(title="Taxi job: median seconds per whole-process run (job = inside the process, after imports)")
    for column in ("system", "job s", "× ours", "start-up s", "job+start-up s", "× ours incl.", "teardown s",
                   "peak RSS MB", "used runs", "answer"):
        table.add_column(column, justify="left" if column in ("system", "answer") else "right")
    base = job.get(ours, {})
    for label, row in sorted(job.items(), key=lambda kv: (kv[1]["job_s"] is None, kv[1]["job_s"] or 0)):
        table.add_row(
            label, _s(row["job_s"]), _s(ratio(row["job_s"], base.get("job_s"))), _s(row["startup_s"]),
            _s(row["with_startup_s"]), _s(ratio(row["with_startup_s"], base.get("with_startup_s"))),
            _s(row["teardown_s"]), _s(row["peak_rss_mb"], 0),
            f"{row['used']}/{row['runs']}", checks.get(label, "—"),
        )
    console.print(table)


def scaling_table(job: dict[str, dict], workers: int) -> list[dict]:
    table = Table(title="Scaling of the processes engine (efficiency = pandas file-by-file ÷ (workers × ours))")
    for column in ("workers", "job s", "speed-up vs 1 worker", "efficiency %"):
        table.add_column(column, justify="right")
    files_s = job.get("pandas-files", {}).get("job_s")
    one = job.get("ours-processes@1", {}).get("job_s")
    rows = []
    for w in range(1, workers + 1):
        label = "ours-processes" if w == workers else f"ours-processes@{w}"
        seconds = job.get(label, {}).get("job_s")
        eff = efficiency(files_s, w, seconds)
        rows.append({"workers": w, "job_s": seconds, "efficiency": eff})
        table.add_row(str(w), _s(seconds), _s(ratio(one, seconds)), _s(None if eff is None else 100 * eff, 1))
    console.print(table)
    return rows


def overhead_table(overhead: dict[str, dict], tasks: int) -> None:
    table = Table(title=f"Per-task overhead, {tasks} tasks, warm workers (µs per task, wall clock; see bench/overhead.py)")
    for column in ("system", "no-op tasks µs", "1-row in-memory chunks µs", "10-row file chunks µs",
                   "file chunk in-process µs", "file chunk beyond ideal µs", "worker start-up s", "notes"):
        table.add_column(column, justify="left" if column in ("system", "notes") else "right")
    for label, row in overhead.items():
        m = row["metrics"]
        notes = f"chunksize=1: {_s(m['per_task_us_chunksize1'], 0)} µs" if "per_task_us_chunksize1" in m else ""
        table.add_row(label.removeprefix("overhead-"), _s(m.get("per_task_us"), 0), _s(m.get("memory_chunk_us"), 0),
                      _s(m.get("file_chunk_us"), 0), _s(m.get("sync_per_chunk_us"), 0),
                      _s(m.get("dispatch_per_chunk_us"), 0), _s(m.get("worker_startup_s")), notes)
    console.print(table)


def memory_table(memory: dict[str, dict], scales: dict[str, str]) -> None:
    table = Table(title="Peak RSS of the processes engine's whole process tree")
    for column in ("run", "data", "job s", "peak RSS MB"):
        table.add_column(column, justify="left" if column in ("run", "data") else "right")
    for label, row in memory.items():
        table.add_row(label, os.path.basename(scales.get(label, "")), _s(row["job_s"]), _s(row["peak_rss_mb"], 0))
    console.print(table)


def targets_table(targets: list[Target]) -> None:
    table = Table(title="Targets (ratios from this run)")
    for column in ("target", "measured", "limit", "result"):
        table.add_column(column, justify="left" if column == "target" else "right")
    for t in targets:
        sign = "≥" if t.higher_is_better else "≤"
        unit = "" if t.unit == "×" else f" {t.unit}"
        measured = "—" if t.measured is None else (f"{t.measured:.2f}×" if t.unit == "×" else f"{t.measured:.1f}{unit}")
        limit = f"{sign} {t.limit:.2f}×" if t.unit == "×" else f"{sign} {t.limit:g}{unit}"
        result = "[green]PASS[/green]" if t.passed else "[red]FAIL[/red]"
        table.add_row(t.name, measured, limit, result)
    console.print(table)


def write_json(path: str, payload: dict, quiet: bool = False) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1, default=str)
    os.replace(tmp, path)
    if not quiet:
        console.print(f"wrote {path}")
