"""Outputs on object storage (`s3://bucket/prefix`): the same promises as on disk, without a rename.

    worker:  df ──▶ s3://b/out/part-00007-<run>-<attempt>.parquet          (partitioned: year=2013/part-...)
    commit:  receipts ──▶ listed parts all there? ──▶ _SUCCESS (conditional PUT) ──▶ old parts deleted

Why parts go straight under the output prefix, under names unique to the run and the attempt: S3 has no
rename, so staging elsewhere (`_runs/<run>/`) would mean copying every byte again at commit; hive folders
also stay where hive-aware readers look. The manifest is what makes them an output: `FileSource` reads a
prefix that has `_SUCCESS` by its list only, so a part of a failed, running or retried attempt is never read.
(A reader that merely lists the prefix may see such parts: such readers must wait for `_SUCCESS`.)

- A retried task writes a new name; only the receipt the commit got is listed, and the run's other parts are
  deleted before the manifest is written.
- `_SUCCESS` is written last, once, by a conditional PUT (`If-None-Match: *` when absent, `If-Match: <etag read
  at commit>` when replacing), so two runs can never both commit over the same manifest (see `s3_client`).
- `error` refuses a prefix holding a manifest or any data; `overwrite` deletes everything the new manifest does
  not list only after it is written; `append` re-reads the manifest at commit and writes old + new parts
  conditionally on its etag, so a concurrent append fails instead of losing parts.
- A failed run deletes its own parts (`abort`); a killed run's parts are unlisted orphans, which the next run
  of the output lists (logged) and deletes before it starts (it holds the lock, so no writer is alive), and
  so for the multipart uploads a writer killed mid-write left unfinished (invisible, but billed).
- `--resume`: each run keeps its checkpoints (one object per finished chunk, see `pipeline.checkpoint`) under
  `.<name>.checkpoints-<run>/` beside the output, made when the run starts and removed at its commit or
  failure; an interrupted run's stay. `--resume` takes over the newest such run: its parts are not orphans,
  its finished chunks are reused (their parts are still there: the commit checks), and the attempts it had
  in flight are deleted at commit as any retried attempt. A run without `--resume` deletes them all.
A single file (`s3://b/out.parquet`) is staged as `.out.parquet.staging-<run>-<attempt>` beside it and PUT once
at commit to its final key (conditionally, as the manifest), then its `out.parquet._SUCCESS` marker is written:
the marker vouches for the object; an object without a marker (a commit killed in between) is not committed.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.batch import Batch, to_arrow
from pipeline.errors import ConfigError, SinkError
from pipeline.io import s3_client, storage
from pipeline.io.manifest import SUCCESS, Manifest, Receipt, sidecar
from pipeline.io.partitioned import check_partition_by, refuse_other_layout, split_partitions
from pipeline.io.sink import FORMATS, check_mode_and_format
from pipeline.stats import Stats

log = logging.getLogger("pipeline")
_PART = re.compile(r"(^|/)part-\d{5}-(?P<run>.+)-(?P<attempt>[0-9a-f]{8})\.(parquet|csv)$")


@dataclass(frozen=True)
class _ObjectOutput:
    """What the directory and single-file object sinks share: URL, options, conditional manifest I/O."""

    path: str
    mode: str = "error"
    format: str = "parquet"
    run_id: str = ""
    storage_options: Mapping[str, Any] | None = field(default=None, repr=False)  # may hold secrets

    def __post_init__(self) -> None:
        check_mode_and_format(self.mode, self.format)
        if storage.scheme_of(self.path) not in storage.S3_SCHEMES:
            raise ConfigError(f"sink.path: {self.path}: outputs may be local or on s3:// (other schemes: not yet)")
        object.__setattr__(self, "path", self.path.rstrip("/"))
        object.__setattr__(self, "storage_options", dict(self.storage_options or {}))

    @property
    def fs(self) -> pafs.FileSystem:
        return storage.resolve(self.path, self.storage_options, "sink")[0]

    @property
    def inner(self) -> str:
        return storage.resolve(self.path, self.storage_options, "sink")[1]

    @property
    def s3(self) -> Any:
        return s3_client.client(self.storage_options)

    @property
    def staging(self) -> storage.ObjectPath:
        """This run's checkpoints, beside the output (the URL carries the storage_options to the workers)."""
        folder, _, name = self.path.rpartition("/")
        return storage.ObjectPath(f"{folder}/.{name}.checkpoints-{self.run_id}", self.storage_options)

    def _runs_beside(self) -> dict[str, dict[str, str]]:
        """Run id → what it left beside the output: {"checkpoints" | "scratch": the prefix}."""
        folder, _, name = self.inner.rpartition("/")
        pattern = re.compile(rf"^\.{re.escape(name)}\.(?P<kind>checkpoints|scratch)-(?P<run>.+)$")
        infos = self.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
        runs: dict[str, dict[str, str]] = {}
        for info in infos:
            if info.type == pafs.FileType.Directory and (match := pattern.match(info.base_name)):
                runs.setdefault(match["run"], {})[match["kind"]] = info.path
        return runs

    def unfinished_run(self) -> str | None:
        """The newest run that started (left its checkpoints) and was not committed."""
        committed, _ = self._read_marker(self.marker)
        runs = [run for run, left in self._runs_beside().items()
                if "checkpoints" in left and (committed is None or committed.run_id != run)]
        return max(runs) if runs else None

    def _start(self, run_id: str, resume: bool) -> None:
        """Remove what earlier unfinished runs left beside the output (but the run resumed), then mark this
        run as started, so an interrupt leaves it for `--resume`."""
        for run, left in self._runs_beside().items():
            if run != run_id:
                prefixes = sorted(left.values())
                log.warning("%s: removing what an unfinished run %s left: %s", self.path, run, ", ".join(prefixes))
                for prefix in prefixes:
                    storage.remove_tree(storage.ObjectPath(storage.to_url(self.path, prefix), self.storage_options))
        if not resume:
            storage.put(storage.join(replace(self, run_id=run_id).staging, "started"), run_id.encode())

    def _end(self) -> None:
        if self.run_id:
            storage.remove_tree(self.staging)

    def _read_marker(self, key: str) -> tuple[Manifest | None, str | None]:
        found = s3_client.get(self.s3, key)
        if found is None:
            return None, None
        return Manifest(**json.loads(found[0])), found[1]

    def _write_marker(self, key: str, manifest: Manifest, etag: str | None) -> None:
        """A precondition failure on a marker that names this run is our own write, retried after its answer
        was lost (and not caught by `s3_client.put`'s ETag check on a store whose ETag is no MD5)."""
        try:
            s3_client.put(self.s3, key, manifest.to_json().encode(), etag)
        except s3_client.PreconditionFailed:
            current, _ = self._read_marker(key)
            if current is not None and current.run_id == manifest.run_id and current.files == manifest.files:
                return
            raise SinkError(f"output {self.path} was committed by another run meanwhile; nothing committed") from None

    def _write_object(self, key: str, table: pa.Table) -> int:
        """Write one object with pyarrow; it becomes visible whole when the upload completes."""
        try:
            with self.fs.open_output_stream(key) as out:
                if self.format == "parquet":
                    pq.write_table(table, out)
                else:
                    pacsv.write_csv(table, out)
                return out.tell()
        except OSError as exc:
            raise SinkError(f"{storage.to_url(self.path, key)}: {storage.reason(exc)}") from None

    def _objects(self, prefix: str) -> list[str]:
        """Every object under `prefix`, relative to it."""
        infos = self.fs.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
        return [i.path[len(prefix) + 1:] for i in infos if i.type == pafs.FileType.File]

    def _abort_uploads(self, prefix: str, owned: Callable[[str], bool]) -> None:
        """Abort the uploads of parts that writers killed mid-write left unfinished (the lock is held: no
        writer of this output is alive)."""
        aborted = s3_client.abort_uploads(self.s3, prefix, owned)
        if aborted:
            log.warning("%s: aborted %d unfinished upload(s) of a killed run: %s", self.path, len(aborted),
                        ", ".join(aborted[:10]))

    def _delete(self, prefix: str, names: Sequence[str]) -> None:
        for name in names:
            try:
                self.fs.delete_file(f"{prefix}/{name}")
            except FileNotFoundError:
                pass


