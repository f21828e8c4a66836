"""Shuffles: stages that need the rows of a key together, and the tasks that move rows by key.

An exchange is map/reduce with files at the boundary (the data side is `pipeline.exchange`):

    part 0 ─ read+stages+map ─▶ map-00000.arrow ─┐        ┌─▶ partition 0 ─ stage ─▶ ...
    part 1 ─ read+stages+map ─▶ map-00001.arrow ─┼────────┼─▶ partition 1 ─ stage ─▶ ...
    part 2 ─ read+stages+map ─▶ map-00002.arrow ─┘        └─▶ partition 2 ─ stage ─▶ ...

A map task writes its rows grouped by partition into one file in the run's scratch folder and returns a
small `MapOutput`; a reduce side reads its partition from every map file once all maps are done. A *hash*
exchange sends equal keys to one partition; a *range* exchange (for a global sort) first samples the keys
of every part, picks boundaries, and sends each key range to one partition, so partitions in order are the
table in order. Nothing travels through the driver but the samples and the map outputs' row counts.

An exchange stage is a function over a whole partition, marked with the exchange it needs:

    @exchange(lambda by, ascending=True: Exchange("range", by, ascending))
    def sort(df, by, ascending=True): ...      # the same result over one whole frame
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyarrow as pa

from pipeline import exchange as kernel
from pipeline import trace
from pipeline.batch import to_arrow
from pipeline.checkpoint import Checkpoint
from pipeline.engines.memory import format_size
from pipeline.errors import PipelineError, StageError
from pipeline.io.chunk import Chunk
from pipeline.io.scratch import ExchangeSource
from pipeline.io.source import Source
from pipeline.io.storage import is_local
from pipeline.stage import Stage
from pipeline.stats import StageCount
from pipeline import tasks

SAMPLE_PER_PART = 256  # keys each part contributes to a range exchange's boundaries
SKEW_FACTOR = 5  # a partition this many times the median size is skewed (when over the worker's share, too)


@dataclass(frozen=True)
class Exchange:
    """How rows are brought together: by a hash of `keys`, or by ranges of `keys` in sort order.
    `partitions` None lets the planner choose; `key_types` (set by the planner for a join) are the types
    both sides' keys are cast to before hashing, so equal values meet whatever each side's own type."""

    kind: str  # "hash" or "range"
    keys: tuple[str, ...]
    ascending: tuple[bool, ...] = ()
    partitions: int | None = None
    key_types: tuple[pa.DataType, ...] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        keys = (self.keys,) if isinstance(self.keys, str) else tuple(self.keys)
        if not keys or not all(isinstance(k, str) for k in keys):
            raise ValueError("'by' must be a column name or a non-empty list of them")
        if self.kind not in ("hash", "range"):
            raise ValueError(f"exchange kind must be 'hash' or 'range', got {self.kind!r}")
        ascending = self.ascending
        if isinstance(ascending, bool) or ascending == ():
            ascending = (True if ascending == () else ascending,) * len(keys)
        ascending = tuple(ascending)
        if len(ascending) != len(keys) or not all(isinstance(a, bool) for a in ascending):
            raise ValueError(f"'ascending' must be a bool or one bool per key ({len(keys)}), got {self.ascending!r}")
        if self.partitions is not None and (not isinstance(self.partitions, int) or self.partitions < 1):
            raise ValueError(f"'partitions' must be a positive integer, got {self.partitions!r}")
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "ascending", ascending)

    def describe(self, n: int) -> str:
        how = "ranges of" if self.kind == "range" else "hash of"
        return f"exchange by {how} {', '.join(self.keys)} into {n} partition{'s' if n != 1 else ''}"


F = TypeVar("F", bound=Callable[..., Any])


def exchange(factory: Callable[..., Exchange]) -> Callable[[F], F]:
    """Mark a stage function as one that runs on whole partitions made by `factory(**params)`."""

    def mark(fn: F) -> F:
        fn.exchange = factory  # type: ignore[attr-defined]
        return fn

    return mark


def map_chunk(
    source: Source, chunk: Chunk, stages: Sequence[Stage], spec: Exchange, n: int, output: ExchangeSource,
    boundaries: pa.Table | None, checkpoint: Checkpoint | None, *after: Any,
) -> kernel.MapOutput:
    """Read one part, run its pending stages, write its rows grouped by partition to the exchange's map
    file for this part (the same name on a retry, which rewrites it)."""
    path = output.map_path(chunk.index)
    batch, stats, _ = tasks.read_part(source, chunk, stages)
    started = time.perf_counter()
    table = to_arrow(batch)
    try:
        _require(table, spec.keys)
        if spec.kind == "range":
            ids = kernel.range_partitions(table, spec.keys, spec.ascending, boundaries)
        else:
            ids = kernel.hash_partitions(table, spec.keys, n, spec.key_types)
        if is_local(path):  # on object storage a key needs no folder
            os.makedirs(os.path.dirname(path), exist_ok=True)
        output = kernel.write_map_output(path, table, ids, n)
    except PipelineError:
        raise
    except Exception as exc:
        raise StageError.from_exception(exc, "exchange", chunk.index, chunk.label) from None
    stats["exchange"] = StageCount(table.num_rows, table.num_rows, time.perf_counter() - started, 1)
    trace.record("exchange", "exchange", stats["exchange"].seconds, table.num_rows, sum(output.bytes))
    if checkpoint is not None:
        checkpoint.save(output)
    return output


def sample_chunk(source: Source, chunk: Chunk, stages: Sequence[Stage], spec: Exchange,
                 checkpoint: Checkpoint | None, *after: Any) -> pa.Table:
    """A few evenly spaced keys of one part, for choosing a range exchange's boundaries."""
    batch, _, _ = tasks.read_part(source, chunk, stages)
    table = to_arrow(batch)
    try:
        _require(table, spec.keys)
        sample = kernel.sample_keys(table, spec.keys, SAMPLE_PER_PART)
    except Exception as exc:
        raise StageError.from_exception(exc, "exchange", chunk.index, chunk.label) from None
    if checkpoint is not None:
        checkpoint.save(sample)
    return sample


