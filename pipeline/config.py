"""TOML config → validated objects → (Pipeline, Source, Sink, engine options).

Paths in the config are relative to the config file, and a module next to the config file can be named
in `uses`, so a config runs the same from any working directory. Every mistake becomes one ConfigError
naming the file, the key and what was expected.
"""

from __future__ import annotations

import importlib
import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cloudpickle
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, field_validator

from pipeline.engines import ENGINES
from pipeline.engines.memory import parse_size
from pipeline.errors import ConfigError
from pipeline.io import FileSource, Sink, sink_for
from pipeline.pipeline import Pipeline
from pipeline.stage import Stage


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class SourceConfig(_Section):
    path: str
    format: Literal["parquet", "csv"] | None = None
    columns: list[str] | None = None
    filters: list[tuple[str, str, Any]] | None = None
    chunk_rows: PositiveInt | None = None  # None: chosen for the stages (see plan.discover)
    on_bad_file: Literal["error", "skip"] = "error"
    storage_options: dict[str, Any] | None = None  # for a URL path: endpoint_url, key, secret, region, ...


class StageConfig(_Section):
    name: str
    uses: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    params: dict[str, Any] = {}
    io_concurrency: PositiveInt | None = None  # run slices of each chunk at once on threads: the stage waits on I/O


class SinkConfig(_Section):
    path: str
    mode: Literal["error", "overwrite", "append"] = "error"
    format: Literal["parquet", "csv"] | None = None
    partition_by: list[str] | None = None  # hive folders `col=value/`, outermost first (directory outputs)
    storage_options: dict[str, Any] | None = None  # s3:// outputs: endpoint_url, key, secret, region, ...


class RunConfig(_Section):
    """`[run]`: settings of the run itself rather than of one input or output."""

    scratch: str | None = None  # intermediate data: a folder, or a URL every worker reaches ("s3://bucket/tmp")
    scratch_options: dict[str, Any] | None = None  # storage_options for a scratch URL; default an output's
    report: str | None = None  # write the run's HTML report here (as `--report`)
    trace: str | None = None  # write the run's Chrome trace here (as `--trace`)


class SecurityConfig(_Section):
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    require_encryption: bool = True


class EngineConfig(_Section):
    name: str = "processes"
    workers: PositiveInt | None = None
    address: str | None = None
    backend: str | None = None
    retries: int | None = Field(default=None, ge=0)  # lost-worker retries per task; engine default
    connect_timeout: PositiveFloat | None = None  # seconds to reach a cluster by address
    security: SecurityConfig | None = None
    start_method: Literal["auto", "fork", "forkserver"] | None = None  # processes: how workers start
    worker_memory: str | PositiveInt | None = None  # "2GB": a worker over it is stopped; default a share of RAM

    @field_validator("worker_memory")
    @classmethod
    def _size(cls, size: str | int | None) -> str | int | None:
        if size is not None:
            try:
                parse_size(size)
            except ConfigError as exc:
                raise ValueError(str(exc).removeprefix("engine.worker_memory: ")) from None
        return size

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in ENGINES:
            raise ValueError(f"unknown engine {name!r}; expected one of {', '.join(ENGINES)}")
        return name

    def options(self) -> dict[str, Any]:
        """Keyword arguments for the engine: only what was set."""
        return self.model_dump(exclude={"name"}, exclude_none=True, exclude_defaults=True)


class Config(_Section):
    source: SourceConfig
    stages: list[StageConfig] = Field(min_length=1)
    sink: SinkConfig
    engine: EngineConfig = EngineConfig()
    run: RunConfig = RunConfig()


@dataclass(frozen=True)
class Job:
    """A loaded config, ready to run."""

    path: Path
    config: Any  # Config, or GraphConfig for a graph of datasets
    pipeline: Pipeline | None
    source: FileSource | None
    outputs: tuple[Any, ...] = ()  # a graph's outputs (`pipeline.dataset.Output`); empty for a linear config

    @property
    def sink(self) -> Sink:
        sink = self.config.sink
        return sink_for(sink.path, sink.mode, sink.format, sink.partition_by, sink.storage_options)


def load(path: str | os.PathLike, overrides: list[str] = ()) -> Job:
    """Read, override (`section.key=value`), validate and build a config."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for override in overrides:
        _apply_override(raw, override, path)
    if any(key in raw for key in ("inputs", "datasets", "outputs")):
        from pipeline.graph_config import load_graph

        return load_graph(raw, path)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from None
    base = path.resolve().parent
    config = _resolve_paths(config, base)
    try:
        pipeline = Pipeline(_build_stage(i, s, base) for i, s in enumerate(config.stages))
        source = FileSource(
            config.source.path, config.source.format, config.source.columns, config.source.filters,
            config.source.chunk_rows, config.source.on_bad_file, config.source.storage_options,
        )
        source.files()
        sink_for(config.sink.path, config.sink.mode, config.sink.format, config.sink.partition_by,
                 config.sink.storage_options)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return Job(path, config, pipeline, source)


def resolve_path(path: str, base: Path) -> str:
    """A path in the config, relative to the config file's folder (a URL stays as it is)."""
    return path if "://" in path else os.path.normpath(base / path)


