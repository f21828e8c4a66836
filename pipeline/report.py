"""What a run did, as the data the HTML report shows: computed once, from the timeline and the manifests.

    Timeline (task runs on the driver's clock) ─┐
    Plan (the task graph)                       ├─▶ facts(...) ─▶ a plain dict, embedded once in the page
    Manifests (outputs, per-stage counters)     ┘

Times count from the first task sent: what came before (starting the engine's workers, listing the input)
is shown as start-up. Time per stage is split by the steps the workers recorded: read (input files), compute
(stages and reductions), exchange (map writes and reads of what the run wrote to scratch), write, serialise
(unpickling tasks), other (inside a task, in no step), and queued (sent to a worker, not yet started). A run
of more than MAX_BARS tasks keeps every failed or slowest-per-stage task and an even sample of the rest.
"""

from __future__ import annotations

import contextlib
import os
import statistics
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from pipeline import chrome_trace
from pipeline.errors import ConfigError, PipelineError
from pipeline.io.manifest import Manifest
from pipeline.timeline import TaskRun, Timeline, recording

MAX_BARS = 20_000
PARTS = ("read", "compute", "exchange", "write", "serialise", "other", "queued")
_PART = {"read": "read", "stage": "compute", "reduce": "compute", "exchange": "exchange",
         "exchange read": "exchange", "write": "write", "serialise": "serialise"}
SMALL_TASK = 0.010  # seconds: below this median, per-task overhead is a large share
DOMINANT = 0.4  # one task taking this share of the run's wall time holds the run up


def facts(timeline: Timeline, manifests: Sequence[Manifest] = (), title: str = "", engine: str = "",
          error: str = "") -> dict[str, Any]:
    """Everything the report shows, as JSON-ready data."""
    return _facts(timeline, timeline.runs(), manifests, title, engine, error)


def _facts(timeline: Timeline, runs: Sequence[TaskRun], manifests: Sequence[Manifest], title: str, engine: str,
           error: str) -> dict[str, Any]:
    startup = min((r.start - r.queued for r in runs if r.worker), default=0.0)
    runs = [r.moved(startup) for r in runs]  # time 0: the first task sent, after start-up
    wall = max(timeline.seconds - startup, max((r.end for r in runs), default=0.0))
    return {
        "title": title, "engine": engine, "seconds": round(wall, 4), "startup": round(startup, 4), "error": error,
        "workers": _workers(runs, wall, timeline.peak_rss()),
        "stages": [_stage(label, group) for label, group in _by_label(runs).items()],
        "tasks": _bars(runs),
        "advice": advice(runs, wall),
        "io": _io(runs),
        "outputs": [m.facts() for m in manifests],
    }


def check_destination(path: str, what: str) -> str:
    """Refuse, before the run, a report or trace path whose folder is missing or not writable."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ConfigError(f"{what}: {path} is a folder; give a file path")
    if not os.path.isdir(folder):
        raise ConfigError(f"{what}: {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{what}: {path}: the folder {folder} is not writable")
    return path


@contextlib.contextmanager
def written(report: str | None, trace: str | None, title: str = "", engine: str = "",
            names: tuple[str, str] = ("report", "trace")) -> Iterator[list[Manifest]]:
    """Refuse a bad report or trace path at once (`names`: how the caller calls them); then record the run in
    the block and afterwards, failed or not, write its HTML report and Chrome trace where asked. The block
    appends the manifests it got to the list it is given."""
    for path, what in zip((report, trace), names):
        if path:
            check_destination(path, what)
    manifests: list[Manifest] = []
    with recording() as timeline:
        error = ""
        try:
            yield manifests
        except BaseException as exc:
            error = str(exc) if isinstance(exc, PipelineError) else f"{type(exc).__name__}: {exc}"
            raise
        finally:
            if report:
                from pipeline import report_html

                report_html.write(page_facts(timeline, manifests, title, engine, error), report)
            if trace:
                chrome_trace.write(timeline, trace)


@contextlib.contextmanager
def reported(report: str | None, trace: str | None, engine: Any) -> Iterator[list[Manifest]]:
    """`written` for the Python API: the engine named by its name or class."""
    name = engine if isinstance(engine, str) else type(engine).__name__.removesuffix("Engine").lower()
    with written(report, trace, f"pipeline run on {name}", name) as manifests:
        yield manifests


def page_facts(timeline: Timeline, manifests: Sequence[Manifest] = (), title: str = "", engine: str = "",
               error: str = "") -> dict[str, Any]:
    """What the HTML page shows (`report_html.render`): `facts`, and the plan drawn with each group's
    measured rows (the task runs listed once for both)."""
    from pipeline import plan_graph

    runs = timeline.runs()
    data = _facts(timeline, runs, manifests, title, engine, error)
    done = [r for r in runs if not r.failed]
    data["plan_svg"] = plan_graph.draw(timeline.plan, "svg", measured(done)) if timeline.plan is not None else ""
    return data


def measured(runs: Sequence[TaskRun]) -> dict[str, Any]:
    """Per task key: rows it read (its first counted step), rows it produced (its last), seconds."""
    from pipeline.plan_graph import Measure

    out = {}
    for run in runs:
        counted = [step[4] for step in run.steps if step[4] is not None]
        out[run.key] = Measure(counted[0] if counted else None, counted[-1] if counted else None, run.seconds)
    return out


def _by_label(runs: Sequence[TaskRun]) -> dict[str, list[TaskRun]]:
    groups: dict[str, list[TaskRun]] = defaultdict(list)
    for run in runs:
        groups[run.label].append(run)
    return dict(groups)


def split(run: TaskRun) -> dict[str, float]:
    """A task run's seconds by part (PARTS)."""
    parts = dict.fromkeys(PARTS, 0.0)
    for kind, _, start, end, _, _ in run.steps:
        parts[_PART.get(kind, "other")] += end - start
    parts["other"] = max(0.0, run.seconds - sum(parts.values()))
    parts["queued"] = max(0.0, run.queued)
    return parts


