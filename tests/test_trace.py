"""Span recording (`pipeline.trace`): off by default; with PIPELINE_TRACE set, every step a worker runs is
recorded inside a span of the task that ran it, on the process that ran it."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from pipeline import trace
from pipeline.dataset import from_frame


def doubled(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(v=df["v"] * 2)


def _sorted_dataset():
    frame = pd.DataFrame({"k": [i % 7 for i in range(400)], "v": range(400)})
    return from_frame(frame, chunks=4).then(doubled).sort(["k", "v"])


def test_nothing_is_recorded_unless_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(trace.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    _sorted_dataset().collect(engine="sync")
    assert trace.load(str(tmp_path)) == []
    assert not list(tmp_path.iterdir())


def test_spans_name_each_step_inside_its_task_on_the_worker_that_ran_it(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(trace.ENV, str(tmp_path))  # before the workers start: they inherit it
    result = _sorted_dataset().collect(engine="processes", workers=2)
    assert result["v"].tolist() == sorted(result["v"].tolist(), key=lambda v: ((v // 2) % 7, v))
    spans = trace.load(str(tmp_path))
    kinds = {s.kind for s in spans}
    assert {"task", "read", "stage", "exchange", "exchange read", "write"} <= kinds
    assert any(s.kind == "stage" and s.name == "doubled" for s in spans)
    assert any(s.kind == "task" and s.pid != os.getpid() for s in spans), "no task ran on a worker"
    tasks = [s for s in spans if s.kind == "task"]
    for step in (s for s in spans if s.kind != "task"):
        assert any(t.pid == step.pid and t.start <= step.start and step.end <= t.end for t in tasks), step
