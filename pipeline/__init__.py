"""Chunked, parallel pandas pipelines that run unchanged on local cores or a cluster.

Stages are plain functions `fn(df, **params) -> df`; a pipeline of them compiles to a task graph that an
engine (sync, threads, processes, ...) runs over chunked Parquet or CSV, committing output atomically.
Several inputs, joins, sorts and shuffles make a graph of datasets: `read(...)`, `.join(...)`, `run(...)`.
"""

from pipeline.aggregate import GroupAggregate
from pipeline.dataset import Dataset, Output, from_frame, read, run
from pipeline.engines import get_engine
from pipeline.errors import ConfigError, InputError, PipelineError, SinkError, StageError
from pipeline.io import DirectorySink, FileSink, FileSource, Manifest, MemorySink, MemorySource
from pipeline.pipeline import Pipeline
from pipeline.reduction import Reduction, reduction
from pipeline.stage import Stage, declare

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