def _stage(label: str, runs: list[TaskRun]) -> dict[str, Any]:
    done = [r for r in runs if not r.failed] or runs
    seconds = dict.fromkeys(PARTS, 0.0)
    for run in done:
        for part, value in split(run).items():
            seconds[part] += value
    slowest, fastest = max(done, key=lambda r: r.seconds), min(done, key=lambda r: r.seconds)
    return {"label": label, "tasks": len(done), "failed": sum(1 for r in runs if r.failed),
            "seconds": {k: round(v, 4) for k, v in seconds.items()},
            "slowest": _one(slowest), "median": round(statistics.median(r.seconds for r in done), 5),
            "fastest": _one(fastest)}


def _one(run: TaskRun) -> dict[str, Any]:
    return {"seconds": round(run.seconds, 5), "chunk": run.chunk, "input": run.source, "key": run.key}


def _workers(runs: Sequence[TaskRun], wall: float, peaks: dict[str, int]) -> list[dict[str, Any]]:
    """Per worker: its lanes, busy seconds and idle share of (lanes × wall time), peak memory."""
    lanes: dict[str, set[int]] = defaultdict(set)
    busy: dict[str, float] = defaultdict(float)
    for run in runs:
        if run.worker:
            lanes[run.worker].add(run.lane)
            busy[run.worker] += run.seconds
    out = []
    for worker in sorted(lanes):
        capacity = wall * len(lanes[worker])
        out.append({"id": worker, "lanes": len(lanes[worker]), "busy": round(busy[worker], 4),
                    "idle_pct": round(100 * max(0.0, 1 - busy[worker] / capacity), 1) if capacity else 0.0,
                    "peak_rss": peaks.get(worker, 0)})
    return out


def _bars(runs: Sequence[TaskRun]) -> dict[str, Any]:
    """The timeline's bars: [worker, lane, start, end, label, chunk, attempt, failed, key, input], sampled
    evenly beyond MAX_BARS (failures and each stage's slowest always kept)."""
    keep = list(runs)
    if len(runs) > MAX_BARS:
        must = {id(r) for r in runs if r.failed}
        must |= {id(max(group, key=lambda r: r.seconds)) for group in _by_label(runs).values()}
        step = len(runs) / (MAX_BARS - len(must))
        picked = {id(runs[int(i * step)]) for i in range(MAX_BARS - len(must))}
        kept = must | picked
        keep = [r for r in runs if id(r) in kept]
    rows = [[r.worker or "failed", r.lane, round(r.start, 5), round(r.end, 5), r.label, r.chunk, r.attempt,
             r.failed, r.key, r.source] for r in keep]
    return {"columns": ["worker", "lane", "start", "end", "label", "chunk", "attempt", "failed", "key", "input"],
            "rows": rows, "total": len(runs), "sampled": len(keep) < len(runs)}


def _io(runs: Sequence[TaskRun]) -> dict[str, int]:
    """Rows read (input files) and written; bytes read (the data in memory), written to the output and
    spilled to scratch."""
    totals = {"rows_read": 0, "bytes_read": 0, "rows_written": 0, "bytes_written": 0, "bytes_spilled": 0}
    for run in runs:
        if run.failed:
            continue
        for kind, _, _, _, rows, size in run.steps:
            if kind == "read":
                totals["rows_read"] += rows or 0
                totals["bytes_read"] += size or 0
            elif kind == "write":
                totals["rows_written"] += rows or 0
                totals["bytes_written"] += size or 0
            elif kind == "exchange":
                totals["bytes_spilled"] += size or 0
    return totals


def advice(runs: Sequence[TaskRun], wall: float) -> list[dict[str, str]]:
    """Granularity advice from the run, each line with the figure it came from."""
    out = []
    for label, group in _by_label(runs).items():
        done = [r for r in group if not r.failed]
        if len(done) < 2:
            continue
        median = statistics.median(r.seconds for r in done)
        if median < SMALL_TASK and len(done) >= 8:
            read_rows = [s[4] for r in done for s in r.steps if s[0] == "read" and s[4]]
            rows = int(statistics.median(read_rows)) if read_rows else 0
            hint = f"; try chunk_rows = {max(rows, 1) * max(2, int(SMALL_TASK * 5 / max(median, 1e-4))):,}" if rows else ""
            out.append({"text": f"{label}: median task {median * 1000:.1f} ms over {len(done)} tasks — chunks are "
                                f"too small, the per-task overhead weighs{hint}",
                        "figure": f"median {median * 1000:.1f} ms"})
        slowest = max(done, key=lambda r: r.seconds)
        if wall > 0 and slowest.seconds / wall >= DOMINANT:
            where = f" (input {slowest.source})" if slowest.source else ""
            out.append({"text": f"{label}: one task took {100 * slowest.seconds / wall:.0f}% of the run — chunk "
                                f"{slowest.chunk}{where}; split its file or lower chunk_rows",
                        "figure": f"{slowest.seconds:.2f} s of {wall:.2f} s"})
    return out
