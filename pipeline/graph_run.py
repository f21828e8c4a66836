"""Run a graph of datasets: stage every output, compile one plan, hand it to an engine, commit all.

    outputs ─▶ locks + staging per output ─▶ GraphCompiler.plan() ─▶ engine.run(plan) ─▶ manifests
                                                                         │ failure
                                                                         ▼
                                                  every staging folder and the scratch folder removed,
                                                  no output touched (an interrupt keeps them for --resume)

The scratch folder: `scratch` when given (a local folder or a URL), else beside the first local output, else
on object storage beside the first object output (workers that share no disk meet there), else a local
temporary folder. Its name holds the run id, so `--resume` finds it again, on disk or on object storage.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pipeline.dataset import Output
from pipeline.engines import Engine, get_engine
from pipeline.engines.memory import parse_size
from pipeline.errors import ConfigError
from pipeline.graph import GraphCompiler
from pipeline.io import Manifest
from pipeline.io.lock import output_lock
from pipeline.io.sink import Sink
from pipeline.io.storage import is_local, scheme_of
from pipeline.io.scratch import object_scratch_folder, remove, scratch_folder
from pipeline.plan import Plan
from pipeline.timeline import recording
from pipeline import chrome_trace, tasks
from pipeline.pipeline_run import _on_disk, _refuse_overlap, new_run_id

PARTITION_SHARE = 4


def execute(outputs: Sequence[Output], engine: str | Engine, workers: int | None = None, resume: bool = False,
            on_progress: Callable | None = None, scratch: str | None = None,
            scratch_options: Mapping[str, Any] | None = None) -> dict[str, Manifest]:
    """Run every output in one plan and commit each; returns the manifests by output path. `scratch`: where
    intermediate data goes (a folder or a URL; default: an output's `[run] scratch`, else chosen as above),
    `scratch_options` the storage_options for a URL there (default: those of an output in the same bucket)."""
    if not outputs:
        raise ConfigError("nothing to run: give at least one output (dataset.write(path))")
    _refuse_clashes(outputs)
    if isinstance(engine, str):
        with get_engine(engine, workers=workers) as owned:
            return execute(outputs, owned, workers, resume, on_progress, scratch, scratch_options)
    if scratch is None:
        given = next((o for o in outputs if o.scratch is not None), None)
        scratch, scratch_options = (given.scratch, given.scratch_options) if given else (None, scratch_options)
    started = time.perf_counter()
    on_disk = [o.sink for o in outputs if _on_disk(o.sink)]
    with contextlib.ExitStack() as stack:
        for sink in on_disk:
            stack.enter_context(output_lock(sink.path, getattr(sink, "storage_options", None)))
        earlier = on_disk[0].unfinished_run() if resume and on_disk else None
        run_id = earlier or new_run_id()
        scratch = _scratch_folder(on_disk, run_id, scratch, scratch_options)
        staged: list[Output] = []
        try:
            for output in outputs:
                staged.append(Output(output.dataset, output.sink.for_run(run_id, True, resume=earlier is not None)))
            compiler = GraphCompiler(scratch, resume=earlier is not None, partition_limit=_partition_limit(engine))
            plan = compiler.plan(staged)
            for source in compiler.sources:
                for output in outputs:
                    _refuse_overlap(source, output.sink)
            with recording() as timeline, chrome_trace.written_if_asked(timeline, run_id):
                manifests = engine.run(plan, on_progress(plan) if on_progress else None)
        except KeyboardInterrupt:
            if not on_disk:  # nothing to resume into: the outputs are in memory
                _remove_quietly(scratch)
            raise  # staging and scratch kept: `--resume` picks up what finished
        except BaseException:
            for output in staged:
                output.sink.abort()
            _remove_quietly(scratch)
            raise
    remove(scratch)
    seconds = time.perf_counter() - started
    reused = sum(1 for task in plan if task.fn is tasks.reuse)
    for manifest in manifests.values():
        manifest.seconds, manifest.reused, manifest.timeline = seconds, reused, timeline
    return manifests


def _scratch_folder(on_disk: Sequence[Sink], run_id: str, scratch: str | None,
                    options: Mapping[str, Any] | None) -> str:
    """This run's scratch folder (see the module docstring); a URL comes back as an `ObjectPath`."""
    name = os.path.basename(on_disk[0].path.rstrip("/")) if on_disk else "pipeline"
    if scratch is not None:
        if is_local(scratch):
            return scratch_folder(os.path.join(scratch, name), run_id)
        return object_scratch_folder(f"{scratch.rstrip('/')}/{name}", run_id, _options_for(scratch, on_disk, options))
    local = [sink for sink in on_disk if is_local(sink.path)]
    if local:
        return scratch_folder(local[0].path, run_id)
    if on_disk:
        sink = on_disk[0]
        return object_scratch_folder(sink.path, run_id, getattr(sink, "storage_options", None))
    return tempfile.mkdtemp(prefix="pipeline-scratch-")


def _options_for(url: str, sinks: Sequence[Sink], options: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The storage_options given for a scratch URL, else those of an output in the same bucket: it is
    usually the same store, reached the same way."""
    if options is not None:
        return options
    same = [s for s in sinks if not is_local(s.path) and _bucket(s.path) == _bucket(url)]
    return getattr(same[0], "storage_options", None) if same else None


def _bucket(url: str) -> tuple[str | None, str]:
    return scheme_of(url), url.split("://", 1)[-1].split("/", 1)[0]


def _remove_quietly(scratch: str) -> None:
    """Remove the scratch after a failure without hiding the failure behind a cleanup error."""
    with contextlib.suppress(OSError):
        remove(scratch)


def _partition_limit(engine: Engine) -> int | None:
    """What one reduce task may be given: a quarter of a worker's memory, since it holds its partition and
    what a join or sort makes of it. None when the engine's workers have no known limit."""
    limit = getattr(engine, "worker_memory", None)
    if isinstance(limit, str):
        limit = parse_size(limit)
    return limit // PARTITION_SHARE if isinstance(limit, int) else None


def _refuse_clashes(outputs: Sequence[Output]) -> None:
    paths = [o.sink.path for o in outputs if _on_disk(o.sink)]
    twice = sorted({p for p in paths if paths.count(p) > 1})
    if twice:
        raise ConfigError(f"outputs: {twice[0]} is written by more than one output")


def describe(outputs: Sequence[Output], scratch: str = "<scratch>") -> Plan:
    """The plan the outputs compile to, without running (nothing is staged or read beyond file footers)."""
    return GraphCompiler(scratch, staged=False).plan(list(outputs))
