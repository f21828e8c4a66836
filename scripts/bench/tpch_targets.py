"""The targets the TPC-H suite is held to, as ratios between systems measured in the same run."""

from __future__ import annotations

import json
import math
from typing import Any

from bench.summary import Target
from bench.tpch_systems import FLOAT64

Summary = dict[str, dict[int, dict]]


def seconds(summary: Summary, label: str) -> dict[int, float]:
    return {n: row["seconds"] for n, row in summary.get(label, {}).items() if "seconds" in row}


def geomean_ratio(summary: Summary, ours: str, anchor: str) -> float | None:
    """Geometric mean over the queries both ran of ours / anchor; None when none is shared."""
    a, b = seconds(summary, ours), seconds(summary, anchor)
    shared = [n for n in a if n in b and b[n] > 0]
    return math.exp(sum(math.log(a[n] / b[n]) for n in shared) / len(shared)) if shared else None


def worst_ratio(summary: Summary, ours: str, anchor: str) -> float | None:
    """The largest ours / anchor over all of ours' queries; a query the anchor could not run does not
    count against us, one we could not run makes the target unmet (None)."""
    a, b, asked = seconds(summary, ours), seconds(summary, anchor), summary.get(ours, {})
    if not asked or len(a) < len(asked):
        return None
    shared = [a[n] / b[n] for n in a if n in b and b[n] > 0]
    return max(shared) if shared else None


def peak_rss(summary: Summary, label: str) -> float | None:
    peaks = [row["peak_rss_mb"] for row in summary.get(label, {}).values() if "peak_rss_mb" in row]
    return max(peaks) if peaks else None


def _baseline_peak(path: str, label: str) -> float | None:
    if not path:
        return None
    with open(path) as f:
        rows = json.load(f)["summary"].get(label, {})
    peaks = [row["peak_rss_mb"] for row in rows.values() if "peak_rss_mb" in row]
    return max(peaks) if peaks else None


def targets(summary: Summary, opts: Any) -> list[Target]:
    ours = "ours-processes"
    found = [
        Target("processes, every query / Dask DataFrame (threads): worst", worst_ratio(summary, ours, "dask-threads"),
               0.25, "×"),
        Target("processes / DuckDB: geometric mean", geomean_ratio(summary, ours, "duckdb"), 4.0, "×"),
        Target("processes with Polars stages / DuckDB: geometric mean",
               geomean_ratio(summary, "ours-processes-polars", "duckdb"), 1.5, "×"),
        Target("dask engine / Dask DataFrame (LocalCluster): geometric mean",
               geomean_ratio(summary, "ours-dask", "dask-distributed"), 0.5, "×"),
        Target("ray engine / Ray Data: geometric mean", geomean_ratio(summary, "ours-ray", "ray-data"), 0.25, "×"),
        Target("DECIMAL / float64 input (processes): geometric mean",
               geomean_ratio(summary, ours, ours + FLOAT64), 1.2, "×"),
    ]
    if opts.sf > 1:
        found.append(Target(f"queries processes completes at SF {opts.sf:g}", len(seconds(summary, ours)),
                            len(opts.queries), "queries", higher_is_better=True))
        base = _baseline_peak(opts.baseline, ours)
        found.append(Target(f"peak RSS of processes, SF {opts.sf:g} / SF 1",
                            peak_rss(summary, ours) / base if base and peak_rss(summary, ours) else None, 2.0, "×"))
    return found
