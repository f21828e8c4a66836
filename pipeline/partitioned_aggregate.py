"""A keyed aggregate over much data, combined per range of keys instead of in one tree, so no task holds
every group: memory is bounded by a range's groups, however many groups there are in all.

    part i ─ read+stages+partial ─▶ state-i.pickle, and a sample of its keys ─┐
                                             boundaries: n-1 keys cutting the samples evenly ◀─┘
    state-i ─ cut by key range ─▶ split-i.pickle (n pieces, an offset table last: io/indexed.py)
    range p ◀─ piece p of every split, combined in part order, finalised ─▶ part-p.arrow ─▶ later stages

Ranges rather than hashes: the parts in order then hold the groups in pandas' sorted order, as the tree's
one result does. Pieces are combined in part order, so `first` and `last` stay exact, and every group's
distinct values and value counts (nunique, median, quantile) are all in its one range.

The tree (`plan.add_tree`) stays for inputs of up to `ROWS_PER_PARTITION` rows. Over more, the number of
groups is known only once the states are made: when they hold few (`FEW_GROUPS`), there are no cuts, the
states are not rewritten and the first range takes every group, so a small aggregate over many rows pays
only a task per range. `aggregate(..., partitions=N)` asks for N ranges, cut whatever the groups.
"""

from __future__ import annotations

import math
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline import aggregate_polars, tasks, trace
from pipeline import exchange as kernel
from pipeline.aggregate import AggState, GroupAggregate
from pipeline.checkpoint import Checkpoint
from pipeline.errors import PipelineError, StageError
from pipeline.io import indexed, storage
from pipeline.io.chunk import Chunk
from pipeline.io.manifest import Receipt
from pipeline.io.scratch import ScratchSink
from pipeline.io.source import Source
from pipeline.stage import Stage
from pipeline.stats import StageCount, Stats, merge

ROWS_PER_PARTITION = 2_000_000  # input rows per key range when the count is chosen: a bound on its groups
SAMPLE_PER_STATE = 256  # keys each part's state contributes to the boundaries
FEW_GROUPS = 500_000  # states holding at most this many groups in all are combined in one range


def partitions_for(reducer: Stage, rows: int | None, parts: int, most: int) -> int:
    """How many key ranges (at most `most`) to combine a reduction in: 1 (the tree) unless it is a keyed
    aggregate over more than one part, of more than `ROWS_PER_PARTITION` input rows known before running,
    or the aggregate asks for a number."""
    agg = reducer.reduction()
    if not isinstance(agg, GroupAggregate) or not agg.by or parts < 2:
        return 1
    if agg.partitions is not None:
        return min(agg.partitions, most)
    if rows is None:
        return 1
    return max(1, min(parts, most, math.ceil(rows / ROWS_PER_PARTITION)))


@dataclass(frozen=True)
class StateFile:
    """Where a part's state was written, a sample of its keys and its group count: small, so it travels to
    the planner; and the counters of the stages before it."""

    path: str
    sample: pa.Table
    groups: int
    stats: Stats


def partial_state(source: Source, chunk: Chunk, stages: Sequence[Stage], reducer: Stage, folder: str,
                  checkpoint: Checkpoint | None, *after: Any) -> StateFile:
    """Read one part, run its stages, reduce it to its state; write the state to the scratch folder."""
    partial = tasks.partial_chunk(source, chunk, stages, reducer)
    agg: GroupAggregate = reducer.reduction()
    started = time.perf_counter()
    try:
        state = _pandas_or_arrow(agg, partial.value)
        keys = _keys(agg, state.frame)
        sample = kernel.sample_keys(keys, agg.keys, SAMPLE_PER_STATE)
    except Exception as exc:
        raise StageError.from_exception(exc, reducer.name, chunk.index, chunk.label) from None
    path = storage.join(folder, f"state-{chunk.index:05d}.pickle")
    size = _write(path, [pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)])
    trace.record("exchange", "state", time.perf_counter() - started, keys.num_rows, size)
    result = StateFile(path, sample, keys.num_rows, partial.stats)
    if checkpoint is not None:
        checkpoint.save(result)
    return result


def boundaries(reducer: Stage, n: int, *states: StateFile) -> pa.Table:
    """The n-1 key rows that cut the sampled keys into n ranges of about equal size; none (every group in
    the first range) when the states hold few groups in all, which one task combines faster than n, unless
    the aggregate asked for its ranges."""
    agg: GroupAggregate = reducer.reduction()
    samples = [s.sample for s in states if s.sample.num_rows] or [states[0].sample]
    if agg.partitions is None and sum(s.groups for s in states) <= FEW_GROUPS:
        n = 1
    return kernel.choose_boundaries(samples, agg.keys, [True] * len(agg.keys), n)


