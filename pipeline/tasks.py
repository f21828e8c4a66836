"""The functions tasks run inside workers. Each reads or receives only small values and returns only small
values: a receipt for a written part, or a partial aggregate.

Every user-visible failure leaves here as a `PipelineError` naming the stage, chunk and input file.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from pipeline.errors import PipelineError, StageError
from pipeline.io.manifest import Manifest, Receipt
from pipeline.io.sink import Sink
from pipeline.io.source import Chunk, Source
from pipeline.stage import Stage
from pipeline.stats import StageCount, Stats, merge


@dataclass
class Partial:
    """A reduction's partial result plus the counters of the chunks it covers."""

    value: Any
    stats: Stats = field(default_factory=dict)


def _apply(stages: Sequence[Stage], df: pd.DataFrame, chunk: int | None, source: str, stats: Stats) -> pd.DataFrame:
    for stage in stages:
        started = time.perf_counter()
        rows_in = len(df)
        try:
            df = stage.apply(df)
        except PipelineError:
            raise
        except Exception as exc:
            raise StageError.from_exception(exc, stage.name, chunk, source) from None
        stats[stage.name] = StageCount(rows_in, len(df), time.perf_counter() - started, 1)
    return df


def _read(source: Source, chunk: Chunk, stats: Stats) -> pd.DataFrame:
    started = time.perf_counter()
    df = source.read(chunk)
    stats["read"] = StageCount(len(df), len(df), time.perf_counter() - started, 1)
    return df


def write_chunk(source: Source, chunk: Chunk, stages: Sequence[Stage], sink: Sink) -> Receipt:
    """Read one chunk, run the fused per-chunk stages, write the part to staging."""
    stats: Stats = {}
    df = _apply(stages, _read(source, chunk, stats), chunk.index, chunk.label, stats)
    started = time.perf_counter()
    receipt = sink.write_part(df, chunk.index, stats, chunk.label)
    stats["write"] = StageCount(len(df), len(df), time.perf_counter() - started, 1)
    return receipt


def partial_chunk(source: Source, chunk: Chunk, stages: Sequence[Stage], reducer: Stage) -> Partial:
    """Read one chunk, run the fused per-chunk stages, reduce it to the reducer's partial."""
    stats: Stats = {}
    df = _apply(stages, _read(source, chunk, stats), chunk.index, chunk.label, stats)
    started = time.perf_counter()
    try:
        value = reducer.reduction().partial(df)
    except Exception as exc:
        raise StageError.from_exception(exc, reducer.name, chunk.index, chunk.label) from None
    stats[reducer.name] = StageCount(len(df), 0, time.perf_counter() - started, 1)
    return Partial(value, stats)


def combine(reducer: Stage, *parts: Partial) -> Partial:
    """Merge consecutive partials (in chunk order) into one."""
    try:
        value = reducer.reduction().combine([p.value for p in parts])
    except Exception as exc:
        raise StageError.from_exception(exc, reducer.name, None, "") from None
    return Partial(value, merge(p.stats for p in parts))


def finalize(reducer: Stage, after: Sequence[Stage], sink: Sink, part: Partial) -> Receipt:
    """Turn the root partial into the result, run the stages after the reduction on it, write it."""
    stats = merge([part.stats])
    started = time.perf_counter()
    try:
        df = reducer.reduction().finalize(part.value)
    except Exception as exc:
        raise StageError.from_exception(exc, reducer.name, None, "") from None
    stats[reducer.name].rows_out = len(df)
    stats[reducer.name].seconds += time.perf_counter() - started
    df = _apply(after, df, None, "", stats)
    started = time.perf_counter()
    receipt = sink.write_part(df, None, stats, "")
    stats["write"] = StageCount(len(df), len(df), time.perf_counter() - started, 1)
    return receipt


def commit(sink: Sink, *receipts: Receipt) -> Manifest:
    """Make every part visible at once and write the manifest."""
    return sink.commit(list(receipts))
