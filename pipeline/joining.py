"""How a join runs: each task joins one piece of each side with `pipeline.join.join_tables`.

    broadcast:  small side ─ write parts to scratch ─┐ (read once per worker process, kept)
                big side part i ─ read+stages ───────┴─ join ─ stages ─▶ ...   one task per big-side part
    shuffle:    left  ─ exchange by hash of keys into N ─┐
                right ─ exchange by hash of keys into N ─┴─ partition p: join ─ stages ─▶ ...

A broadcast join is a per-chunk stage of the big side (it fuses with the stages around it); a shuffle join
is a source whose chunk p is the join of both sides' partition p. The small side of a broadcast must be
the side whose unmatched rows are never emitted per part: the right side for inner, left, semi and anti
joins, the left side for inner and right joins. A full join is always a shuffle.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from pipeline import trace
from pipeline.batch import to_arrow
from pipeline.errors import StageError
from pipeline.io.chunk import Chunk
from pipeline.io.scratch import read_ipc_files
from pipeline.io.source import Source
from pipeline.join import JoinSpec, join_tables
from pipeline.lookup_join import SmallSide, is_lookup_key, matched_rows

BROADCAST_ROWS = 250_000  # a side known to be at most this big is sent whole to every task of the other
LOOKUP_ROWS = 2_000_000  # ... or this big, with one integer key: each worker indexes it once, parts look up
LOOKUP_BYTES = 128 * 2**20  # ... and about this big in memory, held by every worker
_KEPT = 2  # broadcast sides each worker process keeps
_SIDES: OrderedDict[tuple[str, ...], SmallSide] = OrderedDict()
_SIDES_LOCK = threading.Lock()


def broadcastable(spec: JoinSpec) -> tuple[str, ...]:
    """The sides ("right", "left") that may be broadcast for this join's kind, best first."""
    return {"inner": ("right", "left"), "left": ("right",), "semi": ("right",), "anti": ("right",),
            "right": ("left",), "full": ()}[spec.how]


def small_side(spec: JoinSpec, left_rows: int | None, right_rows: int | None,
               left_schema: pa.Schema | None = None, right_schema: pa.Schema | None = None) -> str | None:
    """The side to broadcast: as the join asks, else the smaller side known to be small enough: up to
    BROADCAST_ROWS rows; or up to LOOKUP_ROWS and about LOOKUP_BYTES when its one key is an integer (the probe
    is then a lookup, `pipeline.lookup_join`), the other side's key too where known, and the other side is
    known to be at least twice as big. Schemas are given where known before running (no stages pending)."""
    allowed = broadcastable(spec)
    if spec.strategy == "shuffle" or not allowed:
        return None
    rows = {"left": left_rows, "right": right_rows}
    if spec.strategy == "broadcast":
        return min(allowed, key=lambda side: rows[side] if rows[side] is not None else float("inf"))
    known = [side for side in allowed if rows[side] is not None and rows[side] <= BROADCAST_ROWS]
    if not known and len(spec.left_on) == 1:
        schemas = {"left": left_schema, "right": right_schema}
        keys = {"left": spec.left_on[0], "right": spec.right_on[0]}
        other = {"left": "right", "right": "left"}

        def fits(side: str) -> bool:
            mine, theirs = schemas[side], schemas[other[side]]
            count, more = rows[side], rows[other[side]]
            return (mine is not None and keys[side] in mine.names and count is not None and more is not None
                    and count <= LOOKUP_ROWS and count * _row_bytes(mine) <= LOOKUP_BYTES and more >= 2 * count
                    and is_lookup_key(mine.field(keys[side]).type)
                    and (theirs is None or keys[other[side]] not in theirs.names
                         or is_lookup_key(theirs.field(keys[other[side]]).type)))

        known = [side for side in allowed if fits(side)]
    return min(known, key=lambda side: rows[side]) if known else None


