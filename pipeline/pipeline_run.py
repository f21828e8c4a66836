"""Run a pipeline: discover chunks, stage the sink, compile, hand the plan to an engine, commit.

    discover()        ─▶ sink.for_run() ─▶ compile_plan() ─▶ engine.run(plan) ─▶ manifest
                                                                   │ failure
                                                                   ▼
                                                             sink.abort(): staging removed,
                                                             destination untouched
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from pipeline.engines import Engine, get_engine
from pipeline.errors import ConfigError
from pipeline.io import Manifest, Sink, Source
from pipeline.io.lock import output_lock
from pipeline import chrome_trace, tasks
from pipeline.plan import Plan, compile_plan, discover, split
from pipeline.timeline import recording

if TYPE_CHECKING:
    from pipeline.pipeline import Pipeline


def new_run_id() -> str:
    """Sortable and unique: UTC time plus a random suffix."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def execute(
    pipeline: "Pipeline",
    source: Source,
    sink: Sink,
    engine: str | Engine,
    workers: int | None = None,
    on_progress: Callable[[Plan], Callable] | None = None,
    resume: bool = False,
) -> Manifest:
    """Run and commit. With `resume`, the newest staging folder an interrupted run left for this output is
    taken over and its finished chunks reused (see `pipeline.checkpoint`). An engine given by name is
    started first, so its workers come up while the chunks are listed, and stopped at the end."""
    if isinstance(engine, str):
        with get_engine(engine, workers=workers) as owned:
            return execute(pipeline, source, sink, owned, workers, on_progress, resume)
    started = time.perf_counter()
    source, chunks = discover(pipeline.stages, source)
    _refuse_overlap(source, sink)
    single = split(pipeline.stages)[1] is not None
    with output_lock(sink.path, getattr(sink, "storage_options", None)) if _on_disk(sink) else contextlib.nullcontext():
        earlier = sink.unfinished_run() if resume else None
        staged = sink.for_run(earlier or new_run_id(), single, resume=earlier is not None)
        try:
            plan = compile_plan(pipeline.stages, source, chunks, staged, resume=earlier is not None)
            with recording() as timeline, chrome_trace.written_if_asked(timeline, staged.run_id):
                manifest = engine.run(plan, on_progress(plan) if on_progress else None)
        except KeyboardInterrupt:
            raise  # staging kept: `--resume` picks up what finished
        except BaseException:
            staged.abort()
            raise
    manifest.seconds, manifest.timeline = time.perf_counter() - started, timeline
    manifest.reused = sum(1 for task in plan if task.fn is tasks.reuse)
    return manifest


def _on_disk(sink: Sink) -> bool:
    return not sink.path.startswith("<")


def _refuse_overlap(source: Source, sink: Sink) -> None:
    """Writing into the input would read our own output (or, with overwrite, delete the input)."""
    root = getattr(source, "path", None)
    if root is None or not _on_disk(sink):
        return
    inputs = os.path.realpath(root.split("*")[0].rstrip("/") or "/")
    output = os.path.realpath(sink.path)
    if output == inputs or output.startswith(inputs + os.sep) or inputs.startswith(output + os.sep):
        raise ConfigError(f"sink.path: {sink.path} overlaps the input {root}; write the output elsewhere")
