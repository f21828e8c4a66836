"""Span recording (`pipeline.trace`): off by default; with PIPELINE_TRACE set when a run starts, every step a
worker runs is recorded inside a span of the task that ran it, on the process that ran it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline import trace
from pipeline.dataset import from_frame

import spawned

TESTS = Path(__file__).resolve().parent
# A fresh interpreter: its workers are started after the variable is set (this session's forkserver may
# predate it). It prints the driver's pid and whether the result is sorted.
RUN = """
import json, os, sys
sys.path.insert(0, {tests!r})
from test_trace import sorted_dataset
result = sorted_dataset().collect(engine="processes", workers=2)
keys = [((v // 2) % 7, v) for v in result["v"]]
print(json.dumps({{"pid": os.getpid(), "sorted": keys == sorted(keys)}}))
"""


def doubled(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(v=df["v"] * 2)


def sorted_dataset():
    frame = pd.DataFrame({"k": [i % 7 for i in range(400)], "v": range(400)})
    return from_frame(frame, chunks=4).then(doubled).sort(["k", "v"])


def test_nothing_is_recorded_unless_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(trace.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    sorted_dataset().collect(engine="sync")
    assert trace.load(str(tmp_path)) == []
    assert not list(tmp_path.iterdir())


def test_spans_name_each_step_inside_its_task_on_the_worker_that_ran_it(tmp_path: Path):
    env = {**os.environ, trace.ENV: str(tmp_path)}
    run = spawned.spawn([sys.executable, "-c", RUN.format(tests=str(TESTS))], env=env, cwd=TESTS.parent,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = run.communicate(timeout=300)
    finally:
        spawned.stop(run)
    assert run.returncode == 0, err
    said = json.loads(out.strip().splitlines()[-1])
    assert said["sorted"]
    spans = trace.load(str(tmp_path))
    kinds = {s.kind for s in spans}
    assert {"task", "read", "stage", "exchange", "exchange read", "write"} <= kinds
    assert any(s.kind == "stage" and s.name == "doubled" for s in spans)
    assert any(s.kind == "task" and s.pid != said["pid"] for s in spans), "no task ran on a worker"
    tasks = [s for s in spans if s.kind == "task"]
    for step in (s for s in spans if s.kind != "task"):
        assert any(t.pid == step.pid and t.start <= step.start and step.end <= t.end for t in tasks), step
