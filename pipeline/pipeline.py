"""A pipeline: an immutable sequence of stages, built in Python or from a config, run on any engine.

>>> import pandas as pd
>>> from stages.analyze import aggregate
>>> p = Pipeline().then(lambda df: df[df.v > 0], name="positive").then(
...     aggregate, by=["k"], aggs={"total": ["v", "sum"]})
>>> p.run_frame(pd.DataFrame({"k": list("abab"), "v": [1, -2, 3, 4]}), chunks=2)
   k  total
0  a      4
1  b      4
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pipeline.engines import DEFAULT_ENGINE, Engine
from pipeline.errors import ConfigError
from pipeline.io import FileSource, Manifest, MemorySink, MemorySource, Sink, Source, sink_for
from pipeline.plan import Plan, compile_plan, discover
from pipeline.stage import Stage, unique_name


@dataclass(frozen=True)
class Pipeline:
    stages: tuple[Stage, ...] = ()

    def __init__(self, stages: Iterable[Stage] = ()) -> None:
        object.__setattr__(self, "stages", tuple(stages))
        names = [s.name for s in self.stages]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"stage names must be unique; repeated: {', '.join(duplicates)}")

    def then(self, fn: Callable[..., Any], name: str | None = None, **params: Any) -> "Pipeline":
        """A new pipeline with one more stage; a repeated name gets a numeric suffix."""
        base = name or getattr(fn, "__name__", "stage")
        taken = {s.name for s in self.stages}
        return Pipeline((*self.stages, Stage(fn, unique_name(base, taken), params)))

    def validate(self) -> None:
        """Check every stage's params against its function before anything runs."""
        if not self.stages:
            raise ConfigError("a pipeline needs at least one stage")
        for stage in self.stages:
            try:
                stage.check_params()
            except (TypeError, ValueError, KeyError) as exc:
                raise ConfigError(f"stage '{stage.name}': bad params: {exc}") from None

    def plan(self, source: Source | str, sink: Sink | str = "<memory>", run_id: str = "plan") -> Plan:
        """The task graph this pipeline compiles to, without running it (and without staging output)."""
        source, chunks = discover(self.stages, _as_source(source))
        return compile_plan(self.stages, source, chunks, MemorySink() if sink == "<memory>" else _as_sink(sink))

    def run(
        self,
        source: Source | str,
        sink: Sink | str,
        engine: str | Engine = DEFAULT_ENGINE,
        workers: int | None = None,
        mode: str = "error",
        on_progress: Callable[[Plan], Callable] | None = None,
        resume: bool = False,
        report: str | None = None,
        trace: str | None = None,
    ) -> Manifest:
        """Run over `source` (a path or Source) into `sink` (a path or Sink); returns the committed manifest.
        `resume=True` reuses the chunks an interrupted run into the same output already finished; `report`
        and `trace` write its HTML report and Chrome trace there (also when it fails)."""
        from pipeline.pipeline_run import execute
        from pipeline.report import reported

        self.validate()
        with reported(report, trace, engine) as manifests:
            manifests.append(execute(self, _as_source(source), _as_sink(sink, mode), engine, workers, on_progress,
                                     resume))
        return manifests[0]

    def run_frame(
        self,
        df: pd.DataFrame,
        chunk_rows: int | None = None,
        chunks: int | None = None,
        engine: str | Engine = "sync",
        workers: int | None = None,
    ) -> pd.DataFrame:
        """Run on an in-memory frame cut into chunks and return the result (for notebooks and unit tests)."""
        manifest = self.run(MemorySource.split(df, chunk_rows, chunks), MemorySink(), engine, workers)
        return manifest.value


def _as_source(source: Source | str) -> Source:
    return FileSource(source) if isinstance(source, str) else source


def _as_sink(sink: Sink | str, mode: str = "error") -> Sink:
    return sink_for(sink, mode) if isinstance(sink, str) else sink
