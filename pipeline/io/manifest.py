"""What a run wrote: a receipt per chunk's part (returned by the worker that wrote it; one file, or one per
partition value) and the manifest committed as `_SUCCESS` once every part is in place, listing every file."""

from __future__ import annotations

import json
import os
from html import escape
from dataclasses import dataclass, field, fields
from typing import Any

from pipeline.stats import Stats, merge

SUCCESS = "_SUCCESS"


@dataclass
class Receipt:
    """One chunk's part written to staging: small, so it is all that travels back from a worker."""

    chunk: int | None
    file: str  # name relative to the output (of the first file, when the part is partitioned)
    rows: int
    bytes: int
    schema: list[list[str]]
    stats: Stats = field(default_factory=dict)
    source: str = ""
    frame: Any = field(default=None, repr=False)  # the part itself, for in-memory sinks only
    skipped: list[list[str]] = field(default_factory=list)  # [file, why] of chunks left out
    files: list[list[Any]] | None = None  # [path relative to the output, rows, bytes] of each file written

    def entries(self) -> list[list[Any]]:
        """[path, rows, bytes] of each file this part wrote: a partitioned part writes one per value, possibly
        none; a receipt without `files` (in-memory sinks) stands for its one `file`."""
        return self.files if self.files is not None else [[self.file, self.rows, self.bytes]]


@dataclass
class Manifest:
    """The committed output: its files, row counts and schema."""

    path: str
    run_id: str
    files: list[dict[str, Any]]
    rows: int
    schema: list[list[str]]
    mode: str
    skipped: list[list[str]] = field(default_factory=list)  # [file, why]: bad input left out
    stats: Stats = field(default_factory=dict, repr=False)
    value: Any = field(default=None, repr=False)  # the result frame, for in-memory sinks
    seconds: float = 0.0
    reused: int = 0  # chunks taken from an interrupted run's staging (resume)
    partition_by: list[str] = field(default_factory=list)  # hive folders `col=value/`, outermost first
    timeline: Any = field(default=None, repr=False, compare=False)  # the run's `pipeline.timeline.Timeline`

    @classmethod
    def from_receipts(
        cls,
        path: str,
        run_id: str,
        mode: str,
        receipts: list[Receipt],
        skipped: list[list[str]] = (),
        partition_by: list[str] = (),
    ) -> "Manifest":
        ordered = sorted(receipts, key=lambda r: (r.chunk is None, r.chunk or 0))
        schema = next((r.schema for r in ordered if r.rows), ordered[0].schema if ordered else [])
        files = [{"file": name, "rows": rows, "bytes": size, "chunk": r.chunk, "source": r.source}
                 for r in ordered for name, rows, size in r.entries()]
        skipped = [*skipped, *(s for r in ordered for s in r.skipped)]
        stats = merge(r.stats for r in ordered)
        rows = sum(r.rows for r in ordered)
        return cls(path, run_id, files, rows, schema, mode, skipped, stats, partition_by=list(partition_by))

    def to_json(self) -> str:
        """What is committed as `_SUCCESS`: the files and their schema, not how this run went."""
        kept = [f.name for f in fields(self) if f.name not in ("stats", "value", "seconds", "reused", "timeline")]
        return json.dumps({name: getattr(self, name) for name in kept}, indent=2, default=str)

    def facts(self) -> dict[str, Any]:
        """What the run did, as plain data (`pipeline run --json`): the output, its files and schema, and
        per stage chunks, rows in and out and task seconds."""
        return {"path": self.path, "run_id": self.run_id, "mode": self.mode, "rows": self.rows,
                "seconds": round(self.seconds, 3), "reused": self.reused, "files": self.files,
                "schema": self.schema, "partition_by": self.partition_by, "skipped": self.skipped,
                "stages": [{"stage": name, "chunks": c.chunks, "rows_in": c.rows_in, "rows_out": c.rows_out,
                            "seconds": round(c.seconds, 3)} for name, c in self.stats.items()]}

    def _repr_html_(self) -> str:
        """The summary table, in a notebook."""
        cells = "".join(f"<tr><td>{escape(s['stage'])}</td><td>{s['chunks']:,}</td><td>{_rows(s['rows_in'])}</td>"
                        f"<td>{_rows(s['rows_out'])}</td><td>{s['seconds']:.2f}</td></tr>" for s in self.facts()["stages"])
        return (f"<table><caption>{self.rows:,} rows → {escape(self.path)} ({self.seconds:.2f} s, "
                f"{len(self.files)} file(s), run {escape(self.run_id)})</caption><thead><tr><th>stage</th>"
                f"<th>chunks</th><th>rows in</th><th>rows out</th><th>task time (s)</th></tr></thead>"
                f"<tbody>{cells}</tbody></table>")

    @classmethod
    def read(cls, path: str) -> "Manifest":
        """Load a committed manifest: `path` is an output directory or a single output file."""
        marker = os.path.join(path, SUCCESS) if os.path.isdir(path) else sidecar(path)
        with open(marker) as fh:
            return cls(**json.load(fh))


def _rows(count: int | None) -> str:
    return "lazy" if count is None else f"{count:,}"


def sidecar(file_path: str) -> str:
    """Where a single-file output keeps its manifest: `<name>._SUCCESS` beside it."""
    return f"{file_path}.{SUCCESS}"


def write_json_atomically(path: str, text: str, durable: bool = True) -> None:
    """Readers see the old text or the new, never a torn one. `durable` also survives power loss (fsync):
    worth it for a commit marker, not for the per-chunk checkpoints, which only need to survive a killed
    process (the page cache keeps them) and would otherwise pay a disk flush per chunk."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)
