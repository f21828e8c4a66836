"""The parent side of a TPC-H measurement: start a system's process, follow its progress, and give every
query a record: seconds, peak RSS of the process tree while it ran, CPU others used meanwhile, or why it
could not run (an error, a dead process, the time limit). A process that dies or is stopped over the time
limit is replaced by a fresh one for the queries still to run."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench.measure import BENCHMARK, NOISY_CORES, Tree, busy_cpu_s, child_env
from bench.tpch_child import PROGRESS, answer_path

POLL = 0.05
SPILL_EVERY = 10  # polls between measurements of the temporary folder


def folder_bytes(folder: str) -> int:
    """Bytes of the files under `folder` now (files may vanish while we look)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


class Follower:
    """Reads the child's progress file as it grows and turns its events into per-query records."""

    def __init__(self, scratch: str, temp: str, tree: Tree) -> None:
        self.path, self.offset, self.tree = os.path.join(scratch, PROGRESS), 0, tree
        self.scratch = scratch
        self.records: dict[int, dict] = {}
        self.current: int | None = None
        self.started = self.peak = self.started_at = 0.0
        self.busy = self.tree_cpu = 0.0
        self.system_error: dict | None = None
        self.phases: dict[str, float] = {}
        self.temp = temp  # the process's TMPDIR: where our scratch folders go
        self.polls = self.spill = 0

    def events(self) -> list[dict]:
        try:
            with open(self.path) as f:
                f.seek(self.offset)
                text = f.read()
        except FileNotFoundError:
            return []
        complete = text[: text.rfind("\n") + 1]
        self.offset += len(complete)
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def follow(self) -> None:
        rss = self.tree.sample() or 0
        self.peak = max(self.peak, rss)
        self.polls += 1
        if self.current is not None and self.polls % SPILL_EVERY == 0:
            self.spill = max(self.spill, folder_bytes(self.temp))
        for event in self.events():
            kind = event["event"]
            if kind == "start":
                self.current, self.started, self.peak = event["query"], time.perf_counter(), rss
                self.spill = 0
                self.started_at = event["at"]
                self.busy, self.tree_cpu = busy_cpu_s(), self.tree.cpu_s
            elif kind in ("done", "error"):
                self.finish(event)
            elif kind == "system-error":
                self.system_error = event
            elif kind in ("ready", "finished"):
                self.phases.update(event["phases"])

    def finish(self, event: dict) -> None:
        number = event["query"]
        wall = max(time.perf_counter() - self.started, 1e-9)
        tree_cpu = self.tree.cpu_s - self.tree_cpu  # as last sampled: a process gone since counts to its last sample
        foreign = max(0.0, busy_cpu_s() - self.busy - tree_cpu) / wall
        record = {"query": number, "peak_rss_mb": self.peak / 2**20, "foreign_cores": foreign, "cpu_s": tree_cpu,
                  "noisy": foreign > NOISY_CORES, "window": (self.started_at, event["at"]),
                  "temp_mb": self.spill / 2**20}
        if event["event"] == "done":
            record["seconds"] = event["seconds"]
            record["answer"] = pd.read_parquet(answer_path(self.scratch, number))
        else:
            record.update(error=event["error"], traceback=event.get("traceback", ""))
        self.records[number] = record
        self.current = None

    def stop(self, number: int, reason: str) -> None:
        self.records[number] = {"query": number, "error": reason, "peak_rss_mb": self.peak / 2**20}
        self.current = None


def _died(returncode: int) -> str:
    if returncode == -signal.SIGKILL:
        return "the process was killed (SIGKILL: out of memory?)"
    return f"the process died (exit code {returncode})"


def measure_system(label: str, data: str, workers: int, queries: list[int], scratch_root: Path,
                   limit: float, env: dict[str, str] | None = None) -> tuple[list[dict], dict[str, float]]:
    """Every query of `label` over `data`, in as few fresh processes as it takes: (records, phase seconds).
    `env`: extra environment variables for the process."""
    records: dict[int, dict] = {}
    phases: dict[str, float] = {}
    remaining = list(queries)
    while remaining:
        scratch_root.mkdir(parents=True, exist_ok=True)
        scratch = tempfile.mkdtemp(prefix=f"{label}-", dir=scratch_root)
        temp = tempfile.mkdtemp(prefix="tpch-")  # short: Ray puts its sockets under TMPDIR, and their paths are capped
        command = [sys.executable, str(BENCHMARK), "--run-tpch", label, "--data", data, "--workers", str(workers),
                   "--scratch", scratch, "--queries", ",".join(map(str, remaining))]
        with open(os.path.join(scratch, "log.txt"), "wb") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**child_env(), "TMPDIR": temp, **(env or {})},
                                    start_new_session=True)
            follower = Follower(scratch, temp, Tree(proc.pid))
            while proc.poll() is None:
                follower.follow()
                if follower.current is not None and time.perf_counter() - follower.started > limit:
                    os.killpg(proc.pid, signal.SIGKILL)  # the session this run started, nothing else
                    proc.wait()
                    follower.stop(follower.current, f"over the time limit of {limit:.0f} s")
                time.sleep(POLL)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # anything the system left behind in its session
            follower.follow()
        if follower.current is not None:
            follower.stop(follower.current, _died(proc.returncode))
        if follower.system_error is not None:
            for number in remaining:
                follower.records.setdefault(number, {"query": number, "error": follower.system_error["error"],
                                                     "traceback": follower.system_error.get("traceback", "")})
        if not follower.records:  # it died before any query started: nothing would change on a retry
            tail = Path(scratch, "log.txt").read_text(errors="replace")[-2000:]
            for number in remaining:
                follower.records[number] = {"query": number, "error": _died(proc.returncode), "log_tail": tail}
        records.update(follower.records)
        phases = phases or follower.phases
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(temp, ignore_errors=True)
        remaining = [n for n in remaining if n not in records]
    return [records[n] for n in queries], phases

