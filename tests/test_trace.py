"""A run's timeline (`pipeline.trace` in the workers, `pipeline.timeline` in the driver): every task run on
every engine comes back with the batch's results, on the worker and lane that ran it, its steps inside it,
on the driver's clock; `PIPELINE_TRACE` writes it as a Chrome trace, for failed runs too."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import cloudpickle

import pandas as pd
import pytest

from pipeline import chrome_trace, report
from pipeline.dataset import from_frame
from pipeline.engines import get_engine
from pipeline.errors import StageError
from pipeline.plan import Task
from pipeline.timeline import Timeline
from pipeline.trace import Timing
from clusters import dask_scheduler, ray_auth, ray_head  # noqa: F401 - fixtures

FIXTURES = (dask_scheduler, ray_auth, ray_head)
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # cluster workers cannot import the tests


def doubled(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(v=df["v"] * 2)


def refuse_chunk_two(df: pd.DataFrame) -> pd.DataFrame:
    if (df["v"] == 250).any():
        raise ValueError("refused by the test")
    return df


def sorted_dataset():
    frame = pd.DataFrame({"k": [i % 7 for i in range(400)], "v": range(400)})
    return from_frame(frame, chunks=4).then(doubled).sort(["k", "v"])


def engine_for(name: str, request: pytest.FixtureRequest):
    if name == "dask":
        return get_engine("dask", workers=2, address=request.getfixturevalue("dask_scheduler"))
    if name == "ray":
        address = request.getfixturevalue("ray_head")
        import ray

        if ray.is_initialized():
            ray.shutdown()
        return get_engine("ray", workers=2, address=address)
    return get_engine(name, workers=2)


@pytest.mark.parametrize("name", ["sync", "threads", "processes", "joblib", "dask", "ray"])
def test_every_task_comes_back_with_its_worker_lane_and_steps(name: str, tmp_path: Path,
                                                              request: pytest.FixtureRequest):
    with engine_for(name, request) as engine:
        manifest = sorted_dataset().write(str(tmp_path / "out")).run(engine=engine)
    timeline = manifest.timeline
    runs = timeline.runs()
    plan_keys = {r.key for r in runs}
    assert any(k.endswith("/done") or k == "commit" for k in plan_keys)
    assert len(runs) == len(plan_keys)  # each task once: nothing failed
    assert all(not r.failed and r.attempt == 1 for r in runs)
    workers = {r.worker for r in runs}
    driver = f"{os.uname().nodename}:{os.getpid()}"
    if name in ("processes", "joblib", "dask", "ray"):
        assert workers - {driver}, "no task ran on a worker"
    else:
        assert workers == {driver}
    if name == "threads":
        assert len({r.lane for r in runs}) >= 2  # one lane per thread
    kinds = {kind for r in runs for kind, *_ in r.steps}
    assert {"read", "stage", "exchange", "exchange read", "write"} <= kinds
    assert any(kind == "stage" and step == "doubled" for r in runs for kind, step, *_ in r.steps)
    writes = [step for r in runs for step in r.steps if step[0] == "write"]
    assert sum(step[4] for step in writes) == 400 and all(step[5] > 0 for step in writes)  # rows, bytes
    assert all(r.queued >= -0.5 for r in runs)
    for run in runs:  # a worker's steps and tasks are moved by the same offset: they stay nested
        assert run.start <= run.end
        for _, _, start, end, _, _ in run.steps:
            assert run.start - 1e-6 <= start <= end <= run.end + 1e-6, (run.key, run.steps)
    assert set(timeline.peak_rss()) == workers - ({""})
    assert all(rss > 0 for rss in timeline.peak_rss().values())
    facts = report.facts(timeline, [manifest], "t", name)  # the same report from every engine
    assert {w["id"] for w in facts["workers"]} == workers
    assert sum(w["lanes"] for w in facts["workers"]) == len({(r.worker, r.lane) for r in runs})
    assert len(facts["tasks"]["rows"]) == len(runs) and facts["io"]["rows_written"] == 400


def test_a_workers_clock_is_put_on_the_drivers():
    """A worker whose clock is 100 s ahead: its batch with the shortest round trip sets its offset, and its
    tasks land inside the window in which the driver saw them run."""
    timeline = Timeline(started=1000.0)
    task = Task("chunk-00000", doubled, (), "read+doubled+write", 0, "a.parquet")
    slow = Timing(0.5, "w:1", 7, 1101.0 + 100, 1101.5 + 100, [(1101.0 + 100, 1101.5 + 100, ())])
    quick = Timing(0.2, "w:1", 7, 1103.1 + 100, 1103.3 + 100, [(1103.1 + 100, 1103.3 + 100, (("read", "read", 1103.1 + 100, 1103.2 + 100, 5, None),))])
    timeline.finished([task], slow, 1100.0, 1104.0)  # queued for long on the way: a poor estimate
    timeline.finished([task], quick, 1103.0, 1103.4)
    assert timeline.offsets()["w:1"] == pytest.approx(100.0, abs=0.01)
    last = timeline.runs()[-1]
    assert 103.0 <= last.start <= last.end <= 103.4  # seconds since the run started, on the driver's clock
    assert last.steps[0][2] == pytest.approx(103.1, abs=0.01)
    assert last.queued == pytest.approx(0.1, abs=0.01)  # sent at 103.0, started at 103.1


def test_a_trace_is_written_when_asked_also_for_a_failed_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(chrome_trace.ENV, str(tmp_path / "traces"))
    sorted_dataset().collect(engine="sync")
    with pytest.raises(StageError):
        from_frame(pd.DataFrame({"v": range(400)}), chunks=4).then(refuse_chunk_two).collect(engine="processes",
                                                                                           workers=2)
    traces = [json.loads(p.read_text()) for p in sorted((tmp_path / "traces").glob("trace-*.json"))]
    assert len(traces) == 2
    for trace in traces:
        names = {e["pid"]: e["args"]["name"] for e in trace["traceEvents"] if e["ph"] == "M"}
        spans = [e for e in trace["traceEvents"] if e["ph"] == "X"]
        assert spans and all(e["pid"] in names and e["dur"] >= 0 and e["ts"] >= -1e6 for e in spans)
    failed = [e for t in traces for e in t["traceEvents"] if e.get("cat") == "failed"]
    assert len(failed) == 1 and "refused by the test" in failed[0]["args"]["error"]
    assert failed[0]["args"]["chunk"] == 2


def test_no_trace_file_unless_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(chrome_trace.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    sorted_dataset().collect(engine="sync")
    assert not list(tmp_path.iterdir())
