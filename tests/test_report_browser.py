"""The HTML run report (`pipeline.report_html`) opened in a real headless Chromium: the page must draw every
lane and bar of a real run's timeline without a script error, ask for nothing over the network, show a failed
run's error and failed task, and stay small with 20,000 bars.

The browser is the system's Chromium (Debian's `chromium` package), driven by playwright with no browser
download: when it is missing, the tests install it as root with apt-get, and skip (saying why) otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pandas as pd
import pytest

from pipeline import report, report_html
from pipeline.dataset import Output, from_frame
from pipeline.errors import StageError
from pipeline.graph_run import describe
from pipeline.plan import Task
from pipeline.plan_graph import draw
from pipeline.timeline import Timeline, recording
from pipeline.trace import Timing

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # worker processes cannot import the tests

MAX_BYTES = 5_000_000


def chromium() -> str:
    """The system Chromium, installed with apt-get when missing and we may (root); else the tests skip."""
    found = shutil.which("chromium")
    if found:
        return found
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("no `chromium` on PATH, and not root with apt-get to install it (apt-get install chromium)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1200)
        if done.returncode:
            pytest.fail(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    found = shutil.which("chromium")
    if not found:
        pytest.fail("apt-get installed chromium but it is not on PATH")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium()
    with sync_api.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            launched.close()


class Opened:
    """A page opened from a file:// URL, with every console error, page error and request it made."""

    def __init__(self, browser: Any, path: Path, viewport: tuple[int, int] = (1280, 900)) -> None:
        self.url = path.resolve().as_uri()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        self.page.on("console", lambda msg: self.errors.append(f"console: {msg.text}") if msg.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.errors.append(f"page: {exc}"))
        self.page.on("requestfailed", lambda req: self.errors.append(f"request failed: {req.url}"))
        self.page.route("**/*", self._route)
        self.page.goto(self.url, wait_until="load")
        self.page.wait_for_selector("#timeline[data-bars]", state="attached", timeout=30_000)

    def _route(self, route: Any) -> None:
        self.requests.append(route.request.url)
        if route.request.url == self.url or route.request.url.startswith("data:"):
            route.continue_()
        else:
            route.abort()

    def timeline(self, name: str) -> int:
        return int(self.page.get_attribute("#timeline", f"data-{name}"))

    def hover_lane(self, lane: int, enough: int = 3) -> list[str]:
        """Tooltips seen moving the mouse along one lane, left to right (up to `enough` of them)."""
        box = self.page.locator("#timeline canvas").bounding_box()
        y = box["y"] + self.timeline("axis") + (lane + 0.5) * self.timeline("row")
        tip, seen = self.page.locator("#tip"), []
        for x in range(int(box["x"] + self.timeline("gutter")) + 1, int(box["x"] + box["width"]), 5):
            self.page.mouse.move(x, y)
            if tip.is_visible():
                seen.append(tip.inner_text())
                if len(seen) >= enough:
                    break
        return seen

    def close(self) -> None:
        self.page.close()


def doubled(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(v=df["v"] * 2)


def refuse_one_chunk(df: pd.DataFrame) -> pd.DataFrame:
    if (df["v"] == 250).any():
        raise ValueError("refused by the test")
    return df


def frame() -> pd.DataFrame:
    return pd.DataFrame({"k": [i % 7 for i in range(800)], "v": range(800)})


def lanes_of(facts: dict[str, Any]) -> set[tuple[str, int]]:
    return {(row[0], row[1]) for row in facts["tasks"]["rows"]}


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Path, dict[str, Any]]]]:
    """A real run's report per engine (made on first use): its file and its facts."""
    class Reports(dict):
        def __missing__(self, engine: str) -> tuple[Path, dict[str, Any]]:
            folder = tmp_path_factory.mktemp(engine)
            output: Output = from_frame(frame(), chunks=8).then(doubled).sort(["k", "v"]).write(str(folder / "out"))
            manifest = output.run(engine=engine, workers=2)
            facts = report.facts(manifest.timeline, [manifest], f"sorted frame on {engine}", engine)
            facts["plan_svg"] = draw(describe([output]), "svg")
            path = folder / "report.html"
            report_html.write(facts, str(path))
            self[engine] = (path, facts)
            return self[engine]

    yield Reports()


@pytest.mark.parametrize("engine", ["processes", "threads"])
def test_a_real_runs_report_draws_every_lane_and_bar(engine: str, browser: Any, reports: dict, tmp_path: Path):
    path, facts = reports[engine]
    opened = Opened(browser, path)
    try:
        assert opened.errors == []
        assert opened.timeline("lanes") == len(lanes_of(facts)) >= 1
        assert opened.timeline("bars") == len(facts["tasks"]["rows"]) == facts["tasks"]["total"] > 8
        assert opened.timeline("failed") == 0
        page = opened.page
        assert page.title() == f"sorted frame on {engine}"
        header = page.inner_text("#header")
        assert engine in header and "succeeded" in header and str(facts["tasks"]["total"]) in header
        assert page.locator("#run-error").count() == 0
        assert page.locator("#panel-plan svg g.node").count() >= 3  # the plan drawn inline
        assert page.locator("#stages-body tbody tr").count() == len(facts["stages"])
        assert page.locator("#skew-body tbody tr").count() == len(facts["stages"])
        assert page.locator("#workers-body tbody tr").count() == len(facts["workers"])
        assert "800" in page.inner_text("#io-body")  # rows read and written
        assert facts["outputs"][0]["path"] in page.inner_text("#outputs-body")
        assert page.locator("#sampled").count() == 0
        tips = opened.hover_lane(0)
        keys = {row[8] for row in facts["tasks"]["rows"]}
        assert tips and all(tip.splitlines()[0].removeprefix("key: ") in keys for tip in tips)
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
        assert opened.errors == []
    finally:
        opened.close()