def resolve_run_paths(run: RunConfig, base: Path) -> None:
    """`[run] report` and `trace` are relative to the config file's folder."""
    for key in ("report", "trace"):
        if getattr(run, key) is not None:
            setattr(run, key, resolve_path(getattr(run, key), base))


def _resolve_paths(config: Config, base: Path) -> Config:
    config.source.path = resolve_path(config.source.path, base)
    config.sink.path = resolve_path(config.sink.path, base)
    resolve_run_paths(config.run, base)
    _resolve_security(config.engine, base)
    return config


def _resolve_security(engine: EngineConfig, base: Path) -> None:
    """TLS files named relative to the config file."""
    security = engine.security
    if security is not None:
        for field in ("ca_file", "cert_file", "key_file"):
            value = getattr(security, field)
            if value:
                setattr(security, field, resolve_path(value, base))


def _build_stage(index: int, spec: StageConfig, base: Path, where: str = "stages") -> Stage:
    """The stage `spec` (at `where[index]` in the config), its function imported and params checked."""
    module_name, _, attr = spec.uses.partition(":")
    key = f"{where}[{index}].uses"
    module = import_user_module(module_name, base, key)
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"{key}: module {module_name!r} has no function {attr!r}")
    stage = Stage(fn, spec.name, spec.params, spec.uses, spec.io_concurrency)
    try:
        stage.check_params()
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"{where}[{index}].params (stage '{spec.name}'): {exc}") from None
    return stage


def import_user_module(name: str, base: Path, key: str) -> Any:
    """Import `name`, looking first next to the config. A module found there is registered to travel by
    value with each task, so workers and clusters that cannot import it still run it."""
    top = name.split(".")[0]
    local = (base / f"{top}.py").exists() or (base / top / "__init__.py").exists()
    if local:
        sys.path.insert(0, str(base))
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(f"{key}: cannot import module {name!r}: {exc}") from None
    except Exception as exc:  # the user's module raised while importing
        raise ConfigError(f"{key}: importing {name!r} raised {type(exc).__name__}: {exc}") from None
    finally:
        if local:
            sys.path.remove(str(base))
    if local:
        cloudpickle.register_pickle_by_value(sys.modules[top])
    return module


def _apply_override(raw: dict, override: str, path: Path) -> None:
    """`engine.workers=4`, `stages.0.params.threshold=30`: the value is read as TOML, else as a string."""
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {override!r}: expected section.key=value")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"--set {key}: {'.'.join(parts[:i])} has no item {part!r}")
            part = int(part)
        elif not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {'.'.join(parts[:i])} is not a table")
        if last:
            node[part] = value
        else:
            if isinstance(node, dict):
                node = node.setdefault(part, {})
            else:
                node = node[part]


def _describe(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """The first problem, as `key: what was expected`."""
    error = exc.errors()[0]
    key = _key(error["loc"])
    if error["type"] == "extra_forbidden":
        parent = error["loc"][:-1]
        allowed = _allowed(parent, model or Config)
        return f"{key}: unknown key" + (f" (expected one of: {', '.join(allowed)})" if allowed else "")
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    if error["type"] == "string_pattern_mismatch":
        return f"{key}: expected 'module:function', got {error['input']!r}"
    message = error["msg"].removeprefix("Value error, ")
    return f"{key}: {message} (got {error['input']!r})"


def _key(loc: tuple) -> str:
    key = ""
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        elif part not in ("tuple", "list") and not str(part).startswith(("function-", "literal")):
            key += ("." if key else "") + str(part)
    return key or "(top level)"


def _allowed(loc: tuple, root: type[BaseModel]) -> list[str]:
    model: Any = root
    named = False  # the part after a table of named sections (`inputs.<name>`) is a name, not a key
    for part in loc:
        if isinstance(part, int) or named:
            named = False
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
        model = next((t for t in getattr(annotation, "__args__", (annotation,)) if isinstance(t, type)), None)
        if hasattr(annotation, "__args__") and getattr(annotation, "__origin__", None) is list:
            model = annotation.__args__[0]
        if getattr(annotation, "__origin__", None) is dict:
            model, named = annotation.__args__[1], True
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return list(model.model_fields)
