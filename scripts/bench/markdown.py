"""The README's "Performance" tables, rendered from a complete benchmark JSON (never typed by hand).

    python scripts/benchmark.py --markdown bench-results/latest.json
"""

from __future__ import annotations

import json

NAMES = {
    "ours-sync": "this framework, sync",
    "ours-threads": "this framework, threads",
    "ours-processes": "**this framework, processes**",
    "ours-joblib": "this framework, joblib",
    "ours-dask": "this framework, dask (LocalCluster)",
    "ours-ray": "this framework, ray (local)",
    "ours-polars-stages": "this framework, processes, Polars stages",
    "ours-polars-lazy-threads": "this framework, threads, lazy Polars stages",
    "pool": "hand-written multiprocessing.Pool",
    "pandas-whole": "pandas, whole table",
    "pandas-files": "pandas, file by file",
    "dask-threads": "Dask DataFrame, threads",
    "dask-distributed": "Dask DataFrame, LocalCluster",
    "ray-data": "Ray Data",
    "polars": "Polars lazy",
    "duckdb": "DuckDB",
}
OVERHEAD_COLUMNS = (("per_task_us", "no-op tasks"), ("memory_chunk_us", "1-row in-memory chunks"),
                    ("file_chunk_us", "10-row file chunks"))


def _n(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def render(path: str) -> str:
    with open(path) as fh:
        result = json.load(fh)
    if not result.get("complete"):
        raise SystemExit(f"{path} is not a complete run")
    if result.get("suite") == "tpch":
        from bench import tpch_markdown

        return tpch_markdown.render(result)
    opts, machine, summary = result["options"], result["machine"], result["summary"]
    libs = machine["libraries"]
    lines = [
        f"Taxi job (clean → transform → group-by), {opts['rows']:,} rows in {opts['files']} Parquet files, "
        f"{opts['workers']} workers, median of {opts['repeats']} whole-process runs; {machine['cpu_count']} cores "
        f"({machine['cpu_model']}), {machine['memory_gb']} GB, Python {machine['python']}, pandas {libs['pandas']}, "
        f"pyarrow {libs['pyarrow']}, polars {libs['polars']}; commit {machine['commit'][:7]}"
        f"{' (uncommitted changes)' if machine['worktree_dirty'] else ''}"
        f"{', finished ' + result['finished_utc'] if 'finished_utc' in result else ''}.",
        "",
        "| system | job (s) | with start-up (s) | ÷ ours | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|",
    ]
    job = summary["job"]
    ours = job.get("ours-processes", {}).get("job_s")
    for label, row in sorted(job.items(), key=lambda kv: (kv[1]["job_s"] is None, kv[1]["job_s"] or 0)):
        name = NAMES.get(label, label.replace("ours-processes@", "this framework, processes, workers = "))
        share = row["job_s"] / ours if row["job_s"] and ours else None
        lines.append(f"| {name} | {_n(row['job_s'])} | {_n(row['with_startup_s'])} | {_n(share)} | "
                     f"{_n(row['peak_rss_mb'], 0)} |")
    lines += ["", "| target | measured | limit | |", "|---|---:|---:|---|"]
    for t in result["targets"]:
        unit = "×" if t["unit"] == "×" else f" {t['unit']}"
        sign = "≥" if t["higher_is_better"] else "≤"
        lines.append(f"| {t['name']} | {_n(t['measured'], 2)}{unit} | {sign} {t['limit']:g}{unit} | "
                     f"{'met' if t['pass'] else '**not met**'} |")
    lines += ["", f"Per-task overhead, µs per task ({opts['tasks']:,} tasks, warm workers):", "",
              "| system | " + " | ".join(title for _, title in OVERHEAD_COLUMNS) + " |",
              "|---|" + "---:|" * len(OVERHEAD_COLUMNS)]
    for label, row in summary["overhead"].items():
        metrics = row["metrics"]
        cells = " | ".join(_n(metrics.get(key), 0) for key, _ in OVERHEAD_COLUMNS)
        lines.append(f"| {label.removeprefix('overhead-')} | {cells} |")
    return "\n".join(lines)
