"""In-memory source and sink, for notebooks and users' unit tests: the same plan and engines, with frames
instead of files (so here, and only here, data does travel through the driver)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from pipeline.batch import Batch, convert
from pipeline.io.manifest import Manifest, Receipt
from pipeline.io.chunk import Chunk, Piece
from pipeline.stats import Stats


@dataclass(frozen=True)
class MemorySource:
    """A DataFrame cut into chunks of `chunk_rows` rows (or given as a list of frames)."""

    frames: Sequence[pd.DataFrame]
    columns: Sequence[str] | None = None
    objects: bool | None = None  # whether the frames hold Python objects; None: look at each frame

    @classmethod
    def split(cls, df: pd.DataFrame, chunk_rows: int | None = None, chunks: int | None = None) -> "MemorySource":
        if chunks:
            chunk_rows = max(1, -(-len(df) // chunks))
        chunk_rows = chunk_rows or max(1, len(df))
        frames = [df.iloc[start : start + chunk_rows] for start in range(0, max(len(df), 1), chunk_rows)]
        return cls(frames, objects=_has_objects(df))  # slices share the frame's columns: looked at once

    def describe(self) -> str:
        return f"{len(self.frames)} in-memory frame(s)"

    def discover(self) -> tuple["MemorySource", list[Chunk]]:
        chunks = [Chunk(i, (Piece(f"<frame {i}>", rows=len(f)),), data=f,
                        objects=_has_objects(f) if self.objects is None else self.objects)
                  for i, f in enumerate(self.frames)]
        return MemorySource((), self.columns), chunks  # each chunk carries its frame: tasks must not ship them all

    def read(self, chunk: Chunk) -> pd.DataFrame:
        frame = chunk.data
        return frame[list(self.columns)] if self.columns is not None else frame


def _has_objects(frame: Any) -> bool:
    """Object columns may hold instances of the user's classes, which only cloudpickle sends by value."""
    return isinstance(frame, pd.DataFrame) and any(dtype == object for dtype in frame.dtypes)


@dataclass(frozen=True)
class MemorySink:
    """Collects the parts and concatenates them in chunk order on commit, in the driver where the result is
    wanted (not on a worker that would send it all back)."""

    in_driver = True
    path: str = "<memory>"
    run_id: str = field(default="")

    def for_run(self, run_id: str, single: bool, resume: bool = False) -> "MemorySink":
        return MemorySink(self.path, run_id)

    def unfinished_run(self) -> str | None:
        return None

    def write_part(self, batch: Batch, chunk: int | None, stats: Stats, source: str) -> Receipt:
        df = convert(batch, "pandas")
        return Receipt(chunk, "", len(df), 0, [], stats, source, frame=df)

    def commit(self, receipts: list[Receipt], skipped: list[list[str]] = ()) -> Manifest:
        manifest = Manifest.from_receipts(self.path, self.run_id, "memory", receipts, skipped)
        ordered = sorted(receipts, key=lambda r: (r.chunk is None, r.chunk or 0))
        frames = [r.frame for r in ordered]
        manifest.value = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
        return manifest

    def abort(self) -> None:
        return None
