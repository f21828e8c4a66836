"""The whole benchmark: prepare data, run every system round-robin in fresh processes, check answers,
report. Each phase interleaves its systems within every repeat, rotating the start, so slow drift
(thermal, page cache, noisy neighbours) spreads over all systems instead of biasing one."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from bench import data, imports, job, machine, report
from bench.measure import measure, wait_until_quiet
from bench.overhead import engine_overheads
from bench.spec import RunSpec
from bench.summary import medians, targets
from bench.systems import JOB_SYSTEMS, OURS, OVERHEAD_SYSTEMS, REFERENCE


@dataclass(frozen=True)
class Options:
    rows: int
    files: int
    repeats: int
    workers: int
    tasks: int  # tiny tasks for the overhead phase
    memory_base: tuple[int, int]  # (rows, files) of the 1× memory run; 10× is ten times both
    json_path: str
    only: tuple[str, ...] = ()  # restrict to these labels (for trying one system out)


@dataclass(frozen=True)
class Run:
    label: str
    system: str
    spec: RunSpec


RETRIES_WHEN_NOISY = 2


def measure_quietly(run: Run, scratch: Path, records: list[dict], answers: dict[str, list[pd.DataFrame]],
                    tag: str) -> None:
    """Measure once on a quiet machine; a run disturbed by other processes is kept, flagged, and retried."""
    for attempt in range(1 + RETRIES_WHEN_NOISY):
        waited = wait_until_quiet()
        if waited > 5:
            report.console.print(f"  (waited {waited:.0f}s for other processes to finish)", highlight=False)
        record, answer = measure(run.system, run.spec, scratch)
        record.update(label=run.label, attempt=attempt, waited_s=waited)
        records.append(record)
        if answer is not None:
            answers.setdefault(run.label, []).append(answer)
        phases = record.get("phases", {})
        status = f"[red]ERROR {record['error']}[/red]" if "error" in record else (
            f"job {phases.get('job', float('nan')):7.3f}s  start-up {phases.get('startup', 0.0):6.2f}s  "
            f"peak {record['peak_rss_mb']:7.0f} MB  others {record['foreign_cores']:.2f} cores")
        noisy = " [yellow]noisy: retrying[/yellow]" if record["noisy"] and attempt < RETRIES_WHEN_NOISY else ""
        report.console.print(f"  {tag} {run.label:<32} {status}{noisy}", highlight=False)
        if "error" in record:
            report.console.print(record.get("traceback") or record.get("log_tail", ""), markup=False)
        if not record["noisy"] or "error" in record:
            return


def round_robin(runs: list[Run], repeats: int, scratch: Path, records: list[dict],
                answers: dict[str, list[pd.DataFrame]]) -> None:
    for repeat in range(repeats):
        k = repeat % len(runs)
        for run in runs[k:] + runs[:k]:
            count = len(records)
            measure_quietly(run, scratch, records, answers, f"[{repeat + 1}/{repeats}]")
            for record in records[count:]:
                record["repeat"] = repeat


def check_answers(answers: dict[str, list[pd.DataFrame]], reference: str) -> tuple[dict[str, str], list[str]]:
    """Every run's answer against the reference system's first; ("ok"/"MISMATCH" per label, problems)."""
    if reference not in answers:
        return {}, [f"no answer from the reference system {reference}"]
    expected = answers[reference][0]
    verdicts: dict[str, str] = {}
    problems: list[str] = []
    for label, frames in answers.items():
        found = [p for frame in frames for p in job.differences(expected, frame)]
        verdicts[label] = "ok" if not found else "MISMATCH"
        problems += [f"{label}: {p}" for p in found]
    return verdicts, problems


def main(opts: Options) -> int:
    started = time.perf_counter()
    console = report.console
    scratch = data.ROOT / "scratch"
    main_data = data.taxi(opts.rows, opts.files)
    base_rows, base_files = opts.memory_base
    memory_data = {"memory-1x": data.taxi(base_rows, base_files),
                   "memory-10x": data.taxi(10 * base_rows, 10 * base_files)}
    tiny = data.tiny(opts.tasks, main_data)
    console.print(f"page cache warmed: {data.warm_page_cache(main_data, tiny, *memory_data.values()) / 1e6:.0f} MB")
    spec = RunSpec(main_data, opts.workers, "", opts.tasks, tiny)
    wanted = (lambda label: not opts.only or label in opts.only)

    job_runs = [Run(name, name, spec) for name in JOB_SYSTEMS]
    job_runs += [Run(f"{OURS}@{w}", OURS, replace(spec, workers=w)) for w in range(1, opts.workers)]
    overhead_runs = [Run(name, name, spec) for name in OVERHEAD_SYSTEMS]
    memory_runs = [Run(label, OURS, replace(spec, data=path)) for label, path in memory_data.items()]

    records: list[dict] = []
    answers: dict[str, list[pd.DataFrame]] = {}
    for title, runs in (("taxi job", job_runs), ("per-task overhead", overhead_runs), ("memory", memory_runs)):
        runs = [r for r in runs if wanted(r.label)]
        if runs:
            console.rule(f"{title}: {len(runs)} systems × {opts.repeats} repeats")
            round_robin(runs, opts.repeats, scratch, records, answers)
            # raw numbers so far, in case the run is cut short; the full report replaces them
            report.write_json(opts.json_path, {"complete": False, "machine": machine.info(),
                                               "options": opts.__dict__, "runs": records}, quiet=True)

    job_answers = {k: v for k, v in answers.items() if not k.startswith("memory-")}
    verdicts, problems = check_answers(job_answers, REFERENCE)
    summary = medians(records)
    job_summary = {r.label: summary[r.label] for r in job_runs if r.label in summary}
    overhead_summary = {r.label: summary[r.label] for r in overhead_runs if r.label in summary}
    engine_overheads(overhead_summary)
    memory_summary = {r.label: summary[r.label] for r in memory_runs if r.label in summary}

    console.rule("results")
    report.job_table(job_summary, verdicts, OURS)
    scaling = report.scaling_table(job_summary, opts.workers)
    report.overhead_table(overhead_summary, opts.tasks)
    report.memory_table(memory_summary, memory_data)
    found = targets(job_summary, overhead_summary, memory_summary, opts.workers)
    report.targets_table(found)
    failed_runs = sorted({r["label"] for r in records if "error" in r})
    for label in failed_runs:
        console.print(f"[red]FAILED RUN: {label}[/red]")
    for problem in problems:
        console.print(f"[red]WRONG ANSWER: {problem}[/red]")
    budget = imports.budget(main_data, opts.workers)
    imports.show(budget, console)
    seconds = time.perf_counter() - started
    report.write_json(opts.json_path, {
        "complete": True,
        "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine.info(),
        "options": {**opts.__dict__, "data": main_data, "memory_data": memory_data, "tiny_file": tiny},
        "seconds": seconds,
        "summary": {"job": job_summary, "overhead": overhead_summary, "memory": memory_summary},
        "scaling": scaling,
        "targets": [t.as_dict() for t in found],
        "answers": {"reference": REFERENCE, "verdicts": verdicts, "problems": problems},
        "failed_runs": failed_runs,
        "import_budget": budget,
        "runs": records,
    })
    console.print(f"done in {seconds / 60:.1f} min")
    # Targets are a report (exit 0 either way); a wrong answer or a crashed system is a real failure.
    return 1 if problems or failed_runs else 0
