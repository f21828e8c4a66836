"""The functions tasks run inside workers. Each reads or receives only small values and returns only small
values: a receipt for a written part, or a partial aggregate.

Every user-visible failure leaves here as a `PipelineError` naming the stage, chunk and input file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from pipeline import trace
from pipeline.batch import Batch, convert, format_of, nbytes, rows
from pipeline.checkpoint import Checkpoint
from pipeline.errors import PipelineError, StageError
from pipeline.io.manifest import Manifest, Receipt
from pipeline.io.sink import Sink
from pipeline.io.chunk import Chunk
from pipeline.io.source import SkippedChunk, Source
from pipeline.stage import Stage
from pipeline.stats import StageCount, Stats, merge

T = TypeVar("T")


@dataclass
class Partial:
    """A reduction's partial result plus the counters of the chunks it covers."""

    value: Any
    stats: Stats = field(default_factory=dict)
    skipped: list[list[str]] = field(default_factory=list)  # [file, why] of chunks left out


def _apply(stages: Sequence[Stage], batch: Batch, chunk: int | None, source: str, stats: Stats) -> Batch:
    """Run the fused stages in order; each converts the batch only if its format differs."""
    for stage in stages:
        started = time.perf_counter()
        rows_in = rows(batch)
        try:
            batch = stage.apply(batch)
        except PipelineError:
            raise
        except Exception as exc:
            raise StageError.from_exception(exc, stage.name, chunk, source) from None
        stats[stage.name] = StageCount(rows_in, rows(batch), time.perf_counter() - started, 1)
        trace.record("stage", stage.name, stats[stage.name].seconds, stats[stage.name].rows_out)
    return batch


def _read(source: Source, chunk: Chunk, stats: Stats, skipped: list[list[str]], lazy: bool) -> Batch:
    """The chunk as data, or — when the first stage takes lazy Polars frames and the source can — as a scan
    of it that the stages extend and a later consumer collects."""
    started = time.perf_counter()
    scan = getattr(source, "scan", None)
    batch = scan(chunk) if lazy and scan is not None else None
    if batch is not None:
        stats["read"] = StageCount(chunk.rows, chunk.rows, time.perf_counter() - started, 1)
        return batch
    try:
        batch = source.read(chunk)
    except SkippedChunk as exc:  # on_bad_file = "skip": no rows from this chunk, and say so
        skipped.append([exc.path, exc.reason])
        batch = source.empty()
    stats["read"] = StageCount(rows(batch), rows(batch), time.perf_counter() - started, 1)
    kind = getattr(source, "trace_kind", "read")  # None: the source records its own spans
    if kind:
        trace.record(kind, "read", stats["read"].seconds, stats["read"].rows_out, nbytes(batch))
    return batch


def _chunk(source: Source, chunk: Chunk, stages: Sequence[Stage]) -> tuple[Batch, Stats, list[list[str]]]:
    """Read a chunk and run the fused per-chunk stages: (batch, counters, [file, why] skipped)."""
    stats: Stats = {}
    skipped: list[list[str]] = []
    lazy = bool(stages) and stages[0].batch == "polars-lazy"
    batch = _apply(stages, _read(source, chunk, stats, skipped, lazy), chunk.index, chunk.label, stats)
    return batch, stats, skipped


def write_chunk(
    source: Source, chunk: Chunk, stages: Sequence[Stage], sink: Sink, checkpoint: Checkpoint | None = None,
    *after: Any,
) -> Receipt:
    """Read one chunk, run the fused per-chunk stages, write the part to staging. `after`: the results of
    tasks that had to finish first (a part made by an exchange or a reduction); a reduction's receipt brings
    the counters of the stages before it, so the output's summary covers the whole chain."""
    batch, stats, skipped = read_part(source, chunk, stages)
    earlier = [a for a in after if isinstance(a, Receipt)]
    if earlier:
        stats = {**merge(a.stats for a in earlier), **{k: v for k, v in stats.items() if k != "read"}}
    receipt = _write(sink, batch, chunk.index, chunk.label, stats)
    receipt.skipped = [*skipped, *(s for a in earlier for s in a.skipped)]
    if checkpoint is not None:
        checkpoint.save(receipt)
    return receipt


def read_part(source: Source, chunk: Chunk, stages: Sequence[Stage]) -> tuple[Batch, Stats, list[list[str]]]:
    """A part as data after its fused stages: (batch, counters, [file, why] skipped), a failing stage
    named with the one file it fails on."""
    return _naming_the_file(chunk, lambda c: _data(source, c, stages))


def _data(source: Source, chunk: Chunk, stages: Sequence[Stage]) -> tuple[Batch, Stats, list[list[str]]]:
    """`_chunk`, with a lazy chain run here, so a failure in it is reported as its stages' (not the sink's)."""
    batch, stats, skipped = _chunk(source, chunk, stages)
    if format_of(batch) != "polars-lazy":
        return batch, stats, skipped
    try:
        return batch.collect(), stats, skipped
    except Exception as exc:
        names = "+".join(stage.name for stage in stages if stage.batch == "polars-lazy")
        raise StageError.from_exception(exc, names, chunk.index, chunk.label) from None


