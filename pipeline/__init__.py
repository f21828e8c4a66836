"""Chunked, parallel pandas pipelines that run unchanged on local cores or a cluster.

Stages are plain functions `fn(df, **params) -> df`; a pipeline of them compiles to a task graph that an
engine (sync, threads, processes, ...) runs over chunked Parquet or CSV, committing output atomically.
Several inputs, joins, sorts and shuffles make a graph of datasets: `read(...)`, `.join(...)`, `run(...)`.
"""

import importlib
from typing import Any

from pipeline.errors import ConfigError, InputError, PipelineError, SinkError, StageError
from pipeline.reduction import Reduction, reduction  # eager: the name is also a submodule's

# The rest is imported when first used, so `import pipeline` (and `pipeline --help`) costs no pandas.
_LAZY = {
    "GroupAggregate": "pipeline.aggregate", "Dataset": "pipeline.dataset", "Output": "pipeline.dataset",
    "from_frame": "pipeline.dataset", "read": "pipeline.dataset", "run": "pipeline.dataset",
    "get_engine": "pipeline.engines", "DirectorySink": "pipeline.io", "FileSink": "pipeline.io",
    "FileSource": "pipeline.io", "Manifest": "pipeline.io", "MemorySink": "pipeline.io", "MemorySource": "pipeline.io",
    "Pipeline": "pipeline.pipeline", "Stage": "pipeline.stage", "declare": "pipeline.stage",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ConfigError",
    "Dataset",
    "DirectorySink",
    "FileSink",
    "FileSource",
    "GroupAggregate",
    "InputError",
    "Manifest",
    "MemorySink",
    "MemorySource",
    "Output",
    "Pipeline",
    "PipelineError",
    "Reduction",
    "SinkError",
    "Stage",
    "StageError",
    "declare",
    "from_frame",
    "get_engine",
    "read",
    "reduction",
    "run",
]