def split_state(reducer: Stage, n: int, folder: str, index: int, cuts: pa.Table, state: StateFile) -> StateFile:
    """Cut one part's state into its n key ranges, written as one file of n pieces (no cuts: the state's
    own file is its one piece)."""
    if cuts.num_rows == 0:
        return state
    agg: GroupAggregate = reducer.reduction()
    started = time.perf_counter()
    whole: AggState = pickle.loads(_read_piece(state.path, 0))
    try:
        pieces = _cut(agg, whole, n, cuts)
    except Exception as exc:
        raise StageError.from_exception(exc, reducer.name, index, state.path) from None
    path = storage.join(folder, f"split-{index:05d}.pickle")
    size = _write(path, [pickle.dumps(piece, protocol=pickle.HIGHEST_PROTOCOL) for piece in pieces])
    trace.record("exchange", "split", time.perf_counter() - started, state.groups, size)
    return replace(state, path=path)


def finalize_range(reducer: Stage, sink: ScratchSink, index: int, cuts: pa.Table, *splits: StateFile) -> Receipt:
    """Range `index`: its piece of every part's state, combined in part order, finalised, written as the
    result's part `index`. The first range's receipt brings the counters of the stages before the aggregate."""
    agg: GroupAggregate = reducer.reduction()
    started = time.perf_counter()
    if cuts.num_rows == 0 and index > 0:  # everything is in the first range: this one is empty
        pieces = [_cut(agg, pickle.loads(_read_piece(splits[0].path, 0)), 2, cuts)[1]]
    else:
        pieces = [pickle.loads(_read_piece(split.path, index if cuts.num_rows else 0)) for split in splits]
    trace.record("exchange read", "read", time.perf_counter() - started)
    stats = merge(split.stats for split in splits) if index == 0 else {}
    stats.setdefault(reducer.name, StageCount(0, 0, 0.0, 0))
    try:
        combined = agg.combine(pieces)
    except Exception as exc:
        raise StageError.from_exception(exc, reducer.name, index, sink.part(index)) from None
    return tasks.finalize(reducer, (), sink, tasks.Partial(combined, stats), index)


def _pandas_or_arrow(agg: GroupAggregate, state: AggState) -> AggState:
    """A Polars-computed state as the pandas one (its frame is cut by rows like any other)."""
    if isinstance(state.frame, (pd.DataFrame, pa.Table)):
        return state
    return AggState(aggregate_polars.as_pandas(agg, [state.frame])[0], state.distinct, state.counts)


def _keys(agg: GroupAggregate, frame: pd.DataFrame | pa.Table) -> pa.Table:
    """A state frame's key columns as an Arrow table (a pandas state keeps them in its index)."""
    if isinstance(frame, pa.Table):
        return frame.select(list(agg.keys))
    return _arrow({k: frame.index.get_level_values(k) for k in agg.keys})


def _arrow(columns: dict[str, Any]) -> pa.Table:
    return pa.table({name: pa.array(values, from_pandas=True) for name, values in columns.items()})


def _cut(agg: GroupAggregate, state: AggState, n: int, cuts: pa.Table) -> list[AggState]:
    """The state's groups in each of the n key ranges `cuts` bounds (its distinct and count tables too)."""
    keys, up = list(agg.keys), [True] * len(agg.keys)

    def pieces(frame: Any, keys_of: pa.Table) -> list[Any]:
        ids = (kernel.range_partitions(keys_of, keys, up, cuts) if keys_of.num_rows and cuts.num_rows
               else np.zeros(keys_of.num_rows, dtype=np.int64))
        return _by_id(frame, ids, n)

    frames = pieces(state.frame, _keys(agg, state.frame))
    distinct = {c: pieces(t, _arrow({k: t[k] for k in keys})) for c, t in state.distinct.items()}
    counts = {c: pieces(t, _arrow({k: t[k] for k in keys})) for c, t in state.counts.items()}
    return [AggState(frames[p], {c: d[p] for c, d in distinct.items()}, {c: d[p] for c, d in counts.items()})
            for p in range(n)]


def _by_id(frame: pd.DataFrame | pa.Table, ids: np.ndarray, n: int) -> list[Any]:
    """`frame`'s rows with id 0, 1, ... n-1, each in their order: one stable sort (none when the ids already
    rise, as a state in key order has them) and a slice per id, not a pass over every row per id. An Arrow
    piece is taken, not sliced: a pickled slice would carry its whole table."""
    order = np.argsort(ids, kind="stable") if len(ids) > 1 and np.any(ids[1:] < ids[:-1]) else None
    ordered = ids if order is None else ids[order]
    rows = np.arange(len(ids)) if order is None else order
    bounds = np.searchsorted(ordered, np.arange(n + 1), side="left")
    if isinstance(frame, pa.Table):
        return [frame.take(rows[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    if order is not None:
        frame = frame.iloc[order]
    return [frame.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _write(path: str, blobs: Sequence[bytes]) -> int:
    """Blobs as one file of pieces, written whole."""
    return indexed.write_pieces(path, len(blobs), lambda sink, index: sink.write(blobs[index]))


def _read_piece(path: str, index: int) -> pa.Buffer:
    """Blob `index` of a file `_write` made: only the footer and that blob are read."""
    try:
        return indexed.read_piece(path, index)
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{path}: cannot read piece {index} of an aggregate's state ({exc})") from None
