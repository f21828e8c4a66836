"""The `pipeline` command end to end, as a user runs it: real config files, a user's stage module next to
the config, another working directory, real Parquet in and out."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import spawned
from pipeline import config
from pipeline.engines import ENGINES

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = str(Path(sys.executable).parent / "pipeline")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return spawned.run([PIPELINE, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def flights_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The flights example copied elsewhere: configs/ with the user's module, data/ prepared by the script."""
    root = tmp_path_factory.mktemp("project")
    shutil.copytree(ROOT / "configs", root / "configs")
    prepared = spawned.run(
        [sys.executable, str(ROOT / "scripts" / "prepare_flights.py"), "--out", str(root / "data" / "flights")],
        capture_output=True, text=True, timeout=300,
    )
    assert prepared.returncode == 0, prepared.stderr
    return root


def whole_table_answer(config_path: Path) -> pd.DataFrame:
    """The same stages applied by pandas to the whole table in one piece."""
    job = config.load(config_path)
    df = pd.read_parquet(job.config.source.path, columns=job.config.source.columns)
    for stage in job.pipeline.stages:
        df = stage.apply(df)
    return df


@pytest.mark.parametrize("engine", list(ENGINES))
def test_flights_job_gives_the_whole_table_answer(flights_project: Path, tmp_path: Path, engine: str):
    out = tmp_path / "delays.parquet"
    result = cli(
        "run", str(flights_project / "configs" / "flights.toml"), "--engine", engine, "--workers", "2",
        "--set", f'sink.path="{out}"', cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "by_carrier_month" in result.stdout and "336,776" in result.stdout  # the summary table
    expected = whole_table_answer(flights_project / "configs" / "flights.toml")
    got = pd.read_parquet(out)
    assert len(got) == 185
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-9)


