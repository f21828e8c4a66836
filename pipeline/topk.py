"""The first k rows of a sort, as a tree reduction: the whole table is never gathered or sorted in one place.

Each chunk keeps its own best k rows, by a stable sort (so among equal keys its earlier rows come first); partials
are concatenated in chunk order and cut to k the same way. A row among the whole table's best k is among its
chunk's best k, and equal keys keep table order throughout, so the result is exactly
`df.sort_values(by, ascending=ascending, kind="stable", na_position="last").head(k)` over the whole table.

>>> top = TopK(2, "fare")
>>> df = pd.DataFrame({"trip": [1, 2, 3, 4], "fare": [5.0, 9.0, None, 9.0]})
>>> top.finalize(top.combine([top.partial(df[:1]), top.partial(df[1:])]))
   trip  fare
0     2   9.0
1     4   9.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd


@dataclass(frozen=True)
class TopK:
    """The `k` rows first in order of the `by` columns, descending unless `ascending` (one flag, or one per
    column); missing values last."""

    k: int
    by: str | Sequence[str]
    ascending: bool | Sequence[bool] = False

    columns: ClassVar[None] = None  # every column is read: the rows come out whole

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 0:
            raise ValueError(f"top: k must be a whole number of rows, 0 or more, got {self.k!r}")
        by = [self.by] if isinstance(self.by, str) else list(self.by)
        if not by or not all(isinstance(name, str) for name in by):
            raise ValueError(f"top: by must be a column name or a non-empty list of names, got {self.by!r}")
        ascending = [self.ascending] * len(by) if isinstance(self.ascending, bool) else list(self.ascending)
        if len(ascending) != len(by) or not all(isinstance(flag, bool) for flag in ascending):
            raise ValueError(f"top: ascending must be true/false, or one per column of by, got {self.ascending!r}")
        object.__setattr__(self, "by", tuple(by))
        object.__setattr__(self, "ascending", tuple(ascending))

    def partial(self, df: pd.DataFrame) -> pd.DataFrame:
        """The chunk's best k rows, in order."""
        missing = [name for name in self.by if name not in df.columns]
        if missing:
            raise KeyError(f"top: missing column(s) {missing}; available: {list(df.columns)}")
        return self._best(df)

    def combine(self, parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
        """The best k of consecutive partials, given in chunk order."""
        frames = [part for part in parts if len(part)] or [parts[0]]
        return self._best(pd.concat(frames, ignore_index=True))

    def finalize(self, part: pd.DataFrame) -> pd.DataFrame:
        return part.reset_index(drop=True)

    def apply(self, df: pd.DataFrame) -> pd.DataFrame:
        """The whole-frame result: one chunk, no tree."""
        return self.finalize(self.partial(df))

    def _best(self, df: pd.DataFrame) -> pd.DataFrame:
        ordered = df.sort_values(list(self.by), ascending=list(self.ascending), kind="stable", na_position="last")
        return ordered.head(self.k)