def test_the_page_asks_for_nothing_over_the_network(browser: Any, reports: dict):
    path, _ = reports["processes"]
    opened = Opened(browser, path)
    try:
        assert opened.errors == []
        assert [url for url in opened.requests if not url.startswith("data:")] == [opened.url]
    finally:
        opened.close()
    text = path.read_text()
    assert "<link" not in text and ' src="' not in text and "url(http" not in text


def test_a_failed_runs_report_shows_the_error_and_the_failed_task(browser: Any, tmp_path: Path):
    with recording() as timeline:
        with pytest.raises(StageError) as caught:
            (from_frame(pd.DataFrame({"v": range(400)}), chunks=4).then(refuse_one_chunk)
             .write(str(tmp_path / "out")).run(engine="processes", workers=2))
    facts = report.facts(timeline, [], "a run that fails", "processes", error=str(caught.value))
    facts["plan_svg"] = ""
    failed = [row for row in facts["tasks"]["rows"] if row[7]]
    assert len(failed) == 1 and failed[0][0] == "failed"
    report_html.write(facts, str(tmp_path / "report.html"))
    opened = Opened(browser, tmp_path / "report.html")
    try:
        assert opened.errors == []
        page = opened.page
        error = page.locator("#run-error")
        assert error.is_visible() and "refused by the test" in error.inner_text()
        assert page.eval_on_selector("#run-error", "e => getComputedStyle(e).color") == "rgb(198, 40, 40)"
        assert "failed" in page.inner_text("#header")
        assert opened.timeline("failed") == 1
        assert opened.timeline("bars") == len(facts["tasks"]["rows"])
        assert opened.timeline("lanes") == len(lanes_of(facts))
        tips = opened.hover_lane(opened.timeline("lanes") - 1)  # the "failed" lane comes last
        assert tips and all("refused by the test" in tip for tip in tips)
        assert "No plan drawing" in page.inner_text("#panel-plan")
    finally:
        opened.close()


def synthetic_timeline(tasks: int, workers: int = 16) -> Timeline:
    """`tasks` task runs with long, realistic keys, labels and file names, spread over `workers` workers."""
    timeline = Timeline(started=0.0)
    timeline.ended = tasks / workers * 0.01
    per_batch = 50
    for b in range(tasks // per_batch):
        worker, lane = f"worker-host-{b % workers:02d}.cluster.internal:{40000 + b % workers}", 0
        start = (b // workers) * per_batch * 0.01
        batch = [Task(f"flights_by_carrier~1/chunk-{b * per_batch + i:06d}", doubled, (),
                      f"read+drop_nulls+derive+{'sort' if b % 3 else 'aggregate'}+write",
                      b * per_batch + i, f"/data/flights/year=2024/part-{(b * per_batch + i) // 40:05d}.parquet")
                 for i in range(per_batch)]
        timing = Timing(per_batch * 0.01, worker, lane, start, start + per_batch * 0.01,
                        [(start + i * 0.01, start + i * 0.01 + 0.009,
                          (("read", "read", start + i * 0.01, start + i * 0.01 + 0.003, 1000, None),))
                         for i in range(per_batch)], peak_rss=300_000_000)
        timeline.finished(batch, timing, start, start + per_batch * 0.01)
    return timeline


def test_twenty_thousand_bars_stay_small_and_draw(browser: Any, tmp_path: Path):
    """20,000 bars, as a run of 100,000 tasks sampled down would show them (the sampling itself is
    `pipeline.report`'s; here the page's share: its size, drawing them all, and saying they are a sample)."""
    facts = report.facts(synthetic_timeline(report.MAX_BARS), [], "100,000 tasks", "processes")
    assert len(facts["tasks"]["rows"]) == report.MAX_BARS == 20_000 and not facts["tasks"]["sampled"]
    facts["tasks"].update(total=100_000, sampled=True)
    facts["plan_svg"] = ""
    path = tmp_path / "report.html"
    report_html.write(facts, str(path))
    size = path.stat().st_size
    print(f"report with 20,000 bars: {size:,} bytes")
    assert size < MAX_BYTES
    started = time.monotonic()
    opened = Opened(browser, path)
    try:
        assert opened.errors == []
        assert opened.timeline("bars") == 20_000 and opened.timeline("lanes") == 16
        assert time.monotonic() - started < 20  # loaded, parsed and drawn (generous: the machine is shared)
        assert opened.page.inner_text("#sampled").startswith("showing 20,000 of 100,000 tasks (sampled")
        assert opened.hover_lane(3)
    finally:
        opened.close()


def test_the_embedded_data_cannot_close_its_script():
    facts = report.facts(Timeline(started=0.0, ended=0.0), [], "</script><script>alert(1)</script>", "sync",
                         error="boom </script> <!-- x")
    page = report_html.render(facts)
    data = page.split('id="report-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data
    assert page.count("</script>") == 2 and "<title>&lt;/script&gt;" in page
