"""The README's TPC-H table, rendered from a complete `--tpch` run's JSON (never typed by hand)."""

from __future__ import annotations

import math

from bench.tpch_breakdown import CATEGORIES

NAMES = {
    "ours-processes": "**ours, processes**",
    "ours-processes-float64": "ours, processes, float64 data",
    "ours-processes-polars": "ours, processes, Polars stages",
    "ours-dask": "ours, dask",
    "ours-ray": "ours, ray",
    "duckdb": "DuckDB",
    "polars": "Polars lazy",
    "pandas-whole": "pandas",
    "dask-threads": "Dask DF threads",
    "dask-distributed": "Dask DF LocalCluster",
    "ray-data": "Ray Data",
}


def _cell(row: dict) -> str:
    if "seconds" in row:
        return f"{row['seconds']:.2f}" + ("" if row.get("verdict", "ok") == "ok" else " WRONG")
    return "no: " + row["error"].splitlines()[0][:40].replace("|", "/")


def _geomean(values: list[float]) -> str:
    return f"{math.exp(sum(map(math.log, values)) / len(values)):.2f}" if values else "—"


def render(result: dict) -> str:
    summary, options = result["summary"], result["options"]
    labels = list(summary)
    numbers = [str(n) for n in options["queries"]]
    m = result["machine"]
    libs = m["libraries"]
    lines = [f"TPC-H SF {options['sf']:g}, {options['workers']} workers, seconds per query inside a warm process "
             f"(start-up excluded), {options['repeats']} run(s) each, limit {options['limit']:.0f} s per query; "
             f"{m['cpu_count']} cores ({m['cpu_model']}), {m['memory_gb']} GB, Python {m['python']}, "
             f"pandas {libs['pandas']}, pyarrow {libs['pyarrow']}, duckdb {libs['duckdb']}, polars {libs['polars']}, "
             f"dask {libs['dask']}, ray {libs['ray']}; commit {m['commit'][:7]}"
             f"{' (uncommitted changes)' if m['worktree_dirty'] else ''}, {result['finished_utc']}.", ""]
    lines.append("| query | " + " | ".join(NAMES.get(label, label) for label in labels) + " |")
    lines.append("|---|" + "---:|" * len(labels))
    for number in numbers:
        lines.append(f"| Q{int(number):02d} | " + " | ".join(_cell(summary[label][number]) for label in labels)
                     + " |")
    geomeans = [_geomean([r["seconds"] for r in summary[label].values() if "seconds" in r]) for label in labels]
    lines.append("| geometric mean | " + " | ".join(geomeans) + " |")
    peaks = [f"{max((r.get('peak_rss_mb', 0) for r in summary[label].values()), default=0):.0f}" for label in labels]
    lines.append("| peak RSS MB | " + " | ".join(peaks) + " |")
    temps = [f"{max((r.get('temp_mb', 0) for r in summary[label].values()), default=0):.0f}" for label in labels]
    lines.append("| peak temporary files MB (spill) | " + " | ".join(temps) + " |")
    cpus = [f"{sum(r.get('cpu_s', 0) for r in summary[label].values()):.1f}" for label in labels]
    lines.append("| CPU seconds, all queries (process tree) | " + " | ".join(cpus) + " |")
    lines += ["", "| target | measured | limit | result |", "|---|---:|---:|---|"]
    for t in result["targets"]:
        measured = "—" if t["measured"] is None else f"{t['measured']:.2f}"
        sign = "≥" if t["higher_is_better"] else "≤"
        lines.append(f"| {t['name']} | {measured} | {sign} {t['limit']:g} | {'PASS' if t['pass'] else 'FAIL'} |")
    if result.get("breakdown"):
        lines += ["", "Where ours-processes spends its time in the join queries (share of workers × wall time):", "",
                  "| " + " | ".join(CATEGORIES) + " |", "|" + "---:|" * len(CATEGORIES)]
        rows = result["breakdown"].values()
        totals = {c: sum(r[c] for r in rows) for c in CATEGORIES}
        whole = sum(totals.values()) or 1.0
        lines.append("| " + " | ".join(f"{100 * totals[c] / whole:.0f}%" for c in CATEGORIES) + " |")
    return "\n".join(lines)