def _naming_the_file(chunk: Chunk, work: Callable[[Chunk], T]) -> T:
    """`work(chunk)`; when a stage fails on a chunk of several files, each file's piece is run alone to find
    the one it fails on, so the message names that file (a cost paid only on this failure path). A stage
    that fails only on the pieces together keeps the whole chunk's message."""
    try:
        return work(chunk)
    except StageError:
        if len(chunk.pieces) < 2:
            raise
        for piece in chunk.pieces:
            try:
                work(replace(chunk, pieces=(piece,)))
            except StageError as narrower:
                raise narrower from None
        raise


def _write(sink: Sink, batch: Batch, chunk: int | None, source: str, stats: Stats) -> Receipt:
    started = time.perf_counter()
    stats["write"] = StageCount(0, 0, 0.0, 1)  # in `stats` before the write: the receipt carries it
    receipt = sink.write_part(batch, chunk, stats, source)
    stats["write"].rows_in = stats["write"].rows_out = receipt.rows  # a lazy batch has rows once written
    stats["write"].seconds = time.perf_counter() - started
    trace.record("write", "write", stats["write"].seconds, receipt.rows, sum(e[2] for e in receipt.entries()))
    return receipt


def partial_chunk(
    source: Source, chunk: Chunk, stages: Sequence[Stage], reducer: Stage, checkpoint: Checkpoint | None = None,
    *after: Any,
) -> Partial:
    """Read one chunk, run the fused per-chunk stages, reduce it to the reducer's partial."""
    partial = _naming_the_file(chunk, lambda c: _partial(source, c, stages, reducer))
    if checkpoint is not None:
        checkpoint.save(partial)
    return partial


def _partial(source: Source, chunk: Chunk, stages: Sequence[Stage], reducer: Stage) -> Partial:
    batch, stats, skipped = _chunk(source, chunk, stages)
    started = time.perf_counter()
    try:
        reduction = reducer.reduction()
        wanted = getattr(reduction, "batch", "pandas")
        value = reduction.partial(batch if wanted == "any" else convert(batch, wanted))
    except Exception as exc:  # a lazy chain runs here: its stages' errors surface here too
        raise StageError.from_exception(exc, reducer.name, chunk.index, chunk.label) from None
    stats[reducer.name] = StageCount(rows(batch), 0, time.perf_counter() - started, 1)
    trace.record("reduce", reducer.name, stats[reducer.name].seconds)
    return Partial(value, stats, skipped)


def reuse(checkpoint: Checkpoint) -> Any:
    """A chunk an interrupted run already finished: its receipt or partial, read back from staging."""
    return checkpoint.load()


def combine(reducer: Stage, *parts: Partial) -> Partial:
    """Merge consecutive partials (in chunk order) into one."""
    started = time.perf_counter()
    try:
        value = reducer.reduction().combine([p.value for p in parts])
    except Exception as exc:
        raise StageError.from_exception(exc, reducer.name, None, "") from None
    trace.record("reduce", reducer.name, time.perf_counter() - started)
    return Partial(value, merge(p.stats for p in parts), [s for p in parts for s in p.skipped])


def finalize(reducer: Stage, after: Sequence[Stage], sink: Sink, part: Partial, index: int | None = None) -> Receipt:
    """Turn the root partial into the result, run the stages after the reduction on it, write it (as part
    `index` of the result, when it has several)."""
    stats = merge([part.stats])
    started = time.perf_counter()
    try:
        df = reducer.reduction().finalize(part.value)
    except Exception as exc:
        raise StageError.from_exception(exc, reducer.name, None, "") from None
    stats[reducer.name].rows_out = len(df)
    stats[reducer.name].seconds += time.perf_counter() - started
    trace.record("reduce", reducer.name, time.perf_counter() - started)
    batch = _apply(after, df, index, "", stats)
    receipt = _write(sink, batch, index, "", stats)
    receipt.skipped = part.skipped
    return receipt


def commit(sink: Sink, skipped: Sequence[Sequence[str]], *receipts: Receipt) -> Manifest:
    """Make every part visible at once and write the manifest (listing input files left out)."""
    return sink.commit(list(receipts), [list(s) for s in skipped])


def barrier(*done: Any) -> int:
    """Wait for tasks (an exchange's maps, a broadcast side's parts) so their readers need one dependency,
    not one per task; returns how many there were."""
    return len(done)


def commit_all(sinks: Sequence[Sink], counts: Sequence[int], skipped: Sequence[Sequence[str]],
               *receipts: Receipt) -> dict[str, Manifest]:
    """Commit several outputs, each atomically, once every one of them is written: `counts[i]` of the
    receipts belong to `sinks[i]`, in order. Returns each output's manifest by path."""
    manifests, start = {}, 0
    for sink, count in zip(sinks, counts):
        manifests[sink.path] = commit(sink, skipped, *receipts[start : start + count])
        start += count
    return manifests
