"""Engines: one narrow seam between a plan and whatever runs it.

An engine runs every task of a plan, respecting dependencies, and returns the value of `plan.output`,
calling `on_done(task)` as each task finishes (for progress). Engines are looked up by name and imported
only when asked for, so optional engines cost nothing unless used.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol

from pipeline.errors import ConfigError
from pipeline.plan import Plan, Task

OnDone = Callable[[Task], None]


class Engine(Protocol):
    """Runs plans. Use as a context manager so anything it started is stopped."""

    name: str

    def run(self, plan: Plan, on_done: OnDone | None = None) -> Any: ...

    def close(self) -> None: ...

    def __enter__(self) -> "Engine": ...

    def __exit__(self, *exc: object) -> None: ...


ENGINES: dict[str, str] = {
    "sync": "pipeline.engines.local:SyncEngine",
    "threads": "pipeline.engines.local:ThreadsEngine",
    "processes": "pipeline.engines.local:ProcessesEngine",
    "joblib": "pipeline.engines.joblib:JoblibEngine",
    "dask": "pipeline.engines.dask:DaskEngine",
    "ray": "pipeline.engines.ray:RayEngine",
}
DEFAULT_ENGINE = "processes"


def get_engine(name: str = DEFAULT_ENGINE, **options: Any) -> Engine:
    """Build the engine called `name` with its options (`workers`, ...)."""
    if name not in ENGINES:
        raise ConfigError(f"engine.name: unknown engine {name!r}; expected one of {', '.join(ENGINES)}")
    module, _, cls = ENGINES[name].partition(":")
    try:
        engine_class = getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise ConfigError(
            f"engine.name: the {name!r} engine needs {exc.name!r}, which is not installed "
            f"(pip install 'pipeline[{name}]')"
        ) from None
    return engine_class(**options)


def check_options(engine: str, options: Mapping[str, Any], allowed: Collection[str]) -> None:
    """A typo in an engine option fails when the engine is built, naming the option."""
    unknown = set(options) - set(allowed)
    if unknown:
        raise ConfigError(f"engine: unknown option(s) for the {engine} engine: {', '.join(sorted(unknown))}")


def default_workers(workers: int | None) -> int:
    """Workers asked for, else one per core."""
    return workers or os.cpu_count() or 1
