"""A join whose strategy is chosen while it runs, when neither side is known to be small before running (a
side that is itself a join's or an aggregate's result has no row count until it exists):

    small?  ─ exchange by hash into N ─ choose: count its rows ─┐
    big part i ─ map, unless the choice was broadcast ──────────┼─ part i: broadcast → read big part i +
                                                                 │           stages, probe the whole small side
                                                                 │         shuffle   → join of partitions i

The side that may be small is exchanged first, as for a shuffle join; `choose` then counts its rows. At
most `joining.BROADCAST_ROWS` (and `LOOKUP_BYTES`): each task of the join reads one part of the other side
itself, runs its pending stages and probes the small side (all of its map files, read once per worker
process), and the other side's map tasks write nothing. Otherwise both sides are exchanged and part i is the
join of partitions i, as a shuffle join. N is the big side's part count, so both ways make the same parts.
TPC-H Q7: line items joined to the suppliers of two nations are 146,000 rows, joined to 1.5 million orders by
broadcast where a shuffle would exchange both.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from pipeline import exchange as kernel
from pipeline import shuffle, tasks, trace
from pipeline.batch import to_arrow
from pipeline.checkpoint import Checkpoint
from pipeline.errors import StageError
from pipeline.io import indexed, storage
from pipeline.io.chunk import Chunk
from pipeline.io.scratch import ExchangeSource
from pipeline.io.source import Source
from pipeline.joining import BroadcastJoin, JoinSource
from pipeline.stage import Stage

_BROADCAST, _SHUFFLE = b"broadcast", b"shuffle"


def choose(path: str, rows_limit: int, bytes_limit: int, *maps: kernel.MapOutput) -> bool:
    """Whether the exchanged side is small enough to broadcast (at most `rows_limit` rows and about
    `bytes_limit` bytes), from its map outputs' counts; the choice is also written to `path`, where the join's
    tasks read it."""
    rows = sum(sum(m.rows) for m in maps)
    size = sum(sum(m.bytes) for m in maps)
    broadcast = rows <= rows_limit and size <= bytes_limit
    indexed.write_whole(path, lambda sink: sink.write(_BROADCAST if broadcast else _SHUFFLE))
    return broadcast


def map_unless_broadcast(
    source: Source, chunk: Chunk, stages: Sequence[Stage], spec: shuffle.Exchange, n: int, output: ExchangeSource,
    boundaries: pa.Table | None, checkpoint: Checkpoint | None, *after: Any,
) -> kernel.MapOutput:
    """The big side's map task: nothing to do when `choose` (the last task it waited for) chose broadcast,
    as the join's tasks then read this part themselves."""
    if after[-1] is True:
        return kernel.MapOutput("", [0] * n, [0] * n)
    return shuffle.map_chunk(source, chunk, stages, spec, n, output, boundaries, checkpoint, *after)


@dataclass(frozen=True)
class AdaptiveJoinSource:
    """Part i of the join, whichever way `choose` went (its file at `choice`)."""

    shuffled: JoinSource  # part i = the join of both sides' partition i
    big: Source  # ... or big part i, after its pending stages, probed against the small side
    big_chunks: tuple[Chunk, ...]
    big_stages: tuple[Stage, ...]
    probe: BroadcastJoin
    choice: str
    trace_kind = None  # records its own spans (read, the big side's stages, the join)

    def describe(self) -> str:
        return self.shuffled.name

    def read(self, chunk: Chunk) -> pa.Table:
        if not _broadcast(self.choice):
            return self.shuffled.read(chunk)
        batch, _, _ = tasks.read_part(self.big, self.big_chunks[chunk.index], self.big_stages)
        started = time.perf_counter()
        try:
            joined = self.probe(to_arrow(batch))
        except Exception as exc:
            raise StageError.from_exception(exc, self.shuffled.name, chunk.index, chunk.label) from None
        trace.record("stage", self.shuffled.name, time.perf_counter() - started)
        return joined


@functools.lru_cache(maxsize=64)
def _broadcast(path: str) -> bool:
    """The choice `choose` wrote, read once per process."""
    return storage.get(path) == _BROADCAST
