"""Sinks: each worker writes its part into a staging folder; one commit makes them all visible at once.

    worker:  df ──write_part──▶ <parent>/.<name>.staging-<run>/part-00007.parquet   (temp file + rename)
             partitioned:           <parent>/.<name>.staging-<run>/year=2013/month=1/part-00007.parquet ...
    commit:  receipts ──▶ manifest in staging ──▶ rename staging onto the output ──▶ done

A retried task rewrites the same deterministic part name, so retries cannot duplicate output. Until the
commit nothing is visible at the destination; `overwrite` moves the old output aside only after the new
one is complete, and removes it after the rename. A failed run removes its staging folder.
Outputs on object storage (no rename there) use the protocol in `object_sink` instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline.batch import Batch, to_arrow
from pipeline.errors import ConfigError, SinkError
from pipeline.io.storage import is_local
from pipeline.io.manifest import SUCCESS, Manifest, Receipt, sidecar, write_json_atomically
from pipeline.io.partitioned import check_appended_layout, check_partition_by, split_partitions
from pipeline.stats import Stats

MODES = ("error", "overwrite", "append")
FORMATS = ("parquet", "csv")


class Sink(Protocol):
    """Staged writes, atomic commit. `for_run` is called on the driver before any task is made."""

    path: str

    def for_run(self, run_id: str, single: bool, resume: bool = False) -> "Sink": ...

    def unfinished_run(self) -> str | None: ...

    def write_part(self, batch: Batch, chunk: int | None, stats: Stats, source: str) -> Receipt: ...

    def commit(self, receipts: list[Receipt], skipped: list[list[str]] = ()) -> Manifest: ...

    def abort(self) -> None: ...


def check_mode_and_format(mode: str, format: str) -> None:
    """Refuse an unknown `[sink] mode` or `format` when the sink is made, on disk or on object storage."""
    if mode not in MODES:
        raise ConfigError(f"sink.mode: expected one of {', '.join(MODES)}, got {mode!r}")
    if format not in FORMATS:
        raise ConfigError(f"sink.format: expected one of {', '.join(FORMATS)}, got {format!r}")


@dataclass(frozen=True)
class _FileOutput:
    """What directory and single-file sinks share: mode checks, staging folder, part writing."""

    path: str
    mode: str = "error"
    format: str = "parquet"
    run_id: str = ""

    def __post_init__(self) -> None:
        check_mode_and_format(self.mode, self.format)
        object.__setattr__(self, "path", os.path.abspath(self.path))

    @property
    def staging(self) -> str:
        folder, name = os.path.split(self.path)
        return os.path.join(folder, f".{name}.staging-{self.run_id}")

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def unfinished_run(self) -> str | None:
        """The run id of the newest staging folder an interrupted run left for this output, if any."""
        folder, name = os.path.split(self.path)
        prefix = f".{name}.staging-"
        if not os.path.isdir(folder):
            return None
        runs = sorted(entry[len(prefix) :] for entry in os.listdir(folder) if entry.startswith(prefix))
        return runs[-1] if runs else None

    def _stage(self, run_id: str, resume: bool) -> "_FileOutput":
        sink = replace(self, run_id=run_id)
        sink._check_destination()
        os.makedirs(sink.staging, exist_ok=resume)
        return sink

    def _check_destination(self) -> None:
        if self.mode == "error" and _non_empty(self.path):
            raise SinkError(f"output {self.path} already exists (sink.mode = 'error'); use 'overwrite' or 'append'")

    def _write(self, batch: Batch, name: str, chunk: int | None, stats: Stats, source: str) -> Receipt:
        table = to_arrow(batch)
        return _receipt(table, [self._write_file(table, name)], chunk, stats, source)

    def _write_file(self, table: pa.Table, name: str) -> list[Any]:
        """Write one file into staging under a temp name, then rename: a file is whole or absent.
        Returns [name, rows, bytes]."""
        _make_folders(self.staging, os.path.dirname(name))
        target = os.path.join(self.staging, name)
        tmp = f"{target}.tmp-{os.getpid()}-{threading.get_ident()}"
        with open(tmp, "wb") as handle:  # fails if the staging folder is gone (an aborted run): never recreated
            if self.format == "parquet":
                pq.write_table(table, handle)
            else:
                pacsv.write_csv(table, handle)
        os.replace(tmp, target)
        return [name, table.num_rows, os.path.getsize(target)]


@dataclass(frozen=True)
class DirectorySink(_FileOutput):
    """A directory of `part-NNNNN.<format>` files, one per chunk, and a `_SUCCESS` manifest. With
    `partition_by`, hive folders `col=value/...` instead, each holding one file per chunk with that value."""

    partition_by: Sequence[str] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "partition_by", check_partition_by(self.partition_by))

    def for_run(self, run_id: str, single: bool = False, resume: bool = False) -> "DirectorySink":
        if os.path.isfile(self.path):
            raise SinkError(f"output {self.path} is a file; a per-chunk pipeline writes a directory")
        if self.mode == "append":
            check_appended_layout(self.path, self.partition_by)
        return self._stage(run_id, resume)

    def part_name(self, chunk: int | None) -> str:
        prefix = f"part-{self.run_id}-" if self.mode == "append" else "part-"
        return f"{prefix}{chunk or 0:05d}.{self.format}"

    def write_part(self, batch: Batch, chunk: int | None, stats: Stats, source: str) -> Receipt:
        if self.partition_by is None:
            return self._write(batch, self.part_name(chunk), chunk, stats, source)
        table, name = to_arrow(batch), self.part_name(chunk)
        parts = split_partitions(table, self.partition_by, chunk)
        files = [self._write_file(rows, f"{folder}/{name}") for folder, rows in parts]
        return _receipt(table, files, chunk, stats, source)

    def commit(self, receipts: list[Receipt], skipped: list[list[str]] = ()) -> Manifest:
        if self.mode == "append" and os.path.isdir(self.path):
            return self._append(receipts, skipped)
        manifest = self._manifest(receipts, skipped)
        _sweep(self.staging, {name for r in receipts for name, _, _ in r.entries()})
        write_json_atomically(os.path.join(self.staging, SUCCESS), manifest.to_json())
        self._check_destination()
        _swap_in(self.staging, self.path, self.run_id)
        return manifest

    def _append(self, receipts: list[Receipt], skipped: list[list[str]]) -> Manifest:
        """Move the new parts in (names unique to this run), then rewrite the manifest to list old and new."""
        previous = Manifest.read(self.path).files if os.path.exists(os.path.join(self.path, SUCCESS)) else []
        for name in (name for r in receipts for name, _, _ in r.entries()):
            target = os.path.join(self.path, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(os.path.join(self.staging, name), target)
        manifest = self._manifest(receipts, skipped)
        manifest.files = previous + manifest.files
        manifest.rows = sum(f["rows"] for f in manifest.files)
        write_json_atomically(os.path.join(self.path, SUCCESS), manifest.to_json())
        shutil.rmtree(self.staging, ignore_errors=True)
        return manifest

    def _manifest(self, receipts: list[Receipt], skipped: list[list[str]]) -> Manifest:
        return Manifest.from_receipts(self.path, self.run_id, self.mode, receipts, skipped, self.partition_by or ())


@dataclass(frozen=True)
class FileSink(_FileOutput):
    """One output file (the result of a reduction), with its manifest in `<name>._SUCCESS` beside it."""

    def for_run(self, run_id: str, single: bool = True, resume: bool = False) -> "FileSink":
        if not single:
            raise ConfigError(
                f"sink.path: {self.path} names one file, but this pipeline writes one part per chunk; "
                "give a directory, or end the pipeline in an aggregate"
            )
        if self.mode == "append":
            raise ConfigError("sink.mode: 'append' needs a directory output; a single file can only be replaced")
        if os.path.isdir(self.path):
            raise SinkError(f"output {self.path} is a directory; expected a file path")
        return self._stage(run_id, resume)

    def write_part(self, batch: Batch, chunk: int | None, stats: Stats, source: str) -> Receipt:
        return self._write(batch, os.path.basename(self.path), chunk, stats, source)

    def commit(self, receipts: list[Receipt], skipped: list[list[str]] = ()) -> Manifest:
        manifest = Manifest.from_receipts(self.path, self.run_id, self.mode, receipts, skipped)
        self._check_destination()
        os.replace(os.path.join(self.staging, os.path.basename(self.path)), self.path)
        write_json_atomically(sidecar(self.path), manifest.to_json())
        shutil.rmtree(self.staging, ignore_errors=True)
        return manifest


def sink_for(
    path: str, mode: str = "error", format: str | None = None, partition_by: Sequence[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Sink:
    """A `.parquet`/`.csv` path is one file; anything else is a directory of parts (hive folders with
    `partition_by`). A URL (`s3://bucket/prefix`) is committed on object storage with `storage_options`
    (see `object_sink`); a local path keeps the staging-folder protocol above."""
    suffix = os.path.splitext(path.rstrip("/"))[1].lower().lstrip(".")
    if not is_local(path):
        from pipeline.io.object_sink import object_sink_for

        return object_sink_for(path, mode, format, partition_by, storage_options, suffix)
    if storage_options:
        raise ConfigError(f"sink.storage_options: {path} is a local path; storage_options are for s3:// outputs")
    if suffix in FORMATS:
        if partition_by is not None:
            raise ConfigError(f"sink.partition_by: {path} names one file; partitioned output needs a directory path")
        return FileSink(path, mode, format or suffix)
    return DirectorySink(path, mode, format or "parquet", partition_by=partition_by)


def _receipt(table: pa.Table, files: list[list[Any]], chunk: int | None, stats: Stats, source: str) -> Receipt:
    schema = [[f.name, str(f.type)] for f in table.schema]
    first = files[0][0] if files else ""
    return Receipt(chunk, first, table.num_rows, sum(f[2] for f in files), schema, stats, source, files=files)


def _make_folders(root: str, relative: str) -> None:
    """Create `relative` below `root` level by level, never `root` itself: an aborted run's staging folder
    stays gone, so a late write fails instead of leaving a stray folder."""
    folder = root
    for part in filter(None, relative.split("/")):
        folder = os.path.join(folder, part)
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder)


def _sweep(staging: str, keep: set[str]) -> None:
    """Remove what no receipt names (temp files of attempts whose worker died mid-write, checkpoints), and the
    folders left empty, so the tree holds exactly the files the manifest lists."""
    for folder, _, names in os.walk(staging, topdown=False):
        for name in names:
            path = os.path.join(folder, name)
            if os.path.relpath(path, staging) not in keep:
                os.remove(path)
        if folder != staging and not os.listdir(folder):
            os.rmdir(folder)


def _non_empty(path: str) -> bool:
    return os.path.isfile(path) or (os.path.isdir(path) and bool(os.listdir(path)))


def _swap_in(staging: str, path: str, run_id: str) -> None:
    """Rename the finished staging folder onto `path`; an old output is moved aside first, removed after."""
    old = None
    if os.path.exists(path):
        if os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)
        else:
            folder, name = os.path.split(path)
            old = os.path.join(folder, f".{name}.old-{run_id}")
            os.replace(path, old)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    os.replace(staging, path)
    if old:
        shutil.rmtree(old, ignore_errors=True) if os.path.isdir(old) else os.remove(old)