@pytest.fixture(scope="module")
def taxi_project(flights_project: Path) -> Path:
    """The taxi example over a small generated data set (200,000 trips in 4 files)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from make_taxi import generate_taxi
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    generate_taxi(str(flights_project / "data" / "taxi"), rows=200_000, files=4, seed=0, row_group_rows=25_000)
    return flights_project


@pytest.fixture(scope="module")
def taxi_reference(taxi_project: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("taxi") / "sync.parquet"
    result = cli("run", str(taxi_project / "configs" / "taxi.toml"), "--engine", "sync", "--quiet",
                 "--set", f'sink.path="{out}"', cwd=taxi_project)
    assert result.returncode == 0, result.stderr
    return pd.read_parquet(out)


@pytest.mark.parametrize("engine", [name for name in ENGINES if name != "sync"])
def test_taxi_job_is_identical_on_every_engine(taxi_project: Path, taxi_reference: pd.DataFrame, tmp_path, engine):
    out = tmp_path / "taxi.parquet"
    result = cli("run", str(taxi_project / "configs" / "taxi.toml"), "--engine", engine, "--workers", "2", "--quiet",
                 "--set", f'sink.path="{out}"', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(taxi_reference) > 100
    pd.testing.assert_frame_equal(pd.read_parquet(out), taxi_reference, check_exact=False, rtol=1e-12)


def test_per_chunk_job_writes_a_committed_directory(flights_project: Path, tmp_path: Path):
    out = tmp_path / "clean"
    result = cli(
        "run", str(flights_project / "configs" / "flights_clean.toml"), "--quiet", "--set", f'sink.path="{out}"',
        cwd=Path("/"),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # --quiet
    parts = sorted(out.glob("part-*.parquet"))
    assert [p.name for p in parts] == [f"part-{i:05d}.parquet" for i in range(8)]  # 12 monthly files packed 50,000 rows a chunk
    assert (out / "_SUCCESS").exists()
    got = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    expected = whole_table_answer(flights_project / "configs" / "flights_clean.toml").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)


def test_plan_shows_fused_chain_and_tree(flights_project: Path):
    result = cli("plan", str(flights_project / "configs" / "flights.toml"), cwd=flights_project)
    assert result.returncode == 0, result.stderr
    assert "8 × read+drop_cancelled+" in result.stdout
    assert "reduction tree: 8 partials → 1 combines → finalize" in result.stdout


def test_validate_reports_chunks(flights_project: Path):
    result = cli("validate", str(flights_project / "configs" / "flights.toml"), cwd=Path("/"))
    assert result.returncode == 0, result.stderr
    assert "ok — 8 chunks" in result.stdout


def write_config(folder: Path, body: str) -> Path:
    path = folder / "job.toml"
    path.write_text(body)
    return path


BASE = """
[source]
path = "{data}"
[[stages]]
name = "keep"
uses = "mymod:keep"
[sink]
path = "out"
"""


@pytest.mark.parametrize(
    "edit, expected",
    [
        (("[sink]", "[sink]\nmdoe = 'x'"), "sink.mdoe: unknown key (expected one of: path, mode, format, partition_by, storage_options)"),
        (('uses = "mymod:keep"', 'uses = "nomod:keep"'), "stages[0].uses: cannot import module 'nomod'"),
        (('uses = "mymod:keep"', 'uses = "mymod:nothing"'), "stages[0].uses: module 'mymod' has no function 'nothing'"),
        (('uses = "mymod:keep"', 'uses = "keep"'), "stages[0].uses: expected 'module:function', got 'keep'"),
        (('path = "out"', 'path = "out"\nmode = "sometimes"'), "sink.mode: Input should be 'error', 'overwrite' or 'append'"),
        (('name = "keep"\n', 'name = "keep"\nparams = { nope = 1 }\n'), "stages[0].params (stage 'keep'): got an unexpected keyword argument 'nope'"),
        (("[sink]", "[engine]\nworkers = 'many'\n[sink]"), "engine.workers: Input should be a valid integer"),
        (("[sink]", "[engine]\nname = 'spark'\n[sink]"), "engine.name: unknown engine 'spark'"),
        (('path = "{data}"', 'path = "/no/such/dir"'), "source.path: no such file or directory: /no/such/dir"),
        (("[source]", "[source"), "not valid TOML"),
    ],
)
def test_config_errors_exit_2_with_one_line(dataset: Path, tmp_path: Path, edit, expected):
    (tmp_path / "mymod.py").write_text("def keep(df):\n    return df\n")
    body = BASE.replace(*edit).replace("{data}", str(dataset))
    path = write_config(tmp_path, body)
    result = cli("run", str(path), "--quiet", cwd=Path("/"))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {path}:") or lines[0].startswith("error: --set")
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_bad_set_override_exits_2(dataset: Path, tmp_path: Path):
    (tmp_path / "mymod.py").write_text("def keep(df):\n    return df\n")
    path = write_config(tmp_path, BASE.replace("{data}", str(dataset)))
    result = cli("validate", str(path), "--set", "stages.3.name=x", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip() == "error: --set stages.3.name: stages has no item '3'"


def test_failing_stage_exits_1_naming_stage_chunk_file_and_user_code(dataset: Path, tmp_path: Path):
    (tmp_path / "mymod.py").write_text(
        "def keep(df):\n    return df\n\n"
        "def explode(df):\n    if df['id'].max() >= 5900:\n        raise RuntimeError('bad batch')\n    return df\n"
    )
    path = write_config(tmp_path, BASE.replace("{data}", str(dataset)).replace("mymod:keep", "mymod:explode"))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("yesterday's output")
    result = cli("run", str(path), "--quiet", "--set", 'sink.mode="overwrite"', cwd=Path("/"))
    assert result.returncode == 1
    first = result.stderr.splitlines()[0]  # the 4 small files share chunk 0; the message names the one that failed
    assert "stage 'keep' failed on chunk 0 (input" in first and "attempt 1 (not retried" in first
    assert "data-003.parquet" in first and "data-000" not in first and "RuntimeError: bad batch" in first
    assert "mymod.py\", line 6, in explode" in result.stderr and "raise RuntimeError('bad batch')" in result.stderr
    assert "Traceback" not in result.stderr and "pipeline/tasks.py" not in result.stderr
    assert (tmp_path / "out" / "keep.txt").read_text() == "yesterday's output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.toml", "mymod.py", "out"]


@pytest.mark.parametrize("engine", ["processes", "dask", "ray"])
def test_every_chunk_failing_is_reported_once(dataset: Path, tmp_path: Path, engine: str):
    """After the first failure, the chunks in flight fail too: one report, and no engine prints its own."""
    (tmp_path / "mymod.py").write_text("def keep(df):\n    raise RuntimeError('bad batch')\n")
    path = write_config(tmp_path, BASE.replace("{data}", str(dataset)))
    result = cli("run", str(path), "--quiet", "--set", f'engine.name="{engine}"', "--set", "source.chunk_rows=500",
                 cwd=Path("/"))
    assert result.returncode == 1
    assert result.stderr.count("RuntimeError: bad batch") == 1, result.stderr
    assert "Traceback" not in result.stderr and "Unhandled" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.toml", "mymod.py"]


def test_error_mode_refuses_existing_output(dataset: Path, tmp_path: Path):
    (tmp_path / "mymod.py").write_text("def keep(df):\n    return df\n")
    path = write_config(tmp_path, BASE.replace("{data}", str(dataset)))
    assert cli("run", str(path), "--quiet", cwd=tmp_path).returncode == 0
    again = cli("run", str(path), "--quiet", cwd=tmp_path)
    assert again.returncode == 1 and "already exists (sink.mode = 'error')" in again.stderr
