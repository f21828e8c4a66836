"""What a command imports before it does anything: checked by module, in a fresh interpreter (no timing).
`import pipeline` and `pipeline --help` (or a usage error) load no pandas, engine or cluster library;
`validate` and `plan` load no engine, and no library of an engine they were not asked for."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

import spawned

ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"dask", "distributed", "ray", "polars", "joblib"}
ENGINES = {"pipeline.engines.local", "pipeline.engines.dask", "pipeline.engines.ray", "pipeline.engines.joblib"}
PROBE = """
import json, sys
from pipeline.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def loaded(code: str) -> set[str]:
    done = spawned.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def tops(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_import_pipeline_loads_no_pandas_engine_or_cluster_library():
    modules = loaded("import json, sys, pipeline; print(json.dumps(sorted(sys.modules)), file=sys.stderr)")
    assert "pipeline" in modules
    assert not tops(modules) & (HEAVY | {"pandas", "pyarrow", "pydantic", "rich", "cloudpickle"})


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["frobnicate"]], ids=["help", "run-help", "usage"])
def test_help_and_usage_errors_load_nothing_heavy(argv: list[str]):
    modules = loaded(PROBE.format(argv=argv))
    assert "pipeline.cli" in modules
    assert not tops(modules) & (HEAVY | {"pandas", "pyarrow", "pydantic", "rich", "cloudpickle"})


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_validate_and_plan_load_no_engine(command: str, tmp_path: Path):
    pd.DataFrame({"carrier": ["a", "b", "a"], "delay": [1, 2, 3]}).to_parquet(tmp_path / "in.parquet")
    config = tmp_path / "job.toml"
    config.write_text(f'[source]\npath = "{tmp_path / "in.parquet"}"\n[[stages]]\nname = "agg"\n'
                      'uses = "stages.analyze:aggregate"\nparams = { by = ["carrier"], aggs = { n = ["delay", "count"] } }\n'
                      f'[sink]\npath = "{tmp_path / "out.parquet"}"\n[engine]\nname = "dask"\n')
    modules = loaded(PROBE.format(argv=[command, str(config)]))
    assert "pipeline.config" in modules  # it did the work
    assert not modules & ENGINES and not tops(modules) & HEAVY