def pick_boundaries(spec: Exchange, n: int, *samples: pa.Table) -> pa.Table:
    """The n-1 key rows that cut the sampled keys into n ranges of about equal size."""
    present = [s for s in samples if s.num_rows] or list(samples[:1])
    table = pa.concat_tables(present, promote_options="permissive") if len(present) > 1 else present[0]
    return kernel.choose_boundaries(table, spec.keys, spec.ascending, n)


def check_skew(name: str, keys: Sequence[str], limit: int | None, *outputs: kernel.MapOutput) -> int:
    """After the maps, before any reduce task is handed a partition more than it may hold (`limit` bytes):
    stop, naming the key when one partition is far above the median (`SKEW_FACTOR`: a skewed key), else
    asking for more partitions. Returns how many maps there were."""
    n = len(outputs[0].rows) if outputs else 0
    if limit is None or n == 0:
        return len(outputs)
    _, sizes = kernel.partition_sizes(outputs, n)
    biggest = max(range(n), key=sizes.__getitem__)
    median = sorted(sizes)[n // 2]
    if sizes[biggest] <= limit:
        return len(outputs)
    held = (f"{name}: partition {biggest} holds {format_size(sizes[biggest])} (median {format_size(median)}), "
            f"more than one task may hold ({format_size(limit)}, a quarter of a worker's memory)")
    if n < 2 or sizes[biggest] <= SKEW_FACTOR * median:
        raise PipelineError(f"{held}; give the exchange more partitions (now {n}) or workers more memory "
                            "([engine] worker_memory)")
    key, rows = _heaviest_key([o.path for o in outputs], biggest, keys)
    raise PipelineError(f"{held}; the key {key} alone has {rows:,} rows. Spread that key (add a column to the "
                        "key) or give workers more memory ([engine] worker_memory)")


def _heaviest_key(paths: Sequence[str], partition: int, keys: Sequence[str]) -> tuple[str, int]:
    """The most frequent key of a partition, as `k=v, ...`, and its rows (only the key columns are read)."""
    table = kernel.read_partition(paths, partition).select(list(keys))
    counts = table.group_by(list(keys)).aggregate([([], "count_all")]).sort_by([("count_all", "descending")])
    top = counts.slice(0, 1).to_pylist()[0]
    rows = top.pop("count_all")
    return ", ".join(f"{k}={v!r}" for k, v in top.items()), rows


def _require(table: pa.Table, keys: Sequence[str]) -> None:
    missing = [k for k in keys if k not in table.column_names]
    if missing:
        raise KeyError(f"key column(s) {missing} not in the data (has {table.column_names})")