def _receipt(table: pa.Table, files: list[list[Any]], chunk: int | None, stats: Stats, source: str) -> Receipt:
    from pipeline.io.sink import _receipt as receipt

    return receipt(table, files, chunk, stats, source)


def _attempt() -> str:
    return secrets.token_hex(4)


@dataclass(frozen=True)
class ObjectDirectorySink(_ObjectOutput):
    """Parts under an object-storage prefix and a `_SUCCESS` manifest written last (hive folders with
    `partition_by`)."""

    partition_by: Sequence[str] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "partition_by", check_partition_by(self.partition_by))

    @property
    def marker(self) -> str:
        return f"{self.inner}/{SUCCESS}"

    def for_run(self, run_id: str, single: bool = False, resume: bool = False) -> "ObjectDirectorySink":
        if self.fs.get_file_info(self.inner).type == pafs.FileType.File:
            raise SinkError(f"output {self.path} is an object; a per-chunk pipeline writes a prefix")
        manifest, _ = self._read_marker(self.marker)
        listed = {f["file"] for f in manifest.files} if manifest else set()
        present = self._objects(self.inner)
        resumed = {name for name in present if resume and _run_of(name) == run_id}
        orphans = [name for name in present if _PART.search(name) and name not in listed and name not in resumed]
        if orphans:
            log.warning("%s: removing %d part(s) no manifest lists (left by a failed or killed run): %s",
                        self.path, len(orphans), ", ".join(orphans[:10]))
            self._delete(self.inner, orphans)
        self._abort_uploads(self.inner, lambda name: bool(_PART.search(name)))
        rest = [name for name in present if name not in orphans and name not in resumed]
        if self.mode == "error" and rest:
            raise SinkError(f"output {self.path} already exists (sink.mode = 'error'); use 'overwrite' or 'append'")
        if self.mode == "append" and manifest is not None:
            refuse_other_layout(self.path, manifest.partition_by, self.partition_by)
        self._start(run_id, resume)
        return replace(self, run_id=run_id)

    def write_part(self, batch: Batch, chunk: int | None, stats: Stats, source: str) -> Receipt:
        table, name = to_arrow(batch), f"part-{chunk or 0:05d}-{self.run_id}-{_attempt()}.{self.format}"
        if self.partition_by is None:
            parts = [("", table)]
        else:
            parts = [(f"{folder}/", rows) for folder, rows in split_partitions(table, self.partition_by, chunk)]
        files = [[f"{folder}{name}", rows.num_rows, self._write_object(f"{self.inner}/{folder}{name}", rows)]
                 for folder, rows in parts]
        return _receipt(table, files, chunk, stats, source)

    def commit(self, receipts: list[Receipt], skipped: list[list[str]] = ()) -> Manifest:
        previous, etag = self._read_marker(self.marker)
        if previous is not None and self.mode == "error":
            raise SinkError(f"output {self.path} was committed by another run meanwhile (sink.mode = 'error')")
        manifest = Manifest.from_receipts(self.path, self.run_id, self.mode, receipts, skipped,
                                          self.partition_by or ())
        mine = {f["file"] for f in manifest.files}
        present = set(self._objects(self.inner))
        missing = sorted(mine - present)
        if missing:
            raise SinkError(f"output {self.path}: part {missing[0]} is gone (removed by another run?); "
                            "nothing committed")
        self._delete(self.inner, sorted(n for n in present - mine if _run_of(n) == self.run_id))  # retried attempts
        if self.mode == "append" and previous is not None:
            refuse_other_layout(self.path, previous.partition_by, self.partition_by)
            manifest.files = previous.files + manifest.files
            manifest.rows = sum(f["rows"] for f in manifest.files)
        self._write_marker(self.marker, manifest, etag)  # the commit point
        if self.mode == "overwrite":
            keep = {f["file"] for f in manifest.files} | {SUCCESS}
            self._delete(self.inner, sorted(n for n in self._objects(self.inner) if n not in keep))
        self._end()
        return manifest

    def abort(self) -> None:
        """Remove this run's parts and checkpoints (a writer still running may add a part later: the next run
        removes it)."""
        if self.run_id:
            self._delete(self.inner, [n for n in self._objects(self.inner) if _run_of(n) == self.run_id])
            self._end()


