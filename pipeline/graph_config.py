"""A config that is a graph of datasets: named inputs, named datasets built from them, named outputs.

    [inputs.flights]                    # the keys of [source]
    path = "data/flights"
    [inputs.planes]
    path = "data/planes.parquet"

    [datasets.with_planes]              # `from` one dataset, or `join` two; then stages, as [[stages]]
    join = { left = "flights", right = "planes", on = "tailnum", how = "left" }
    [[datasets.with_planes.stages]]
    name = "by_maker"
    uses = "stages.analyze:aggregate"
    params = { by = ["manufacturer"], aggs = { flights = ["flight", "size"] } }

    [outputs.by_maker]                  # the keys of [sink], and `from`
    from = "with_planes"
    path = "out/by_maker.parquet"

    [run]                               # optional: where joins and exchanges keep intermediate data
    scratch = "s3://bucket/tmp"         # default beside the first output; scratch_options for its keys

Inputs and datasets share one namespace. Every name, cycle and path is checked before anything runs, each
mistake one line naming the key.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, model_validator

from pipeline.config import (
    EngineConfig, Job, RunConfig, SinkConfig, SourceConfig, StageConfig, _build_stage, _describe, _resolve_security,
    _Section, resolve_path, resolve_run_paths,
)
from pipeline.dataset import Dataset, Output, read
from pipeline.errors import ConfigError
from pipeline.io import FileSource, sink_for
from pipeline.join import HOWS, JoinSpec


class JoinConfig(_Section):
    left: str
    right: str
    on: str | list[str] | None = None
    left_on: str | list[str] | None = None
    right_on: str | list[str] | None = None
    how: Literal[HOWS] = "inner"  # type: ignore[valid-type]
    suffixes: tuple[str, str] = ("", "_right")
    strategy: Literal["auto", "broadcast", "shuffle"] = "auto"


class DatasetConfig(_Section):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str | None = Field(default=None, alias="from")
    join: JoinConfig | None = None
    stages: list[StageConfig] = []

    @model_validator(mode="after")
    def _one_input(self) -> "DatasetConfig":
        if (self.from_ is None) == (self.join is None):
            raise ValueError("a dataset needs exactly one of 'from' (a dataset name) or 'join' (a table)")
        return self


class OutputConfig(SinkConfig):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str = Field(alias="from")


class GraphConfig(_Section):
    inputs: dict[str, SourceConfig] = Field(min_length=1)
    datasets: dict[str, DatasetConfig] = {}
    outputs: dict[str, OutputConfig] = Field(min_length=1)
    engine: EngineConfig = EngineConfig()
    run: RunConfig = RunConfig()


def load_graph(raw: dict[str, Any], path: Path) -> Job:
    """Validate and build a graph config (already read and overridden)."""
    mixed = [key for key in ("source", "stages", "sink") if key in raw]
    if mixed:
        raise ConfigError(f"{path}: [{mixed[0]}]: a config is either [source]/[[stages]]/[sink] or "
                          "[inputs]/[datasets]/[outputs], not both")
    try:
        config = GraphConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc, GraphConfig)}") from None
    base = path.resolve().parent
    try:
        outputs = _Builder(config, base).outputs()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    _resolve_security(config.engine, base)
    resolve_run_paths(config.run, base)
    return Job(path, config, None, None, tuple(outputs))


class _Builder:
    """Turns the named sections into datasets, each once, refusing unknown names and cycles."""

    def __init__(self, config: GraphConfig, base: Path) -> None:
        self.config, self.base = config, base
        self.built: dict[str, Dataset] = {}
        twice = sorted(set(config.inputs) & set(config.datasets))
        if twice:
            raise ConfigError(f"datasets.{twice[0]}: the name is also an input; inputs and datasets share names")

    def outputs(self) -> list[Output]:
        run = self.config.run
        scratch = None if run.scratch is None else resolve_path(run.scratch, self.base)
        outputs = []
        for name, spec in self.config.outputs.items():
            dataset = self.dataset(spec.from_, f"outputs.{name}.from", ())
            path = resolve_path(spec.path, self.base)
            sink = sink_for(path, spec.mode, spec.format, spec.partition_by, spec.storage_options)
            outputs.append(replace(dataset.write(sink), scratch=scratch, scratch_options=run.scratch_options))
        return outputs

    def dataset(self, name: str, key: str, visiting: tuple[str, ...]) -> Dataset:
        if name in visiting:
            cycle = " → ".join([*visiting[visiting.index(name):], name])
            raise ConfigError(f"datasets.{name}: a cycle: {cycle}")
        if name not in self.built:
            self.built[name] = self._build(name, key, (*visiting, name))
        return self.built[name]

    def _build(self, name: str, key: str, visiting: tuple[str, ...]) -> Dataset:
        if name in self.config.inputs:
            spec = self.config.inputs[name]
            source = FileSource(resolve_path(spec.path, self.base), spec.format, spec.columns, spec.filters,
                                spec.chunk_rows, spec.on_bad_file, spec.storage_options)
            try:
                source.files()
            except ConfigError as exc:
                raise ConfigError(str(exc).replace("source.", f"inputs.{name}.", 1)) from None
            return read(source, name=name)
        if name not in self.config.datasets:
            known = ", ".join([*self.config.inputs, *self.config.datasets])
            raise ConfigError(f"{key}: unknown dataset {name!r} (expected one of: {known})")
        spec = self.config.datasets[name]
        where = f"datasets.{name}"
        if spec.join is not None:
            j = spec.join
            left = self.dataset(j.left, f"{where}.join.left", visiting)
            right = self.dataset(j.right, f"{where}.join.right", visiting)
            try:
                JoinSpec.of(j.on, j.left_on, j.right_on, j.how, j.suffixes, j.strategy)
            except ValueError as exc:
                raise ConfigError(f"{where}.join: {exc}") from None
            dataset = left.join(right, j.on, j.how, j.left_on, j.right_on, j.suffixes, j.strategy, name=name)
        else:
            dataset = self.dataset(spec.from_, f"{where}.from", visiting)
            if not spec.stages:
                return dataset  # the same data under a second name: computed once
        for index, stage in enumerate(spec.stages):
            dataset = dataset.apply(_build_stage(index, stage, self.base, f"{where}.stages"))
        return dataset.named(name)

