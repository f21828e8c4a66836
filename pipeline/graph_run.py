"""Run a graph of datasets: stage every output, compile one plan, hand it to an engine, commit all.

    outputs ─▶ locks + staging per output ─▶ GraphCompiler.plan() ─▶ engine.run(plan) ─▶ manifests
                                                                         │ failure
                                                                         ▼
                                                  every staging folder and the scratch folder removed,
                                                  no output touched (an interrupt keeps them for --resume)
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Sequence

from pipeline.dataset import Output
from pipeline.engines import Engine, get_engine
from pipeline.engines.memory import parse_size
from pipeline.errors import ConfigError
from pipeline.graph import GraphCompiler
from pipeline.io import Manifest
from pipeline.io.lock import output_lock
from pipeline.io.storage import is_local
from pipeline.io.scratch import remove, scratch_folder
from pipeline.plan import Plan
from pipeline import tasks
from pipeline.pipeline_run import _on_disk, _refuse_overlap, new_run_id

PARTITION_SHARE = 4


def execute(outputs: Sequence[Output], engine: str | Engine, workers: int | None = None, resume: bool = False,
            on_progress: Callable | None = None) -> dict[str, Manifest]:
    """Run every output in one plan and commit each; returns the manifests by output path."""
    if not outputs:
        raise ConfigError("nothing to run: give at least one output (dataset.write(path))")
    _refuse_clashes(outputs)
    if isinstance(engine, str):
        with get_engine(engine, workers=workers) as owned:
            return execute(outputs, owned, workers, resume, on_progress)
    started = time.perf_counter()
    on_disk = [o.sink for o in outputs if _on_disk(o.sink)]
    with contextlib.ExitStack() as stack:
        for sink in on_disk:
            stack.enter_context(output_lock(sink.path, getattr(sink, "storage_options", None)))
        earlier = on_disk[0].unfinished_run() if resume and on_disk else None
        run_id = earlier or new_run_id()
        local = [sink for sink in on_disk if is_local(sink.path)]  # beside a local output; else a temporary folder
        scratch = scratch_folder(local[0].path, run_id) if local else tempfile.mkdtemp(prefix="pipeline-scratch-")
        staged: list[Output] = []
        try:
            for output in outputs:
                staged.append(Output(output.dataset, output.sink.for_run(run_id, True, resume=earlier is not None)))
            compiler = GraphCompiler(scratch, resume=earlier is not None, partition_limit=_partition_limit(engine))
            plan = compiler.plan(staged)
            for source in compiler.sources:
                for output in outputs:
                    _refuse_overlap(source, output.sink)
            manifests = engine.run(plan, on_progress(plan) if on_progress else None)
        except KeyboardInterrupt:
            if not on_disk:  # nothing to resume into: in memory only
                remove(scratch)
            raise  # staging and scratch kept: `--resume` picks up what finished
        except BaseException:
            for output in staged:
                output.sink.abort()
            remove(scratch)
            raise
    remove(scratch)
    seconds = time.perf_counter() - started
    reused = sum(1 for task in plan if task.fn is tasks.reuse)
    for manifest in manifests.values():
        manifest.seconds, manifest.reused = seconds, reused
    return manifests


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
