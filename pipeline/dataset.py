"""Datasets: a pipeline as a graph of named tables, built in Python or from a config, run on any engine.

    orders   = read("tpch/orders.parquet")
    lineitem = read("tpch/lineitem.parquet").then(keep_shipped, name="shipped")
    revenue  = (orders.join(lineitem, left_on="o_orderkey", right_on="l_orderkey")
                      .aggregate(by=["o_orderpriority"], aggs={"n": ["o_orderkey", "nunique"]}))
    run(revenue.write("out/revenue.parquet"), orders.top(10, by="o_totalprice").write("out/top.csv"))

A dataset is a read, a stage applied to one dataset, or a join of two. Stages are the same functions as in
a linear `Pipeline`: per-chunk, reductions (aggregate, top) and exchange stages (sort, repartition,
deduplicate, apply_groups). Nothing runs until an output is run; `pipeline.graph` turns the datasets into
one task graph, fusing per-chunk stages and adding exchanges where rows must meet by key.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pipeline.io import FileSource, Manifest, MemorySink, MemorySource, Sink, Source, sink_for
from pipeline.join import JoinSpec
from pipeline.stage import Stage, unique_name


@dataclass(frozen=True, eq=False)
class Dataset:
    """One node of the graph. Build with `read`, then `then`, `join`, `aggregate`, `sort`, ..."""

    name: str
    source: Source | None = None  # a read
    parent: "Dataset | None" = None  # a stage applied to `parent`, or the left side of a join
    stage: Stage | None = None
    right: "Dataset | None" = None  # a join: `parent` ⋈ `right`
    join_spec: JoinSpec | None = None

    def named(self, name: str) -> "Dataset":
        """The same dataset under another name (used in task keys, `plan` and messages)."""
        return Dataset(name, self.source, self.parent, self.stage, self.right, self.join_spec)

    def then(self, fn: Callable[..., Any], /, name: str | None = None, **params: Any) -> "Dataset":
        """Apply a stage: a per-chunk function, a reduction or an exchange stage, with `params`."""
        base = name or getattr(fn, "__name__", "stage")
        taken = {d.stage.name for d in self.chain() if d.stage is not None}
        return self.apply(Stage(fn, unique_name(base, taken), params))

    def apply(self, stage: Stage) -> "Dataset":
        stage.check_params()
        return Dataset(self.name, parent=self, stage=stage)

    def chain(self) -> Iterator["Dataset"]:
        """This dataset and the stages before it, back to its read or join."""
        node: Dataset | None = self
        while node is not None:
            yield node
            node = node.parent if node.stage is not None else None

    def join(
        self, other: "Dataset", on: str | Sequence[str] | None = None, how: str = "inner",
        left_on: str | Sequence[str] | None = None, right_on: str | Sequence[str] | None = None,
        suffixes: tuple[str, str] = ("", "_right"), strategy: str = "auto", name: str | None = None,
    ) -> "Dataset":
        """Join with `other` on equal keys (see `pipeline.join` for kinds, null keys and suffixes)."""
        spec = JoinSpec.of(on, left_on, right_on, how, tuple(suffixes), strategy)
        return Dataset(name or f"{self.name}⋈{other.name}", parent=self, right=other, join_spec=spec)

    def aggregate(self, by: str | Sequence[str] = (), aggs: Mapping[str, Sequence[Any]] | None = None,
                  name: str = "aggregate", partitions: int | None = None) -> "Dataset":
        """Group by `by` (none: one row over the whole table) and compute `aggs` exactly; `partitions`: key
        ranges to combine the groups in (default: one per 2 million input rows, when known)."""
        from stages.analyze import aggregate

        params: dict[str, Any] = {"by": [by] if isinstance(by, str) else list(by), "aggs": dict(aggs or {})}
        if partitions is not None:
            params["partitions"] = partitions
        return self.then(aggregate, name=name, **params)

    def top(self, k: int, by: str | Sequence[str], ascending: bool | Sequence[bool] = False) -> "Dataset":
        """The first `k` rows in `by` order (largest first by default), without sorting the whole table."""
        from stages.analyze import top

        return self.then(top, k=k, by=by, ascending=ascending)

    def sort(self, by: str | Sequence[str], ascending: bool | Sequence[bool] = True,
             partitions: int | None = None) -> "Dataset":
        """The whole table in `by` order (stable, nulls last), written as parts in that order."""
        from stages.shuffle import sort

        return self.then(sort, by=by, ascending=ascending, partitions=partitions)

    def repartition(self, by: str | Sequence[str], partitions: int | None = None) -> "Dataset":
        """Rows with equal `by` values brought into the same part."""
        from stages.shuffle import repartition

        return self.then(repartition, by=by, partitions=partitions)

    def deduplicate(self, by: str | Sequence[str], keep: str = "first", order_by: str | None = None) -> "Dataset":
        """One row per `by` key: the first (or last) in input order, or by `order_by`."""
        from stages.shuffle import deduplicate

        return self.then(deduplicate, by=by, keep=keep, order_by=order_by)

    def apply_groups(self, fn: Callable[..., Any], by: str | Sequence[str], **params: Any) -> "Dataset":
        """`fn(group_frame, **params) -> frame` called with all rows of each `by` key."""
        from stages.shuffle import apply_groups

        return self.then(apply_groups, name=getattr(fn, "__name__", "apply_groups"), fn=fn, by=by, params=params)

    def write(self, path: str | Sink, mode: str = "error", format: str | None = None,
              partition_by: Sequence[str] | None = None,
              storage_options: Mapping[str, Any] | None = None) -> "Output":
        """An output of this dataset; nothing runs until `run` (or `Output.run`). `path` may be a URL
        (`s3://bucket/prefix`), committed there with `storage_options` (endpoint_url, key, secret, ...)."""
        if isinstance(path, str):
            extra = {"partition_by": list(partition_by)} if partition_by else {}
            path = sink_for(path, mode, format, storage_options=storage_options, **extra)
        return Output(self, path)

    def collect(self, engine: str = "sync", workers: int | None = None) -> pd.DataFrame:
        """Run into memory and return the table (for notebooks and tests)."""
        return Output(self, MemorySink()).run(engine, workers).value


def read(path: str | Source, format: str | None = None, columns: Sequence[str] | None = None,
         filters: Any = None, chunk_rows: int | None = None, on_bad_file: str = "error",
         name: str | None = None, storage_options: Mapping[str, Any] | None = None) -> Dataset:
    """A dataset read from Parquet or CSV files (or any `Source`), in chunks, by the workers. `path` may be
    a URL (`s3://bucket/prefix`); `storage_options` (endpoint_url, key, secret, region, ...) then override
    what the environment says."""
    source = path if not isinstance(path, str) else FileSource(path, format, columns, filters, chunk_rows,
                                                               on_bad_file, storage_options)
    return Dataset(name or _stem(getattr(source, "path", "input")), source=source)


def from_frame(df: pd.DataFrame, chunks: int | None = None, chunk_rows: int | None = None,
               name: str = "frame") -> Dataset:
    """A dataset over an in-memory frame cut into chunks (notebooks, tests)."""
    return Dataset(name, source=MemorySource.split(df, chunk_rows, chunks))


@dataclass(frozen=True, eq=False)
class Output:
    """A dataset and where it is committed."""

    dataset: Dataset
    sink: Sink
    scratch: str | None = None  # `[run] scratch` of the config it came from: the run's intermediate data
    scratch_options: Mapping[str, Any] | None = None  # storage_options for a URL there

    def run(self, engine: str | Any = "processes", workers: int | None = None, resume: bool = False,
            scratch: str | None = None, scratch_options: Mapping[str, Any] | None = None,
            report: str | None = None, trace: str | None = None) -> Manifest:
        return run(self, engine=engine, workers=workers, resume=resume, scratch=scratch,
                   scratch_options=scratch_options, report=report, trace=trace)[self.sink.path]


def run(*outputs: Output, engine: str | Any = "processes", workers: int | None = None, resume: bool = False,
        on_progress: Callable | None = None, scratch: str | None = None,
        scratch_options: Mapping[str, Any] | None = None, report: str | None = None,
        trace: str | None = None) -> dict[str, Manifest]:
    """Run every output in one task graph; each is committed atomically once all are written.
    Returns each output's manifest by path. `scratch` is where joins, exchanges and reductions keep their
    intermediate data: a local folder, or a URL (`s3://bucket/tmp`) that every worker of a cluster without a
    shared disk can reach, with `scratch_options` (default: those of an output in that bucket). By default it
    sits beside the first output, on object storage when the outputs are. `report` and `trace` write the
    run's HTML report and Chrome trace there (also when it fails)."""
    from pipeline.graph_run import execute
    from pipeline.report import reported

    with reported(report, trace, engine) as manifests:
        found = execute(outputs, engine, workers, resume, on_progress, scratch, scratch_options)
        manifests += found.values()
    return found


def _stem(path: str) -> str:
    base = os.path.basename(path.rstrip("/")) or "input"
    return base.split(".")[0] or "input"
