"""Compile a graph of datasets into one plan (`pipeline.plan.Plan`): the same tasks and engines as a
linear pipeline, plus exchanges, joins and reductions whose results other datasets read.

Each dataset compiles to `Parts`: what a consumer reads, one task per part, with the per-chunk stages still
pending, so they fuse into whatever consumes them (a write, a partial, an exchange's map, a join's probe).

    read(orders)                  → parts = the file chunks, no task yet
      .then(f)                    → the same parts, f pending
      .aggregate(...)             → partial per part + combine tree + finalize → one scratch part
                  many rows       → partial per part, cut by key range → a part per range (partitioned_aggregate)
      .sort(...)                  → sample per part → boundaries → map per part → N partitions, sort pending
    a.join(b)   small side known  → b's parts written to scratch; a's parts with "join b" pending
                otherwise         → both exchanged by hash of the keys into N; part p = join of partitions p
    .write(sink)                  → a write task per part (a single-file sink: parts gathered into one)

One commit task at the end commits every output once all of them are written.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa

from pipeline import adaptive_join as adaptive
from pipeline import partitioned_aggregate as ranged
from pipeline import shuffle, tasks
from pipeline.checkpoint import Checkpoint, fingerprints
from pipeline.dataset import Dataset, Output
from pipeline.errors import ConfigError
from pipeline.io import FileSink, MemorySink, Sink, storage
from pipeline.io.chunk import Chunk, Piece
from pipeline.io.scratch import ExchangeSource, ScratchSink, ScratchSource
from pipeline.io.source import Source
from pipeline.join import JoinSpec, check_join
from pipeline.exchange import read_maps
from pipeline.joining import (BROADCAST_ROWS, LOOKUP_BYTES, BroadcastJoin, JoinSource, KeysOnly, joined_rows,
                              maybe_small, small_side)
from pipeline.plan import DEFAULT_FAN_IN, Plan, Ref, Task, add_tree, discover
from pipeline.stage import Stage

MAX_PARTITIONS = 256  # an exchange's default partition count: the parts it reads from, at most this
# A join chosen while running makes one part per part of the side it may not broadcast; if that side has
# fewer parts than the other, a shuffle's partitions are bigger than the other side's chunks: at most this
# many times, or the join is a plain shuffle (into as many partitions as the side with most parts)
ADAPTIVE_SPREAD = 8


@dataclass(frozen=True)
class Parts:
    """A dataset as its consumers read it."""

    name: str
    source: Source
    chunks: tuple[Chunk, ...]
    after: tuple[str, ...] = ()  # tasks that must finish before any part is read
    stages: tuple[Stage, ...] = ()  # per-chunk stages not yet run: they fuse into the consumer
    rows: int | None = None  # at most this many rows, when known before running
    schema: pa.Schema | None = None  # the columns before `stages`, when known
    resumable: bool = False  # parts are input files: a task over them can be checkpointed


class GraphCompiler:
    """Adds tasks for datasets as outputs ask for them; each dataset is compiled once, however many read it."""

    def __init__(self, scratch: str, resume: bool = False, fan_in: int = DEFAULT_FAN_IN, staged: bool = True,
                 partition_limit: int | None = None) -> None:
        """`staged`: the scratch folder is this run's, and the folders checkpoints go to are made now; False
        when the plan is only shown. `partition_limit`: the bytes a reduce task may be given (see
        `shuffle.check_skew`), None for no check."""
        self.scratch, self.resume, self.fan_in, self.staged = scratch, resume, fan_in, staged
        self.partition_limit = partition_limit
        self.tasks: dict[str, Task] = {}
        self.notes: list[str] = []
        self.sources: list[Source] = []  # the inputs, discovered
        self._parts: dict[int, Parts] = {}
        self._prefixes: Counter[str] = Counter()

    def plan(self, outputs: Sequence[Output]) -> Plan:
        """Every output written, then one commit of all of them."""
        receipts: list[list[str]] = [self.write(self.parts(o.dataset), o.sink) for o in outputs]
        skipped = tuple(s for source in self.sources for s in getattr(source, "skipped", ()))
        in_driver = all(isinstance(o.sink, MemorySink) for o in outputs)
        refs = tuple(Ref(k) for keys in receipts for k in keys)
        args = (tuple(o.sink for o in outputs), tuple(len(k) for k in receipts), skipped, *refs)
        self.tasks["commit"] = Task("commit", tasks.commit_all, args, "commit", in_driver=in_driver)
        return Plan(self.tasks, "commit", notes=tuple(self.notes))

    def parts(self, dataset: Dataset) -> Parts:
        known = self._parts.get(id(dataset))
        if known is None:
            known = self._parts[id(dataset)] = self._compile(dataset)
        return known

    def _compile(self, dataset: Dataset) -> Parts:
        if dataset.source is not None:
            return self._read(dataset)
        if dataset.join_spec is not None:
            return self._join(dataset)
        upstream, stage = self.parts(dataset.parent), dataset.stage
        if stage.is_reduction:
            return self._reduce(upstream, stage, dataset.name)
        if stage.is_exchange:
            spec = stage.exchange()
            exchanged = self._exchange(upstream, spec, dataset.name)
            self.notes.append(f"{dataset.name}: {stage.name} after {spec.describe(len(exchanged.chunks))}")
            return replace(exchanged, stages=(stage,))
        return replace(upstream, name=dataset.name, stages=(*upstream.stages, stage))

    def _read(self, dataset: Dataset) -> Parts:
        source, chunks = discover((), dataset.source)
        self.sources.append(source)
        counts = [c.rows for c in chunks]
        rows = None if None in counts else sum(counts)
        self.notes.append(f"{dataset.name}: read {source.describe()}, {len(chunks)} chunk(s)"
                          + (f", {rows:,} rows" if rows is not None else ""))
        resumable = all(c.data is None for c in chunks) and hasattr(source, "path")
        return Parts(dataset.name, source, tuple(chunks), rows=rows, schema=_schema(source), resumable=resumable)

    def _prefix(self, name: str) -> str:
        """A task-key prefix unique in the plan (a dataset may be reduced or exchanged more than once)."""
        self._prefixes[name] += 1
        return f"{name}~{self._prefixes[name]}"

    def _each_part(self, parts: Parts, prefix: str, step: str, label: str, fn: Any, args: tuple) -> list[str]:
        """One task per part: `fn(source, chunk, stages, *args, checkpoint, *after)`; returns their keys.
        Over input files, each task checkpoints into the scratch folder, so `--resume` reuses it."""
        after = tuple(Ref(k) for k in parts.after)
        names = "+".join(s.name for s in parts.stages)
        label = f"{parts.name}: read{'+' + names if names else ''}+{label}"
        fingerprint = None
        if parts.resumable and self.staged:  # stages digested by their code and params, the rest by its repr
            if storage.is_local(self.scratch):  # object storage has no folders to make
                os.makedirs(os.path.join(self.scratch, prefix), exist_ok=True)
            stages = (*parts.stages, *(a for a in args if isinstance(a, Stage)))
            rest = [a for a in args if not isinstance(a, Stage)]
            fingerprint = fingerprints(stages, parts.source, f"{label}|{rest!r}")
        keys = []
        for chunk in parts.chunks:
            key = f"{prefix}/{step}-{chunk.index:05d}"
            checkpoint = Checkpoint(storage.join(self.scratch, prefix), f"{step}-{chunk.index:05d}",
                                    fingerprint(chunk)) if fingerprint else None
            if self.resume and checkpoint is not None and checkpoint.done():
                self.tasks[key] = Task(key, tasks.reuse, (checkpoint,), "reuse", chunk.index, chunk.label)
            else:
                task_args = (parts.source, chunk, parts.stages, *args, checkpoint, *after)
                self.tasks[key] = Task(key, fn, task_args, label, chunk.index, chunk.label)
            keys.append(key)
        return keys

    def _barrier(self, prefix: str, keys: list[str]) -> str:
        key = f"{prefix}/done"
        self.tasks[key] = Task(key, tasks.barrier, tuple(Ref(k) for k in keys), "barrier", in_driver=True)
        return key

    def _reduce(self, upstream: Parts, reducer: Stage, name: str) -> Parts:
        ranges = ranged.partitions_for(reducer, upstream.rows, len(upstream.chunks), MAX_PARTITIONS)
        if ranges > 1:
            return self._reduce_by_ranges(upstream, reducer, name, ranges)
        prefix = self._prefix(name)
        partials = self._each_part(upstream, prefix, "chunk", f"{reducer.name}:partial",
                                   tasks.partial_chunk, (reducer,))
        root = add_tree(self.tasks, reducer, partials, self.fan_in, f"{prefix}/")
        sink = ScratchSink(storage.join(self.scratch, prefix))
        key = f"{prefix}/finalize"
        self.tasks[key] = Task(key, tasks.finalize, (reducer, (), sink, Ref(root)), f"{name}: {reducer.name}:finalize")
        self.notes.append(f"{name}: {reducer.name} over {len(upstream.chunks)} part(s), combined {self.fan_in} at a time")
        source = ScratchSource(f"{name} ({reducer.name} result)")
        return Parts(name, source, tuple(ScratchSource.chunks(sink, [0])), after=(key,))

    def _reduce_by_ranges(self, upstream: Parts, reducer: Stage, name: str, n: int) -> Parts:
        """Each part's state cut into `n` key ranges; the result's part p is range p, combined and finalised."""
        prefix = self._prefix(name)
        folder = storage.join(self.scratch, prefix)
        states = self._each_part(upstream, prefix, "state", f"{reducer.name}:partial", ranged.partial_state,
                                 (reducer, folder))
        cuts = f"{prefix}/boundaries"
        self.tasks[cuts] = Task(cuts, ranged.boundaries, (reducer, n, *(Ref(k) for k in states)),
                                f"{name}: {reducer.name}:boundaries")
        splits = []
        for chunk, state in zip(upstream.chunks, states):
            key = f"{prefix}/split-{chunk.index:05d}"
            self.tasks[key] = Task(key, ranged.split_state, (reducer, n, folder, chunk.index, Ref(cuts), Ref(state)),
                                   f"{name}: {reducer.name}:split")
            splits.append(key)
        sink = ScratchSink(folder)
        ranges = []
        for index in range(n):
            key = f"{prefix}/finalize-{index:05d}"
            args = (reducer, sink, index, Ref(cuts), *(Ref(k) for k in splits))
            self.tasks[key] = Task(key, ranged.finalize_range, args, f"{name}: {reducer.name}:finalize")
            ranges.append(key)
        done = self._barrier(prefix, ranges)
        self.notes.append(f"{name}: {reducer.name} over {len(upstream.chunks)} part(s), combined in {n} key ranges")
        source = ScratchSource(f"{name} ({reducer.name} result)")
        return Parts(name, source, tuple(ScratchSource.chunks(sink, list(range(n)))), after=(done,))

    def _exchange(self, upstream: Parts, spec: shuffle.Exchange, name: str, n: int | None = None) -> Parts:
        """Map every part into `n` partitions by `spec`; the result's part p is partition p. A key the
        upstream's known columns lack is refused here, before anything runs."""
        return self._exchange_maps(upstream, spec, name, n=n)[0]

    def _exchange_maps(self, upstream: Parts, spec: shuffle.Exchange, name: str, map_fn: Any = shuffle.map_chunk,
                       n: int | None = None) -> tuple[Parts, list[str]]:
        """`_exchange`, and the keys of its map tasks (`map_fn`)."""
        columns = None if upstream.stages or upstream.schema is None else upstream.schema.names
        missing = [key for key in spec.keys if columns is not None and key not in columns]
        if missing:
            raise ConfigError(f"{name}: key {missing[0]!r} to {'sort' if spec.kind == 'range' else 'partition'} "
                              f"by is not a column of {upstream.name} (has: {', '.join(columns)})")
        n = spec.partitions or n or max(1, min(MAX_PARTITIONS, len(upstream.chunks)))
        prefix = self._prefix(name)
        folder = storage.join(self.scratch, prefix)
        boundaries = None
        if spec.kind == "range":
            samples = self._each_part(upstream, prefix, "sample", "sample", shuffle.sample_chunk, (spec,))
            key = f"{prefix}/boundaries"
            self.tasks[key] = Task(key, shuffle.pick_boundaries, (spec, n, *(Ref(k) for k in samples)),
                                   f"{name}: boundaries")
            boundaries = Ref(key)
        source = ExchangeSource(folder, len(upstream.chunks), f"exchange of {name} by {', '.join(spec.keys)}")
        maps = self._each_part(upstream, prefix, "map", "exchange", map_fn, (spec, n, source, boundaries))
        done = f"{prefix}/done"
        args = (source.name, spec.keys, self.partition_limit, *(Ref(k) for k in maps))
        self.tasks[done] = Task(done, shuffle.check_skew, args, f"{name}: partition sizes")
        return Parts(name, source, tuple(source.chunks(n)), after=(done,), rows=upstream.rows), maps

    def _join(self, dataset: Dataset) -> Parts:
        left, right = self.parts(dataset.parent), self.parts(dataset.right)
        spec: JoinSpec = dataset.join_spec
        check_join(spec, None if left.stages else left.schema, None if right.stages else right.schema,
                   left.name, right.name)
        side = small_side(spec, left.rows, right.rows, None if left.stages else left.schema,
                          None if right.stages else right.schema)
        if spec.how in ("semi", "anti"):  # decided with the right side's columns known; then only keys matter
            right = replace(right, stages=(*right.stages, Stage(KeysOnly(spec.right_on), f"keys of {right.name}")))
        if side is not None:
            return self._broadcast(dataset.name, left, right, spec, side)
        side = maybe_small(spec, left.rows, right.rows)
        small, big = (left, right) if side == "left" else (right, left)
        if side is not None and 0 < len(big.chunks) <= MAX_PARTITIONS and \
                len(big.chunks) * ADAPTIVE_SPREAD >= len(small.chunks):
            return self._adaptive_join(dataset.name, left, right, spec, side)
        n = max(1, min(MAX_PARTITIONS, max(len(left.chunks), len(right.chunks))))
        left_x = self._exchange(left, shuffle.Exchange("hash", spec.left_on, partitions=n), left.name)
        right_x = self._exchange(right, shuffle.Exchange("hash", spec.right_on, partitions=n), right.name)
        self.notes.append(f"{dataset.name}: {spec.how} join of {left.name} and {right.name} by shuffle, "
                          f"both exchanged by hash of the keys into {n} partitions")
        name = f"join {left.name} ⋈ {right.name}"
        source = JoinSource(left_x.source, right_x.source, spec, name)
        chunks = tuple(Chunk(p, (Piece(f"{name}, partition {p}"),)) for p in range(n))
        return Parts(dataset.name, source, chunks, after=(*left_x.after, *right_x.after),
                     rows=joined_rows(spec, left.rows, right.rows))

    def _adaptive_join(self, name: str, left: Parts, right: Parts, spec: JoinSpec, side: str) -> Parts:
        """`side` is exchanged first and, if it proves small, broadcast (`pipeline.adaptive_join`)."""
        small, big = (left, right) if side == "left" else (right, left)
        n = len(big.chunks)
        small_keys, big_keys = (spec.left_on, spec.right_on) if side == "left" else (spec.right_on, spec.left_on)
        small_x, maps = self._exchange_maps(small, shuffle.Exchange("hash", small_keys, partitions=n), small.name)
        prefix = self._prefix(f"{name}.strategy")
        choice = storage.join(self.scratch, prefix, "choice")
        chosen = f"{prefix}/choose"
        counts = (choice, BROADCAST_ROWS, LOOKUP_BYTES, *(Ref(k) for k in maps))
        self.tasks[chosen] = Task(chosen, adaptive.choose, counts, f"{name}: choose")
        big_x, _ = self._exchange_maps(replace(big, after=(*big.after, chosen)),
                                       shuffle.Exchange("hash", big_keys, partitions=n), big.name,
                                       adaptive.map_unless_broadcast)
        left_x, right_x = (small_x, big_x) if side == "left" else (big_x, small_x)
        joined = f"join {left.name} ⋈ {right.name}"
        paths = tuple(small_x.source.map_path(m) for m in range(len(small.chunks)))
        source = adaptive.AdaptiveJoinSource(
            JoinSource(left_x.source, right_x.source, spec, joined), big.source, big.chunks, big.stages,
            BroadcastJoin(paths, spec, side == "left", read_maps), choice)
        self.notes.append(f"{name}: {spec.how} join of {left.name} and {right.name}: {small.name} broadcast if it "
                          f"has at most {BROADCAST_ROWS:,} rows, else both exchanged by hash of the keys into {n} "
                          "partitions")
        chunks = tuple(Chunk(p, (Piece(f"{joined}, part {p}"),)) for p in range(n))
        return Parts(name, source, chunks, after=(*left_x.after, *right_x.after))

    def _broadcast(self, name: str, left: Parts, right: Parts, spec: JoinSpec, side: str) -> Parts:
        small, big = (left, right) if side == "left" else (right, left)
        prefix = self._prefix(f"{small.name}.broadcast")
        sink = ScratchSink(storage.join(self.scratch, prefix))
        done = self._barrier(prefix, self._each_part(small, prefix, "part", "write", tasks.write_chunk, (sink,)))
        paths = tuple(sink.part(chunk.index) for chunk in small.chunks)
        probe = Stage(BroadcastJoin(paths, spec, side == "left"), f"join {small.name}")
        bound = f" ({small.rows:,} rows at most)" if small.rows is not None else ""
        self.notes.append(f"{name}: {spec.how} join of {left.name} and {right.name}, {small.name} broadcast{bound}")
        return replace(big, name=name, stages=(*big.stages, probe), after=(*big.after, done),
                       rows=joined_rows(spec, left.rows, right.rows),
                       resumable=False)

    def write(self, parts: Parts, sink: Sink) -> list[str]:
        """Write tasks for an output; a single-file output gets its parts gathered into one first."""
        if isinstance(sink, FileSink) and len(parts.chunks) > 1:
            prefix = self._prefix(f"{parts.name}.gather")
            scratch = ScratchSink(storage.join(self.scratch, prefix))
            done = self._barrier(prefix, self._each_part(parts, prefix, "part", "write", tasks.write_chunk,
                                                          (scratch,)))
            pieces = tuple(Piece(scratch.part(c.index)) for c in parts.chunks)
            parts = Parts(parts.name, ScratchSource(f"{parts.name} parts"), (Chunk(0, pieces),), after=(done,))
        prefix = self._prefix(f"{parts.name}.write")
        return self._each_part(parts, prefix, "part", "write", tasks.write_chunk, (sink,))


def _schema(source: Source) -> pa.Schema | None:
    schema = getattr(source, "schema", None)
    columns = getattr(source, "columns", None)
    if schema is None or columns is None:
        return schema
    return pa.schema([schema.field(c) for c in columns if c in schema.names])

