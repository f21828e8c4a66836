"""Compile a pipeline over N chunks into a plan: plain, picklable, engine-independent data.

A plan maps task keys to tasks (a function, and arguments among which `Ref(key)` stands for another
task's result). For a pipeline `clean → transform → aggregate → round` over 4 chunks, fan-in 2:

    chunk-00000 ─┐                                     read+clean+transform+partial, one task per chunk
    chunk-00001 ─┴─ combine-1-00000 ─┐
    chunk-00002 ─┐                   ├─ combine-2-00000 ── finalize ── commit
    chunk-00003 ─┴─ combine-1-00001 ─┘                     aggregate+round+write, then one atomic commit

Without a reduction, each chunk task writes its part and the commit depends on all of them.
Consecutive per-chunk stages always fuse into the chunk task: data never crosses a task boundary.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline import tasks
from pipeline.checkpoint import Checkpoint, fingerprints
from pipeline.io.sink import Sink
from pipeline.io.chunk import Chunk
from pipeline.io.source import Source
from pipeline.stage import Stage

DEFAULT_FAN_IN = 8
LAZY_CHUNK_ROWS = 1_000_000


@dataclass(frozen=True)
class Ref:
    """An argument that is the result of another task."""

    key: str


@dataclass(frozen=True, eq=False)
class Task:
    key: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    label: str  # what the task does, e.g. "read+clean+transform+write"
    chunk: int | None = None
    source: str = ""  # the chunk's input, for messages
    in_driver: bool = False  # a hint that engines may honour: run in the calling process (its data is there)

    @property
    def deps(self) -> list[str]:
        return [a.key for a in self.args if isinstance(a, Ref)]


@dataclass(frozen=True)
class Plan:
    """Tasks in a valid execution order (dependencies first); `output` is the key of the final task."""

    tasks: dict[str, Task]
    output: str
    stages: tuple[Stage, ...] = field(default=())
    notes: tuple[str, ...] = ()  # a graph's datasets, one line each, for `describe`

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks.values())

    def describe(self) -> str:
        """A readable summary: tasks per kind (each a fused chain), then the reduction tree."""
        lines = [*self.notes, f"{len(self.tasks)} tasks"]
        for label, count in Counter(t.label for t in self).items():
            lines.append(f"  {count:>6} × {label}")
        if "finalize" in self.tasks:
            chunks = sum(1 for key in self.tasks if key.startswith("chunk-"))
            levels = Counter(int(key.split("-")[1]) for key in self.tasks if key.startswith("combine-"))
            steps = [f"{chunks} partials", *(f"{levels[level]} combines" for level in sorted(levels)), "finalize"]
            lines.append("reduction tree: " + " → ".join(steps))
        return "\n".join(lines)


def split(stages: tuple[Stage, ...]) -> tuple[tuple[Stage, ...], Stage | None, tuple[Stage, ...]]:
    """(per-chunk stages before the first reduction, the reduction, stages after it)."""
    for i, stage in enumerate(stages):
        if stage.is_reduction:
            return stages[:i], stage, stages[i + 1 :]
    return stages, None, ()


def discover(stages: tuple[Stage, ...], source: Source) -> tuple[Source, list[Chunk]]:
    """The source's chunks, sized for the stages when the source leaves the size open: a chain that starts
    lazy reads bigger chunks (`LAZY_CHUNK_ROWS`). Polars streams such a chunk in morsels on its own threads,
    so memory does not grow with it, and each chunk fewer saves a query's fixed cost; a pandas chunk is held
    whole by one worker with its temporaries, where smaller runs faster."""
    before = split(stages)[0]
    if before and before[0].batch == "polars-lazy" and getattr(source, "chunk_rows", 0) is None:
        source = replace(source, chunk_rows=LAZY_CHUNK_ROWS)  # type: ignore[type-var]
    return source.discover()


def project(source: Source, stages: tuple[Stage, ...]) -> Source:
    """Read only the columns the stages declare they read, when that is knowable: the pipeline ends in a
    reduction (so no column passes through to the output) and every stage before it declares `reads`.
    Declared columns the source lacks are ones an earlier stage makes."""
    before, reducer, _ = split(stages)
    schema = getattr(source, "schema", None)
    if reducer is None or schema is None or source.columns is not None:
        return source
    declared = [stage.reads() for stage in (*before, reducer)]
    if any(columns is None for columns in declared):
        return source
    needed = {column for columns in declared for column in columns}
    return replace(source, columns=[name for name in schema.names if name in needed])


def add_tree(graph: dict[str, Task], reducer: Stage, layer: list[str], fan_in: int, prefix: str = "") -> str:
    """Add the combine tasks that merge the partials `layer` (in order), `fan_in` at a time; returns the
    key of the root (the one partial left)."""
    level = 1
    while len(layer) > 1:
        next_layer = []
        for j in range(0, len(layer), fan_in):
            key = f"{prefix}combine-{level}-{j // fan_in:05d}"
            refs = tuple(Ref(k) for k in layer[j : j + fan_in])
            graph[key] = Task(key, tasks.combine, (reducer, *refs), f"{reducer.name}:combine")
            next_layer.append(key)
        level, layer = level + 1, next_layer
    return layer[0]


def compile_plan(
    stages: tuple[Stage, ...],
    source: Source,
    chunks: list[Chunk],
    sink: Sink,
    fan_in: int = DEFAULT_FAN_IN,
    resume: bool = False,
) -> Plan:
    """Build the task graph; `source` and `sink` must already be prepared (discovered, staged). Chunk tasks
    checkpoint into the sink's staging folder; with `resume`, chunks already finished there are reused."""
    before, reducer, after = split(stages)
    source = project(source, stages)
    names = "+".join(s.name for s in before)
    chain = f"read+{names}" if names else "read"
    if reducer is None:
        label, run, last = f"{chain}+write", tasks.write_chunk, sink
    else:
        label, run, last = f"{chain}+{reducer.name}:partial", tasks.partial_chunk, reducer
    staging = getattr(sink, "staging", None)
    fingerprint = fingerprints((*before, *([reducer] if reducer else [])), source, label) if staging else None
    graph: dict[str, Task] = {}
    for chunk in chunks:
        key = f"chunk-{chunk.index:05d}"
        checkpoint = Checkpoint(staging, key, fingerprint(chunk)) if fingerprint and chunk.data is None else None
        if resume and checkpoint is not None and checkpoint.done():
            graph[key] = Task(key, tasks.reuse, (checkpoint,), "reuse", chunk.index, chunk.label)
        else:
            graph[key] = Task(key, run, (source, chunk, before, last, checkpoint), label, chunk.index, chunk.label)
    if reducer is not None:
        root = add_tree(graph, reducer, list(graph), fan_in)
        tail = "+".join([f"{reducer.name}:finalize", *(s.name for s in after), "write"])
        graph["finalize"] = Task("finalize", tasks.finalize, (reducer, after, sink, Ref(root)), tail)
    receipts = tuple(Ref(k) for k in graph if k.startswith("chunk-")) if reducer is None else (Ref("finalize"),)
    skipped = tuple(getattr(source, "skipped", ()))
    in_driver = getattr(sink, "in_driver", False)  # an in-memory result ends in the driver anyway
    graph["commit"] = Task("commit", tasks.commit, (sink, skipped, *receipts), "commit", in_driver=in_driver)
    return Plan(graph, "commit", stages)
