"""The tree-reduction protocol: how a stage is computed without gathering all rows in one place.

Each chunk yields a small *partial*; partials are combined in a tree, in chunk order, and the last one is
finalised into a DataFrame. A function becomes a reduction stage by carrying a factory:

    @reduction(MyReduction)          # MyReduction(**params) -> Reduction
    def my_stage(df, **params): ...  # the same result over one whole frame
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import pandas as pd

P = TypeVar("P")


class Reduction(Protocol[P]):
    """partial(chunk) -> P; combine([P, ...] in chunk order) -> P; finalize(P) -> DataFrame."""

    def partial(self, df: pd.DataFrame) -> P: ...

    def combine(self, parts: Sequence[P]) -> P: ...

    def finalize(self, part: P) -> pd.DataFrame: ...


F = TypeVar("F", bound=Callable[..., Any])


def reduction(factory: Callable[..., Reduction]) -> Callable[[F], F]:
    """Mark a stage function as a reduction built by `factory(**params)`."""

    def mark(fn: F) -> F:
        fn.reduction = factory  # type: ignore[attr-defined]
        return fn

    return mark
