"""Where this framework's time goes in each join query: one more run of `ours-processes`, traced
(`PIPELINE_TRACE`: a Chrome trace per run), its spans cut by each query's time window and summed by kind.

Categories: read (input files), exchange read (what the run wrote to scratch), stages (per-chunk stages,
join probes, sorts), exchange write (map outputs), reduce (partials, combines, finalize), write (the result),
commit, other (inside tasks but in none of those: unpickling, conversions between steps), idle (workers ×
wall time not inside any task: scheduling, waiting on dependencies, start of each query).
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path

from pipeline import chrome_trace
from bench.tpch_measure import measure_system

CATEGORIES = ("read", "exchange read", "stages", "exchange write", "reduce", "write", "commit", "other", "idle")
_KIND = {"read": "read", "exchange read": "exchange read", "stage": "stages", "exchange": "exchange write",
         "reduce": "reduce", "write": "write"}
SINGLE_TABLE = (1, 6)  # the queries without a join


def load(folder: str) -> list[tuple[str, str, float, float]]:
    """(category, name, start, end) of every event in the run traces written to `folder`, in Unix seconds."""
    spans = []
    for path in Path(folder).glob("trace-*.json"):
        trace = json.loads(path.read_text())
        zero = trace["otherData"]["started"]
        spans += [(e["cat"], e["name"], zero + e["ts"] / 1e6, zero + (e["ts"] + e["dur"]) / 1e6)
                  for e in trace["traceEvents"] if e["ph"] == "X"]
    return spans


def split(spans: list[tuple[str, str, float, float]], window: tuple[float, float], workers: int) -> dict[str, float]:
    """Seconds per category of the spans inside `window`; idle is what the workers' time leaves over."""
    start, end = window
    inside = [s for s in spans if s[2] >= start and s[3] <= end]
    out: dict[str, float] = defaultdict(float)
    tasks = [s for s in inside if s[0] == "task"]
    for kind, _, a, b in inside:
        if kind in _KIND:
            out[_KIND[kind]] += b - a
    for _, name, a, b in tasks:
        if name == "commit":
            out["commit"] += b - a
    busy = sum(b - a for _, _, a, b in tasks)
    out["other"] = max(0.0, busy - sum(out.values()))
    out["idle"] = max(0.0, workers * (end - start) - busy)
    return {c: out.get(c, 0.0) for c in CATEGORIES}


def breakdown(data: str, workers: int, queries: list[int], scratch: Path, limit: float) -> dict[int, dict]:
    """Per join query: its wall seconds and seconds per category, from one traced run."""
    joins = [n for n in queries if n not in SINGLE_TABLE]
    if not joins:
        return {}
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="trace-", dir=scratch) as folder:
        records, _ = measure_system("ours-processes", data, workers, joins, scratch, limit, {chrome_trace.ENV: folder})
        spans = load(folder)
    return {r["query"]: {"seconds": r["seconds"], **split(spans, r["window"], workers)}
            for r in records if "seconds" in r}
