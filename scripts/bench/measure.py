"""The parent side of a measurement: launch one system in a fresh interpreter, sample the RSS of its whole
process tree every ~50 ms, and collect what it reported."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import psutil

from bench.child import RESULT_JSON, RESULT_PARQUET
from bench.spec import RunSpec

SCRIPTS = Path(__file__).resolve().parent.parent
BENCHMARK = SCRIPTS / "benchmark.py"
SAMPLE_EVERY = 0.05
TIMEOUT = 1800.0
NOISY_CORES = 0.3  # other processes using more than this many cores during a run make it noisy
QUIET_WAIT = 600.0  # how long to wait for a busy machine to calm down before a run


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (guest time is inside user time on Linux)."""
    t = psutil.cpu_times()
    return sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq"))


def steal_s() -> float:
    """CPU seconds the hypervisor gave to other guests (0 on bare metal): noisy neighbours we cannot see."""
    return getattr(psutil.cpu_times(), "steal", 0.0)


def own_cpu_s() -> float:
    """CPU seconds of this process plus every child it has waited for (a finished run's whole tree)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def foreign_cores(seconds: float = 1.0) -> float:
    """Cores busy with other people's processes right now, measured over `seconds`."""
    busy, own = busy_cpu_s(), own_cpu_s()
    time.sleep(seconds)
    return max(0.0, (busy_cpu_s() - busy) - (own_cpu_s() - own)) / seconds


def wait_until_quiet(limit: float = NOISY_CORES, patience: float = QUIET_WAIT) -> float:
    """Block until other processes use under `limit` cores (or `patience` runs out); seconds waited.
    On a shared machine, a test suite started by someone else would otherwise land in one system's runs."""
    started = time.perf_counter()
    while foreign_cores() >= limit and time.perf_counter() - started < patience:
        time.sleep(2.0)
    return time.perf_counter() - started


class Tree:
    """RSS and CPU seconds of a process and all its descendants, as last sampled."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.cpu: dict[tuple[int, float], float] = {}

    def sample(self) -> int | None:
        """Summed RSS now (None once the root process is gone); each process's CPU time recorded."""
        total = 0
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return None
        for proc in procs:
            try:
                with proc.oneshot():
                    total += proc.memory_info().rss
                    times = proc.cpu_times()
                    self.cpu[(proc.pid, proc.create_time())] = times.user + times.system
            except psutil.Error:
                pass
        return total

    @property
    def cpu_s(self) -> float:
        return sum(self.cpu.values())


class TreeSampler(threading.Thread):
    """Peak of the summed RSS of a process and all its descendants (shared pages count once per process,
    so this is an upper bound, the same way for every system), and the CPU time each of them was last seen
    with: a forkserver's workers are not the run's children, so their time never reaches its rusage."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.tree = Tree(pid)
        self.peak = 0
        self.samples = 0
        self.stopped = threading.Event()

    @property
    def cpu_s(self) -> float:
        return self.tree.cpu_s

    def run(self) -> None:
        while not self.stopped.is_set():
            total = self.tree.sample()
            if total is None:
                return
            self.peak = max(self.peak, total)
            self.samples += 1
            self.stopped.wait(SAMPLE_EVERY)


def child_env() -> dict[str, str]:
    """Workers of every system (forkserver, Dask nannies, Ray raylet) inherit this, so they can import
    `bench.job` by reference, as they could a user's installed module."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SCRIPTS), env.get("PYTHONPATH", "")) if p)
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return env


def measure(name: str, spec: RunSpec, scratch_root: Path) -> tuple[dict, pd.DataFrame | None]:
    """Run `name` once in its own process; (the record, its normalised answer or None)."""
    scratch_root.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=f"{name}-", dir=scratch_root)
    spec = RunSpec(**{**asdict(spec), "scratch": scratch})
    command = [sys.executable, str(BENCHMARK), "--run-one", name, "--data", spec.data, "--workers", str(spec.workers),
               "--scratch", scratch, "--tasks", str(spec.tasks), "--tiny-file", spec.tiny_file]
    log_path = os.path.join(scratch, "log.txt")
    busy, own, stolen = busy_cpu_s(), own_cpu_s(), steal_s()
    started = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=child_env(),
                                start_new_session=True)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        try:
            returncode = proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the session this run started, nothing else
            returncode = proc.wait()
        finally:
            sampler.stopped.set()
            sampler.join()
    wall = time.perf_counter() - started
    # waited-for descendants are exact in rusage; the others are as last sampled
    tree_cpu = max(own_cpu_s() - own, sampler.cpu_s)
    foreign = max(0.0, busy_cpu_s() - busy - tree_cpu) / wall
    record: dict = {"system": name, "workers": spec.workers, "data": spec.data, "returncode": returncode,
                    "wall_s": wall, "peak_rss_mb": sampler.peak / 2**20, "rss_samples": sampler.samples,
                    "tree_cpu_s": tree_cpu, "foreign_cores": foreign, "steal_cores": (steal_s() - stolen) / wall,
                    "noisy": foreign > NOISY_CORES}
    try:
        with open(os.path.join(scratch, RESULT_JSON)) as f:
            record.update(json.load(f))
    except (OSError, ValueError):
        record["error"] = f"no result (exit code {returncode})"
    if "error" in record:
        record["log_tail"] = Path(log_path).read_text(errors="replace")[-4000:]
    answer_path = os.path.join(scratch, RESULT_PARQUET)
    answer = pd.read_parquet(answer_path) if os.path.exists(answer_path) else None
    shutil.rmtree(scratch, ignore_errors=True)
    return record, answer
