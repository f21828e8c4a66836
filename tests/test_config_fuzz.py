"""Config fuzz: generated TOML documents and `--set` overrides never end in a traceback; every failure
is one ConfigError naming the key (exit code 2 in the CLI)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import spawned
from pipeline import config
from pipeline.errors import ConfigError

KEYS = ["source", "stages", "sink", "engine", "path", "mode", "format", "columns", "filters", "chunk_rows",
        "name", "uses", "params", "workers", "address", "backend", "retries", "security", "ca_file", "by",
        "aggs", "0", "1", "x"]
SCALARS = st.one_of(
    st.booleans(), st.integers(-5, 10**12), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "x", "mymod:keep", "stages.analyze:aggregate", "processes", "overwrite", "out",
                     "data", "parquet", "csv", "../x", "a:b:c", "[1", "{"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)),
    max_leaves=12,
)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f'"{k}" = {toml_value(v)}' for k, v in value.items()) + "}"


def document(tables: dict) -> str:
    return "\n".join(f'"{k}" = {toml_value(v)}' for k, v in tables.items())


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, dataset: Path) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "mymod.py").write_text("def keep(df):\n    return df\n")
    (root / "data").symlink_to(dataset)
    return root


VALID = {
    "source": {"path": "data"},
    "stages": [{"name": "keep", "uses": "mymod:keep"}],
    "sink": {"path": "out"},
}


def check(project: Path, text: str, overrides: list[str]) -> None:
    path = project / "job.toml"
    path.write_text(text)
    try:
        config.load(path, overrides)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and message, message
        assert message.startswith((str(path), "--set")), message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tables=st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=5))
def test_random_documents_fail_only_with_a_config_error(project: Path, tables: dict):
    check(project, document(tables), [])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    keys=st.lists(st.lists(st.sampled_from(KEYS), min_size=0, max_size=4).map(".".join), max_size=3),
    values=st.lists(st.one_of(SCALARS.map(toml_value), st.text(max_size=8)), min_size=3, max_size=3),
)
def test_random_overrides_fail_only_with_a_config_error(project: Path, keys: list[str], values: list[str]):
    overrides = [f"{k}={v}" for k, v in zip(keys, values)]
    check(project, document(VALID), overrides)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(section=st.sampled_from(["source", "sink", "engine"]), key=st.sampled_from(KEYS), value=VALUES)
def test_mutating_one_key_of_a_valid_config(project: Path, section: str, key: str, value: object):
    tables = {name: (dict(v) if isinstance(v, dict) else v) for name, v in VALID.items()}
    tables.setdefault(section, {})[key] = value
    check(project, document(tables), [])


def test_the_valid_document_loads(project: Path):
    path = project / "ok.toml"
    path.write_text(document(VALID))
    assert tomllib.loads(document(VALID)) == VALID
    assert config.load(path).pipeline.stages[0].name == "keep"


@pytest.mark.parametrize("override", ["sink", "stages.0=3", "stages=[]", "engine=1", "source.path=[1, 2]", "=", "a.b.c.d=1"])
def test_cli_exits_2_without_traceback(project: Path, override: str):
    path = project / "cli.toml"
    path.write_text(document(VALID))
    result = spawned.run(
        [str(Path(sys.executable).parent / "pipeline"), "validate", str(path), "--set", override],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
