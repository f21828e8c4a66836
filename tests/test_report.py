"""The run report's facts (`pipeline.report`): from a real run's timeline, consistent with the plan and the
manifest; advice computed from the numbers it names; sampling of very large runs keeps what matters."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline import report, report_html
from pipeline.dataset import from_frame
from pipeline.timeline import TaskRun


def doubled(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(v=df["v"] * 2)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory):
    frame = pd.DataFrame({"k": [i % 7 for i in range(4000)], "v": range(4000)})
    out = tmp_path_factory.mktemp("report") / "out"
    return from_frame(frame, chunks=8).then(doubled).sort(["k", "v"]).write(str(out)).run(engine="processes",
                                                                                          workers=2)


def test_facts_agree_with_the_plan_and_the_manifest(finished):
    facts = report.facts(finished.timeline, [finished], "t", "processes")
    runs = finished.timeline.runs()
    assert facts["tasks"]["total"] == len(runs) == len(finished.timeline.plan) and not facts["tasks"]["sampled"]
    assert sum(s["tasks"] for s in facts["stages"]) == len(runs)
    assert {s["label"] for s in facts["stages"]} == {t.label for t in finished.timeline.plan}
    for stage in facts["stages"]:
        assert stage["fastest"]["seconds"] <= stage["median"] <= stage["slowest"]["seconds"]
        assert all(v >= 0 for v in stage["seconds"].values())
    assert facts["io"]["rows_read"] >= 4000 and facts["io"]["rows_written"] == finished.rows == 4000
    assert facts["io"]["bytes_read"] >= 4000 * 16  # two int64 columns, at least once
    assert facts["io"]["bytes_written"] == sum(f["bytes"] for f in finished.files)
    assert facts["io"]["bytes_spilled"] > 0  # the sort's exchange wrote map files
    workers = facts["workers"]
    assert len(workers) >= 2 and all(0 <= w["idle_pct"] <= 100 and w["peak_rss"] > 0 for w in workers)
    assert facts["outputs"][0]["rows"] == 4000


def test_the_manifest_renders_its_facts_as_a_table_in_a_notebook(finished):
    html = finished._repr_html_()
    assert html.startswith("<table>") and "4,000 rows" in html
    assert html.count("<tr><td>") == len(finished.facts()["stages"]) > 0 and "sort" in html


def test_the_page_embeds_the_plan_with_measured_rows(finished):
    html = report_html.render(report.page_facts(finished.timeline, [finished], "t", "processes"))
    assert "<svg" in html and "4,000 rows" in html


def run(label: str, seconds: float, chunk: int, rows: int = 100, source: str = "") -> TaskRun:
    return TaskRun(f"{label}-{chunk:05d}", label, chunk, source or f"f{chunk}.parquet", "w:1", 1, chunk * seconds,
                   (chunk + 1) * seconds, (("read", "read", chunk * seconds, chunk * seconds, rows, None),))


def test_advice_names_tiny_tasks_and_a_task_that_holds_the_run_up():
    tiny = [run("read+clean+write", 0.002, i) for i in range(50)]
    said = report.advice(tiny, 1.0)
    assert len(said) == 1 and "median task 2.0 ms" in said[0]["text"] and "chunk_rows" in said[0]["text"]
    assert said[0]["figure"] == "median 2.0 ms"

    slow = [run("read+agg", 0.1, i) for i in range(5)] + [TaskRun("read+agg-big", "read+agg", 9, "big.parquet", "w:1",
                                                                   1, 0.0, 4.0)]
    said = report.advice(slow, 5.0)
    assert len(said) == 1 and "80% of the run" in said[0]["text"] and "big.parquet" in said[0]["text"]
    assert report.advice([run("read+agg", 0.5, i) for i in range(8)], 4.0) == []  # nothing to say


def test_a_very_large_run_is_sampled_keeping_failures_and_the_slowest():
    runs = [run("a", 0.001, i) for i in range(report.MAX_BARS * 2)]
    runs[7] = TaskRun("a-00007", "a", 7, "f7", "", 0, 0.0, 0.5, failed="boom")
    runs[123] = TaskRun("a-00123", "a", 123, "f123", "w:1", 1, 0.0, 9.0)
    bars = report._bars(runs)
    assert bars["sampled"] and bars["total"] == len(runs) and len(bars["rows"]) <= report.MAX_BARS
    keys = {row[8] for row in bars["rows"]}
    assert {"a-00007", "a-00123"} <= keys


def test_a_failed_attempt_is_counted_apart_from_the_retry_that_finished():
    lost = TaskRun("c-00001", "c", 1, "f1", "", 0, 0.0, 0.2, failed="its worker died")
    again = run("c", 0.3, 1)
    stage = report._stage("c", [lost, again])
    assert stage["tasks"] == 1 and stage["failed"] == 1
    assert stage["slowest"]["seconds"] == pytest.approx(0.3)
    rows = report._bars([lost, again])["rows"]
    assert [row[0] for row in rows] == ["failed", "w:1"] and rows[0][7] == "its worker died"
