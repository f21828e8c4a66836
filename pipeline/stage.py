"""A stage: one user function with its parameters, named, as a frozen record the plan can carry.

A stage is either *per-chunk* (`fn(df, **params) -> df`, run on each chunk independently) or a
*reduction* (its function carries a `reduction` factory, see `pipeline.reduction`), which the planner
computes as per-chunk partials combined in a tree.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from pipeline.reduction import Reduction


@dataclass(frozen=True, eq=False)
class Stage:
    """A named call of `fn` with fixed keyword `params`.

    >>> s = Stage(lambda df, n: df.head(n), name="head", params={"n": 1})
    >>> len(s.apply(pd.DataFrame({"a": [1, 2, 3]})))
    1
    """

    fn: Callable[..., Any]
    name: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    uses: str = ""  # "module:function" when the stage came from a config, for messages

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", getattr(self.fn, "__name__", "stage"))
        object.__setattr__(self, "params", dict(self.params))

    @property
    def is_reduction(self) -> bool:
        return callable(getattr(self.fn, "reduction", None))

    def reduction(self) -> Reduction:
        """Build the tree-reduction object for this stage's params."""
        return self.fn.reduction(**self.params)

    def apply(self, df: pd.DataFrame) -> pd.DataFrame:
        """Run the stage on one frame (a chunk, or the whole table for a reduction)."""
        out = self.fn(df, **self.params)
        if not isinstance(out, pd.DataFrame):
            raise TypeError(f"stage returned {type(out).__name__}, expected a pandas DataFrame")
        return out

    def check_params(self) -> None:
        """Raise TypeError/ValueError now if the params cannot be bound or are invalid, before any data is read."""
        try:
            signature = inspect.signature(self.fn)
        except (TypeError, ValueError):  # builtins without a signature: nothing to check
            return
        signature.bind(None, **self.params)
        if self.is_reduction:
            self.reduction()
