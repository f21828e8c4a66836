"""From raw run records to medians, ratios and the targets the issue sets."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def medians(records: list[dict]) -> dict[str, dict]:
    """Per label: median job, start-up, job incl. start-up, teardown, peak RSS, and metrics. Failed runs are
    left out and counted; so are runs disturbed by other processes, unless no undisturbed run is left."""
    grouped: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        grouped[record["label"]].append(record)
    out: dict[str, dict] = {}
    for label, runs in grouped.items():
        finished = [r for r in runs if "error" not in r]
        clean = [r for r in finished if not r.get("noisy")]
        ok = clean or finished
        metrics = sorted({k for r in ok for k in r.get("metrics", {})})
        out[label] = {
            "runs": len(runs),
            "failed": len(runs) - len(finished),
            "noisy": len(finished) - len(clean),
            "used": len(ok),
            "job_s": _median([r["phases"]["job"] for r in ok if "job" in r["phases"]]),
            "startup_s": _median([r["phases"].get("startup", 0.0) for r in ok]),
            "with_startup_s": _median([r["phases"].get("startup", 0.0) + r["phases"].get("job", 0.0) for r in ok]),
            "teardown_s": _median([r["phases"].get("teardown", 0.0) for r in ok]),
            "import_s": _median([r["phases"].get("import", 0.0) for r in ok]),
            "wall_s": _median([r["wall_s"] for r in ok]),
            "peak_rss_mb": _median([r["peak_rss_mb"] for r in ok]),
            "metrics": {k: _median([r["metrics"][k] for r in ok if k in r["metrics"]]) for k in metrics},
        }
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


@dataclass
class Target:
    name: str
    measured: float | None
    limit: float
    unit: str  # "×", "%", "µs"
    higher_is_better: bool = False

    @property
    def passed(self) -> bool:
        if self.measured is None:
            return False
        return self.measured >= self.limit if self.higher_is_better else self.measured <= self.limit

    def as_dict(self) -> dict:
        return {"name": self.name, "measured": self.measured, "limit": self.limit, "unit": self.unit,
                "higher_is_better": self.higher_is_better, "pass": self.passed}


def efficiency(files_s: float | None, workers: int, ours_s: float | None) -> float | None:
    """Parallel efficiency: one-process file-by-file time over workers × our time."""
    return files_s / (workers * ours_s) if files_s and ours_s else None


def targets(job: dict[str, dict], overhead: dict[str, dict], memory: dict[str, dict], workers: int) -> list[Target]:
    def t(label: str) -> float | None:
        return job.get(label, {}).get("job_s")

    ours = t("ours-processes")
    per_task = overhead.get("overhead-ours-processes", {}).get("metrics", {}).get("per_task_us")
    rss = {k: memory.get(k, {}).get("peak_rss_mb") for k in ("memory-1x", "memory-10x")}
    eff = efficiency(t("pandas-files"), workers, ours)
    return [
        Target("processes / hand-written Pool", ratio(ours, t("pool")), 1.05, "×"),
        Target("processes / Dask DataFrame (threads)", ratio(ours, t("dask-threads")), 0.75, "×"),
        Target("dask engine / Dask DataFrame (same LocalCluster)", ratio(t("ours-dask"), t("dask-distributed")),
               1.0, "×"),
        Target("ray engine / Ray Data", ratio(t("ours-ray"), t("ray-data")), 0.5, "×"),
        Target("lazy Polars stages on threads / Polars lazy", ratio(t("ours-polars-lazy-threads"), t("polars")), 1.5,
               "×"),
        Target(f"parallel efficiency of processes at {workers} workers",
               None if eff is None else 100 * eff, 85.0, "%", higher_is_better=True),
        Target("per-task overhead of processes (no-op tasks)", per_task, 100.0, "µs"),
        Target("peak RSS of processes, 10× data / 1× data", ratio(rss["memory-10x"], rss["memory-1x"]), 1.3, "×"),
    ]