@dataclass(frozen=True)
class ObjectFileSink(_ObjectOutput):
    """One output object (a reduction's result) and its `<name>._SUCCESS` marker beside it."""

    @property
    def folder(self) -> str:
        return self.inner.rpartition("/")[0]

    @property
    def name(self) -> str:
        return self.inner.rpartition("/")[2]

    @property
    def marker(self) -> str:
        return sidecar(self.inner)

    def _staged(self) -> re.Pattern[str]:
        return re.compile(rf"^\.{re.escape(self.name)}\.staging-(?P<run>.+)-(?P<attempt>[0-9a-f]{{8}})$")

    def for_run(self, run_id: str, single: bool = True, resume: bool = False) -> "ObjectFileSink":
        if not single:
            raise ConfigError(f"sink.path: {self.path} names one file, but this pipeline writes one part per chunk; "
                              "give a prefix, or end the pipeline in an aggregate")
        if self.mode == "append":
            raise ConfigError("sink.mode: 'append' needs a directory output; a single file can only be replaced")
        if self.fs.get_file_info(self.inner).type == pafs.FileType.Directory:
            raise SinkError(f"output {self.path} is a prefix with objects under it; expected a file path")
        siblings = [n for n in self._objects(self.folder) if "/" not in n]
        orphans = [n for n in siblings if self._staged().match(n)]
        if orphans:
            log.warning("%s: removing %d staged object(s) of failed or killed runs", self.path, len(orphans))
            self._delete(self.folder, orphans)
        self._abort_uploads(self.folder, lambda name: bool(self._staged().match(name)))
        if self.mode == "error" and (self.name in siblings or f"{self.name}.{SUCCESS}" in siblings):
            raise SinkError(f"output {self.path} already exists (sink.mode = 'error'); use 'overwrite'")
        self._start(run_id, resume)
        return replace(self, run_id=run_id)

    def write_part(self, batch: Batch, chunk: int | None, stats: Stats, source: str) -> Receipt:
        table = to_arrow(batch)
        staged = f".{self.name}.staging-{self.run_id}-{_attempt()}"
        size = self._write_object(f"{self.folder}/{staged}", table)
        return _receipt(table, [[staged, table.num_rows, size]], chunk, stats, source)

    def commit(self, receipts: list[Receipt], skipped: list[list[str]] = ()) -> Manifest:
        manifest = Manifest.from_receipts(self.path, self.run_id, self.mode, receipts, skipped)
        staged = [f["file"] for f in manifest.files]
        for entry in manifest.files:
            entry["file"] = self.name
        previous, etag = self._read_marker(self.marker)
        if previous is not None and self.mode == "error":
            raise SinkError(f"output {self.path} was committed by another run meanwhile (sink.mode = 'error')")
        if staged:  # the staged body must be as long as its writer recorded: a short read is never committed
            body = self.fs.open_input_stream(f"{self.folder}/{staged[0]}").readall()
            if len(body) != manifest.files[0]["bytes"]:
                raise SinkError(f"output {self.path}: read {len(body)} of the {manifest.files[0]['bytes']} bytes "
                                "staged; nothing committed")
            current = s3_client.get(self.s3, self.inner) if self.mode == "overwrite" else None
            try:  # the final key is written once, here, and only over what this run saw
                s3_client.put(self.s3, self.inner, body, current[1] if current else None)
            except s3_client.PreconditionFailed:
                raise SinkError(f"output {self.path} was written by another run meanwhile; nothing committed") from None
        self._write_marker(self.marker, manifest, etag)
        self.abort()
        return manifest

    def abort(self) -> None:
        if self.run_id:
            pattern = self._staged()
            self._delete(self.folder, [n for n in self._objects(self.folder)
                                       if "/" not in n and (m := pattern.match(n)) and m["run"] == self.run_id])
            self._end()


def object_sink_for(path: str, mode: str, format: str | None, partition_by: Sequence[str] | None,
                    storage_options: Mapping[str, Any] | None, suffix: str) -> _ObjectOutput:
    """The object-storage counterpart of `sink_for`'s choice: a `.parquet`/`.csv` key is one object."""
    if suffix in FORMATS:
        if partition_by is not None:
            raise ConfigError(f"sink.partition_by: {path} names one file; partitioned output needs a prefix")
        return ObjectFileSink(path, mode, format or suffix, storage_options=storage_options)
    return ObjectDirectorySink(path, mode, format or "parquet", storage_options=storage_options,
                               partition_by=partition_by)


def _run_of(name: str) -> str | None:
    match = _PART.search(name)
    return match["run"] if match else None
