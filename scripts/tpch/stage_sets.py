"""The per-chunk stages a TPC-H query runs, by batch format: a query names its stages through a `StageSet`, so
the same query runs with pandas stages (the built-in library's) or with Polars stages (`tpch.polars_stages`).
The joins, aggregates and sorts are the framework's either way."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Stage = Callable[..., Any]


@dataclass(frozen=True)
class StageSet:
    derive: Stage
    filter_rows: Stage
    select: Stage
    rename: Stage
    extract_datetime: Stage
    like: Stage
    substring: Stage
    on_every_row: Stage
    brazil_volume: Stage
    promo_volume: Stage


# where each set's functions live: the built-in stages, then the query helpers' own
_MODULES = {
    "pandas": {"derive": "stages.transform", "filter_rows": "stages.clean", "select": "stages.transform",
               "rename": "stages.clean", "extract_datetime": "stages.transform", "like": "tpch.functions",
               "substring": "tpch.functions", "on_every_row": "tpch.functions", "brazil_volume": "tpch.functions",
               "promo_volume": "tpch.functions"},
    "polars": dict.fromkeys(StageSet.__dataclass_fields__, "tpch.polars_stages"),
}
FORMATS = tuple(_MODULES)


def stage_set(batch: str = "pandas") -> StageSet:
    """The stages in `batch` format ("pandas" or "polars")."""
    if batch not in _MODULES:
        raise ValueError(f"no TPC-H stages in batch format {batch!r}; there are {', '.join(FORMATS)}")
    return StageSet(**{name: getattr(importlib.import_module(module), name)
                       for name, module in _MODULES[batch].items()})


PANDAS = stage_set("pandas")
