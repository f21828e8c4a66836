"""A stage: one user function with its parameters, named, as a frozen record the plan can carry.

A stage is *per-chunk* (`fn(df, **params) -> df`, run on each chunk independently), a *reduction* (its
function carries a `reduction` factory, see `pipeline.reduction`), which the planner computes as per-chunk
partials combined in a tree, or an *exchange* stage (its function carries an `exchange` factory, see
`pipeline.shuffle`): rows are first partitioned by key, then the function runs on each whole partition.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - for the doctest

from pipeline.batch import FORMATS, convert, format_of
from pipeline.reduction import Reduction
from pipeline.waiting import in_slices


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
    io_concurrency: int | None = None  # overrides the function's declared one (`declare(io_concurrency=)`)

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

    @property
    def is_exchange(self) -> bool:
        """Whether the stage needs rows brought together by key first (see `pipeline.shuffle`)."""
        return callable(getattr(self.fn, "exchange", None))

    def exchange(self) -> Any:
        """The `Exchange` (how rows are partitioned) this stage needs, for its params."""
        return self.fn.exchange(**self.params)

    @property
    def batch(self) -> str:
        """The batch format the function takes and returns (see `declare`)."""
        return getattr(self.fn, "batch", "pandas")

    def reads(self) -> list[str] | None:
        """The input columns the stage reads, if declared (`declare(reads=...)`, or the reduction's `columns`)."""
        if self.is_reduction:
            return list(getattr(self.reduction(), "columns", None) or []) or None
        declared = getattr(self.fn, "reads", None)
        return list(declared(**self.params) if callable(declared) else declared) if declared is not None else None

    @property
    def concurrency(self) -> int:
        """How many slices of a chunk the stage runs on at once, on threads, because it waits on I/O (1: none)."""
        return self.io_concurrency or getattr(self.fn, "io_concurrency", None) or 1

    def apply(self, batch: Any) -> Any:
        """Run the stage on one batch (a chunk, or the whole table for a reduction), converting the batch
        to the stage's format first if needed; a stage that waits runs on slices of it concurrently."""
        data = convert(batch, self.batch)
        if self.concurrency > 1:
            slice_rows = getattr(self.fn, "io_slice_rows", None)
            out = in_slices(lambda part: self.fn(part, **self.params), data, self.concurrency, slice_rows)
        else:
            out = self.fn(data, **self.params)
        if format_of(out) != self.batch:
            raise TypeError(f"stage returned {format_of(out)}, but declares batch format {self.batch!r}")
        return out

    def check_params(self) -> None:
        """Raise TypeError/ValueError now if the params cannot be bound or are invalid, before any data is read."""
        try:
            signature = inspect.signature(self.fn)
        except (TypeError, ValueError):  # builtins without a signature: nothing to check
            return
        bound = signature.bind(None, **self.params)
        check = getattr(self.fn, "check", None)
        if callable(check):
            bound.apply_defaults()
            check(**dict(list(bound.arguments.items())[1:]))  # every param but the batch, defaults included
        if self.concurrency > 1 and (self.is_reduction or self.is_exchange or self.batch == "polars-lazy"):
            raise ValueError("io_concurrency is for per-chunk stages over rows; this stage is a "
                             + ("reduction" if self.is_reduction else "polars-lazy query" if self.batch == "polars-lazy"
                                else "shuffle"))
        if self.is_reduction:
            self.reduction()
        if self.is_exchange:
            self.exchange()


def unique_name(base: str, taken: set[str]) -> str:
    """`base`, or with the first numeric suffix not taken, so a repeated stage keeps a name of its own.

    >>> unique_name("clean", {"clean", "clean_2"})
    'clean_3'
    """
    return base if base not in taken else next(f"{base}_{i}" for i in range(2, 10_000) if f"{base}_{i}" not in taken)


def declare(batch: str = "pandas", reads: Sequence[str] | Callable[..., Sequence[str]] | None = None,
            io_concurrency: int | None = None, io_slice_rows: int | None = None,
            check: Callable[..., None] | None = None):
    """Declare how a stage function works: the batch format it takes and returns, and the input columns it
    reads (a list, or a function of the stage's params). Declared reads let the source read only those
    columns when the pipeline ends in a reduction.

    `io_concurrency=N` says the stage waits on I/O row by row (a web request per row, say): each chunk is cut
    into N slices (or slices of `io_slice_rows` rows) that the function runs on at once, on threads inside the
    worker, and the results are put back together in row order.

    `check` is called with the stage's params (all of them, defaults included) when the pipeline is validated,
    before any data is read, and raises ValueError for bad ones — so a config's mistake is named at once.

    >>> @declare(batch="arrow", reads=["fare"])
    ... def cheap(table): return table.filter(pa.compute.less(table["fare"], 10))
    >>> cheap.batch, cheap.reads
    ('arrow', ['fare'])
    """
    if batch not in FORMATS:
        raise ValueError(f"batch must be one of {', '.join(FORMATS)}, got {batch!r}")
    for name, value in (("io_concurrency", io_concurrency), ("io_slice_rows", io_slice_rows)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
    if io_slice_rows is not None and io_concurrency is None:
        raise ValueError("io_slice_rows sizes the slices of a stage that declares io_concurrency; give both")

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.batch = batch  # type: ignore[attr-defined]
        if reads is not None:
            fn.reads = reads if callable(reads) else list(reads)  # type: ignore[attr-defined]
        if io_concurrency is not None:
            fn.io_concurrency, fn.io_slice_rows = io_concurrency, io_slice_rows  # type: ignore[attr-defined]
        if check is not None:
            fn.check = check  # type: ignore[attr-defined]
        return fn

    return mark