def joined_rows(spec: JoinSpec, left_rows: int | None, right_rows: int | None) -> int | None:
    """At most how many rows the join makes, where known before running: a semi or anti join keeps some of the
    left side's rows; any other makes at most every pair (and outer joins each unmatched row), kept only when
    that is small enough to broadcast (supplier joined to nation), as the product of two big sides would
    mislead whatever reads it as a size (a keyed aggregate choosing to combine by key ranges)."""
    if spec.how in ("semi", "anti"):
        return left_rows
    if left_rows is None or right_rows is None:
        return None
    pairs = left_rows * right_rows + (0 if spec.how == "inner" else left_rows + right_rows)
    return pairs if pairs <= BROADCAST_ROWS else None


def maybe_small(spec: JoinSpec, left_rows: int | None, right_rows: int | None) -> str | None:
    """The side to count while running and broadcast if small (`pipeline.adaptive_join`), when `small_side`
    chose none before running: one that may be broadcast whose rows are not known before running (a join's or
    an aggregate's result, often far smaller than its inputs), the right side first, where the smaller side is
    conventionally written."""
    unknown = [side for side in broadcastable(spec) if {"left": left_rows, "right": right_rows}[side] is None]
    if spec.strategy != "auto" or not unknown:
        return None
    return "right" if "right" in unknown else unknown[0]


def _row_bytes(schema: pa.Schema) -> int:
    """A row's size in memory, estimated: fixed-width columns by their width, any other (text) as 32 bytes."""
    def width(kind: pa.DataType) -> int:
        try:
            return max(kind.bit_width // 8, 1)
        except ValueError:  # not of a fixed width
            return 32

    return sum(width(field.type) for field in schema)


@dataclass(frozen=True)
class BroadcastJoin:
    """A per-chunk stage: join the chunk with the whole small side, read from its part files (`read`:
    IPC files, or an exchange's map files)."""

    paths: tuple[str, ...]
    spec: JoinSpec
    small_is_left: bool
    read: Callable[[Sequence[str]], pa.Table] = read_ipc_files

    batch = "arrow"

    def __call__(self, table: pa.Table) -> pa.Table:
        small = _small(self.paths, self.read)
        rows = matched_rows(small, table, self.spec, self.small_is_left)
        if self.small_is_left:
            return join_tables(small.table, table, self.spec, rows)
        return join_tables(table, small.table, self.spec, rows)


@dataclass(frozen=True)
class KeysOnly:
    """A per-chunk stage of a semi or anti join's right side: only its keys decide which left rows are kept, so
    only they are exchanged or broadcast (TPC-H Q4: the late line items' order keys, not their dates). Not
    deduplicated: a distinct per chunk costs more than the rows it saves."""

    keys: tuple[str, ...]

    batch = "arrow"

    def __call__(self, table: pa.Table) -> pa.Table:
        missing = [key for key in self.keys if key not in table.column_names]
        if missing:
            raise KeyError(f"key column(s) {missing} not in the data (has {table.column_names})")
        return table.select(list(self.keys))


def _small(paths: tuple[str, ...], read: Callable[[Sequence[str]], pa.Table]) -> SmallSide:
    """The small side, read once per process: every part of the big side in this process joins with it."""
    with _SIDES_LOCK:
        table = _SIDES.get(paths)
        if table is not None:
            _SIDES.move_to_end(paths)
            return table
    table = SmallSide(read(paths))
    with _SIDES_LOCK:
        _SIDES[paths] = table
        while len(_SIDES) > _KEPT:
            _SIDES.popitem(last=False)
    return table


@dataclass(frozen=True)
class JoinSource:
    """Chunk p is the join of partition p of both sides (both exchanged by the keys into the same N)."""

    left: Source
    right: Source
    spec: JoinSpec
    name: str
    columns: Sequence[str] | None = None
    trace_kind = None  # records its own spans: reading both partitions, then the join

    def describe(self) -> str:
        return self.name

    def read(self, chunk: Chunk) -> pa.Table:
        started = time.perf_counter()
        left, right = to_arrow(self.left.read(chunk)), to_arrow(self.right.read(chunk))
        trace.record("exchange read", "read", time.perf_counter() - started)
        started = time.perf_counter()
        try:
            joined = join_tables(left, right, self.spec)
        except Exception as exc:
            raise StageError.from_exception(exc, self.name, chunk.index, chunk.label) from None
        trace.record("stage", self.name, time.perf_counter() - started)
        return joined
