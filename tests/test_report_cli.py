"""`pipeline run --report/--trace/--json` (and `[run] report`, the API's `report=`), as a user runs them: files
written for successful and failed runs, JSON on stdout, a bad destination refused before anything runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from pipeline.dataset import from_frame
from pipeline.errors import ConfigError, StageError
from test_cli import cli, flights_project  # noqa: F401 - fixture

FLIGHTS = Path("configs") / "flights.toml"


def refuse_one(df: pd.DataFrame) -> pd.DataFrame:
    if (df["v"] == 250).any():
        raise ValueError("refused by the test")
    return df


def test_report_trace_and_json_of_the_flights_job(flights_project: Path, tmp_path: Path):  # noqa: F811
    report, trace = tmp_path / "run.html", tmp_path / "run.json"
    result = cli("run", str(FLIGHTS), "--workers", "2", "--report", str(report), "--trace", str(trace), "--json",
                 "--set", f'sink.path="{tmp_path / "out.parquet"}"', cwd=flights_project)
    assert result.returncode == 0, result.stderr
    said = json.loads(result.stdout)  # stdout is the JSON and nothing else
    assert said["outputs"][0]["rows"] == 185 and said["report"] == str(report)
    assert {s["stage"] for s in said["outputs"][0]["stages"]} >= {"drop_cancelled", "by_carrier_month"}
    html = report.read_text()
    assert 'id="report-data"' in html and "<svg" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|@import|url\(\s*["']?https?:""", html)  # loads nothing
    events = json.loads(trace.read_text())["traceEvents"]
    assert any(e.get("cat") == "task" and "by_carrier_month" in e["name"] for e in events)


def test_a_failed_run_still_writes_its_report(tmp_path: Path):
    report = tmp_path / "failed.html"
    frame = from_frame(pd.DataFrame({"v": range(400)}), chunks=4).then(refuse_one)
    with pytest.raises(StageError):
        frame.write(str(tmp_path / "out")).run(engine="processes", workers=2, report=str(report))
    html = report.read_text()
    assert "refused by the test" in html
    data = json.loads(html.split('id="report-data">', 1)[1].split("</script>", 1)[0].replace("<\\/", "</"))
    assert data["error"] and sum(1 for row in data["tasks"]["rows"] if row[7]) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["missing/sub/r.html", "."])
def test_a_bad_destination_is_refused_before_the_run(flights_project: Path, tmp_path: Path, where: str):  # noqa: F811
    out = tmp_path / "never.parquet"
    result = cli("run", str(FLIGHTS), "--report", str(tmp_path / where), "--set", f'sink.path="{out}"',
                 cwd=flights_project)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--report" in result.stderr and not out.exists()
    with pytest.raises(ConfigError, match="report"):
        from_frame(pd.DataFrame({"v": [1]})).write(str(out)).run(engine="sync", report=str(tmp_path / where))
    assert not out.exists()


def test_config_run_report_is_relative_to_the_config(flights_project: Path, tmp_path: Path):  # noqa: F811
    config = flights_project / "configs" / "reported.toml"
    config.write_text((flights_project / FLIGHTS).read_text() + '\n[run]\nreport = "reported.html"\n')
    result = cli("run", str(config), "--quiet", "--set", f'sink.path="{tmp_path / "o.parquet"}"', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (config.parent / "reported.html").stat().st_size > 0
