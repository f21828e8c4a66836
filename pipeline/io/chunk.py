"""A chunk: one unit of parallel work, named by which bytes to read, so it costs nothing to send.

A chunk is one or more pieces read as one table. A piece is a file, or a run of its row groups: a big
Parquet file splits into several chunks, and small files share one (`FileSource` packs row groups in file
order up to `chunk_rows`), so every task has about the same, worthwhile amount of work.

>>> Chunk(0, (Piece("a.parquet", (0, 1), 200), Piece("b.parquet", (0,), 50))).label
'a.parquet (row groups 0-1), b.parquet (row group 0)'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LABELLED_PIECES = 3  # a message names at most this many pieces of a chunk, then the last and the count


@dataclass(frozen=True)
class Piece:
    """A file, or the subset of its row groups in `row_groups` (None: the whole file)."""

    path: str
    row_groups: tuple[int, ...] | None = None
    rows: int | None = None
    partition: Any = None  # pyarrow Expression for hive partition values

    @property
    def label(self) -> str:
        """Where the piece comes from, for messages."""
        if not self.row_groups:
            return self.path
        first, last = self.row_groups[0], self.row_groups[-1]
        return f"{self.path} (row groups {first}-{last})" if last != first else f"{self.path} (row group {first})"


@dataclass(frozen=True)
class Chunk:
    """Which pieces to read, in order, as one table. `data` is set only by in-memory sources."""

    index: int
    pieces: tuple[Piece, ...]
    data: Any = field(default=None, repr=False, compare=False)
    objects: bool = False  # `data` holds Python objects (maybe of the user's classes): needs cloudpickle

    @property
    def rows(self) -> int | None:
        """Rows in the chunk, when the source knows them before reading (Parquet, in-memory frames)."""
        counts = [piece.rows for piece in self.pieces]
        return None if None in counts else sum(counts)  # type: ignore[arg-type]

    @property
    def label(self) -> str:
        """Where the chunk comes from, for messages: its pieces, or the first few, the last and the count."""
        labels = [piece.label for piece in self.pieces]
        if len(labels) <= LABELLED_PIECES + 1:
            return ", ".join(labels)
        return f"{', '.join(labels[:LABELLED_PIECES])}, … {labels[-1]} ({len(labels)} files)"
