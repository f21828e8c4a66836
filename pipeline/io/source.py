"""Sources: list the chunks of a table on the driver, read one chunk inside a worker.

A chunk is plain data (files, row-group ids, partition expressions: see `chunk`), so listing happens once
and each worker reads its own bytes straight from storage: no table passes through the driver. Parquet row
groups are packed in file order into chunks of up to `chunk_rows` rows: a big file splits, small files
share a chunk. CSV chunks are whole files. Projection and row filters are pushed down to pyarrow, and row
groups whose statistics rule the filter out are skipped. Files may be local or on object storage (`s3://`,
and other schemes through fsspec: see `storage`); a chunk names them by URL, and each worker resolves the
URL to its own cached filesystem.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.batch import Batch
from pipeline.errors import BadInputFiles, ConfigError, InputError
from pipeline.io.chunk import Chunk, Piece
from pipeline.io.check import check_files
from pipeline.io.manifest import SUCCESS
from pipeline.io import polars_read, storage

# A pandas chunk is held whole, with its temporaries, by one worker; each chunk fewer saves a task's fixed cost
# (TPC-H SF 1 on 2 workers: 500,000 rows run the 22 queries in 0.87x the time of 250,000; 1,000,000 in 0.84x,
# but then 1.5 million orders are two chunks, too few for two workers to share evenly)
DEFAULT_CHUNK_ROWS = 500_000
FORMATS = ("parquet", "csv")
_LOCAL = storage.LOCAL
_NO_PARTITION = ds.scalar(True)  # a file outside hive partitions: no partition columns to add


class Source(Protocol):
    """Lists chunks (driver) and reads one (worker)."""

    columns: Sequence[str] | None

    def discover(self) -> tuple["Source", list[Chunk]]:
        """The chunks, and this source with whatever workers need to read them alike (e.g. the schema)."""
        ...

    def read(self, chunk: Chunk) -> Batch: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class FileSource:
    """Parquet or CSV: a file, a directory (hive-partitioned too) or a glob; local, or a URL on object storage
    (`s3://bucket/prefix`) read with `storage_options` (endpoint_url, key, secret, region, ...)."""

    path: str
    format: str | None = None
    columns: Sequence[str] | None = None
    filters: Any = None  # pyarrow DNF list or Expression
    chunk_rows: int | None = None  # None: DEFAULT_CHUNK_ROWS, or the pipeline's pick for its stages (plan.discover)
    on_bad_file: str = "error"  # or "skip": leave unreadable or mismatched files out, and list them
    storage_options: Mapping[str, Any] | None = field(default=None, repr=False)  # may hold secrets: not shown
    schema: pa.Schema | None = None  # fixed by discover(): the schema every worker reads with
    skipped: tuple[tuple[str, str], ...] = ()  # set by discover(): (file, why) left out

    def __post_init__(self) -> None:
        if self.path[:7].lower() == "file://":  # a local file named as a URL: the plain path from here on
            object.__setattr__(self, "path", self.path[7:])
        fmt = self.format or _format_of(self.path)
        if fmt not in FORMATS:
            raise ConfigError(f"source.format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
        object.__setattr__(self, "format", fmt)
        if self.columns is not None:
            object.__setattr__(self, "columns", tuple(self.columns))
        if self.on_bad_file not in ("error", "skip"):
            raise ConfigError(f"source.on_bad_file: expected 'error' or 'skip', got {self.on_bad_file!r}")
        if self.storage_options is not None:
            if not isinstance(self.storage_options, Mapping):
                raise ConfigError(f"source.storage_options: expected a table of options, "
                                  f"got {type(self.storage_options).__name__}")
            object.__setattr__(self, "storage_options", dict(self.storage_options))

    def describe(self) -> str:
        return f"{self.format} {self.path}"

    @property
    def expression(self) -> ds.Expression | None:
        if self.filters is None or isinstance(self.filters, ds.Expression):
            return self.filters
        return pq.filters_to_expression(self.filters)

    def resolve(self, path: str) -> tuple[pafs.FileSystem, str]:
        """The filesystem of `path` (this source's path or one of its files) and the path inside it."""
        return storage.resolve(path, self.storage_options)

    def dataset(self, files: list[str]) -> ds.Dataset:
        """The pyarrow dataset over `files`, hive partitions discovered."""
        try:
            if self.local:
                base = self.path if os.path.isdir(self.path) else None
                return ds.dataset(files, format=self.format, partitioning="hive", partition_base_dir=base)
            fs, base = self.resolve(self.path)
            base = base if storage.is_folder(fs, base) else None
            inner = [self.resolve(f)[1] for f in files]
            return ds.dataset(inner, format=self.format, partitioning="hive", partition_base_dir=base, filesystem=fs)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(_bad_file(exc, files), storage.reason(exc)) from None

    def discover(self) -> tuple["FileSource", list[Chunk]]:
        """Check the files, list the chunks and fix the schema, so every worker reads alike. Bad files stop
        the run, all named, or with `on_bad_file="skip"` are left out and listed in `skipped`."""
        files = self.files()
        good, problems = check_files(files, self.format, None if self.local else self.resolve)
        if problems and (self.on_bad_file == "error" or not good):
            hint = 'set [source] on_bad_file = "skip" to leave them out' if good else "no input file is usable"
            raise BadInputFiles(problems, hint)
        dataset = self.dataset(good)
        packed = self._pack(dataset.get_fragments(filter=self.expression), self._url)
        chunks = [Chunk(index, pieces) for index, pieces in enumerate(packed)]
        return replace(self, schema=dataset.schema, skipped=tuple(problems)), chunks

    def read(self, chunk: Chunk) -> pa.Table:
        tables = [self._read_piece(piece) for piece in chunk.pieces]
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    def _read_piece(self, piece: Piece) -> pa.Table:
        try:
            if self.format == "parquet":
                fragment = _parquet_fragment(piece.path, piece.partition, self.storage_options)
                fast = self._read_with_polars(piece, fragment)
                if fast is not None:
                    return fast
                if piece.row_groups is not None:
                    fragment = fragment.subset(row_group_ids=list(piece.row_groups))
            else:
                fs, inner = self.resolve(piece.path)
                fragment = ds.CsvFileFormat().make_fragment(inner, fs, partition_expression=piece.partition)
            return fragment.to_table(schema=self.schema, columns=self._columns(), filter=self.expression)
        except (pa.ArrowException, OSError) as exc:
            if self.on_bad_file == "skip":  # chunks then never span files (see `_pack`): only this file is lost
                raise SkippedChunk(piece.label, storage.reason(exc)) from None
            raise InputError(piece.label, storage.reason(exc)) from None

    def _read_with_polars(self, piece: Piece, fragment: ds.ParquetFileFragment) -> pa.Table | None:
        """The piece read by Polars' faster decoder (see `polars_read`); None where pyarrow's must read it."""
        if isinstance(self.filters, ds.Expression) or not self.local or _in_partition(piece):
            return None
        columns = self._columns() or self.schema.names
        return polars_read.read(piece.path, fragment, piece.row_groups, self.schema, columns, self.filters)

    def scan(self, chunk: Chunk) -> Any:
        """The chunk as a lazy Polars scan of its files, so Polars reads only what the query needs; None when
        the plain read must be used instead: CSV, filters or hive partitions (pyarrow evaluates those), skipping
        bad files (a scan fails only when collected), a file whose columns differ from the fixed schema, or
        files on object storage (pyarrow reads those through the filesystem the source resolved)."""
        if self.format != "parquet" or self.filters is not None or self.on_bad_file != "error" or not self.local:
            return None
        scans = [self._scan_piece(piece) for piece in chunk.pieces]
        if any(scan is None for scan in scans):
            return None
        import polars as pl

        return scans[0] if len(scans) == 1 else pl.concat(scans)

    def _scan_piece(self, piece: Piece) -> Any:
        if _in_partition(piece):
            return None
        columns = list(self.columns) if self.columns is not None else self.schema.names
        return polars_read.scan(piece.path, _parquet_fragment(piece.path, piece.partition), piece.row_groups,
                                self.schema, columns)

    def empty(self) -> pa.Table:
        """No rows, the columns a chunk would have: what a skipped chunk contributes."""
        schema = self.schema if self.columns is None else pa.schema([self.schema.field(c) for c in self.columns])
        return schema.empty_table()

    def _columns(self) -> list[str] | None:
        return list(self.columns) if self.columns is not None else None

    @property
    def local(self) -> bool:
        return storage.is_local(self.path)

    def _url(self, inner: str) -> str:
        """A file's path as the source names it (a URL on object storage) from its path on the filesystem."""
        return storage.to_url(self.path, inner)

    def files(self) -> list[str]:
        """Every input file, by path or URL; a problem finding them is one ConfigError naming the path."""
        if not self.local:
            committed = self._committed()
            return committed if committed is not None else storage.list_files(self.path, self.storage_options)
        if any(ch in self.path for ch in "*?["):
            files = sorted(glob.glob(self.path, recursive=True))
        elif os.path.isdir(self.path):
            files = sorted(_walk(self.path))
        elif os.path.exists(self.path):
            files = [self.path]
        else:
            raise ConfigError(f"source.path: no such file or directory: {self.path}")
        if not files:
            raise ConfigError(f"source.path: no input files match {self.path}")
        return files

    def _committed(self) -> list[str] | None:
        """The files a committed output's `_SUCCESS` manifest lists, when the path is a prefix that has one; else
        None (listed as usual, also under a marker that is not our manifest). On object storage, parts of failed
        or concurrent runs may sit beside the listed ones (no rename there: see `object_sink`), so a manifest is
        trusted over a listing."""
        fs, inner = self.resolve(self.path)
        if storage.has_glob(inner):
            return None
        marker = f"{inner.rstrip('/')}/{SUCCESS}"
        try:
            if fs.get_file_info(marker).type != pafs.FileType.File:
                return None
            with fs.open_input_stream(marker) as stream:
                listed = json.loads(stream.readall())["files"]
        except OSError as exc:
            raise ConfigError(f"source.path: {self.path}: {storage.reason(exc)}") from None
        except (ValueError, KeyError, TypeError):
            return None  # an empty or foreign `_SUCCESS` (other writers leave one): listed as usual
        files = sorted(self._url(f"{inner.rstrip('/')}/{entry['file']}") for entry in listed)
        if not files:
            raise ConfigError(f"source.path: the committed output {self.path} lists no files")
        return files

    def _pack(self, fragments: Iterable[ds.Fragment], url: Callable[[str], str]) -> list[tuple[Piece, ...]]:
        """Each chunk's pieces: row groups in file order, packed greedily into chunks of up to `chunk_rows`
        rows (a bigger row group is a chunk of its own). CSV files, whose rows are unknown until read, are a
        chunk each; so are Parquet files when bad ones are skipped: one failing mid-run loses only its rows.
        `url` names a fragment's file as the pieces do."""
        if self.format != "parquet":
            return [(Piece(url(f.path), partition=f.partition_expression),) for f in fragments]
        limit = self.chunk_rows or DEFAULT_CHUNK_ROWS
        chunks: list[list[tuple[ds.Fragment, int, int]]] = []
        rows = 0
        for fragment in fragments:
            for n, (group_id, group_rows) in enumerate(self._row_groups(fragment)):
                new_file_alone = n == 0 and self.on_bad_file == "skip"
                if not chunks or rows + group_rows > limit or new_file_alone:
                    chunks.append([])
                    rows = 0
                chunks[-1].append((fragment, group_id, group_rows))
                rows += group_rows
        return [tuple(_pieces(groups, url)) for groups in chunks]

    def _row_groups(self, fragment: ds.Fragment) -> list[tuple[int, int]]:
        """(id, rows) of the Parquet file's row groups the filter may match."""
        try:
            if self.expression is not None:
                fragment = fragment.subset(filter=self.expression)
            return [(rg.id, rg.num_rows) for rg in fragment.row_groups]
        except (pa.ArrowException, OSError) as exc:
            raise InputError(self._url(fragment.path), storage.reason(exc)) from None


_FOOTERS: dict[tuple[Any, ...], ds.ParquetFileFragment] = {}
_FOOTERS_KEPT = 32
_FOOTERS_LOCK = threading.Lock()


def _parquet_fragment(path: str, partition: Any, storage_options: Mapping[str, Any] | None = None
                      ) -> ds.ParquetFileFragment:
    """The file's fragment with its footer parsed, kept per worker process: parsing a footer costs about as
    much as reading a small row group (more, over the network), and a file's chunks all need it. Keyed by
    size and mtime (on object storage, from the object's metadata: no local stat of a URL), so a
    rewritten file is read afresh by long-lived cluster workers."""
    fs, inner = storage.resolve(path, storage_options)
    size, mtime = storage.file_identity(fs, inner, path)
    key = (path, size, mtime, id(fs))  # filesystems are kept for the process's life: ids stay unique
    with _FOOTERS_LOCK:
        fragment = _FOOTERS.get(key)
    if fragment is None:
        sized = {} if fs is _LOCAL else {"file_size": size}  # saves the reader asking the size again
        fragment = ds.ParquetFileFormat().make_fragment(inner, fs, partition_expression=partition, **sized)
        fragment.ensure_complete_metadata()
        with _FOOTERS_LOCK:
            if len(_FOOTERS) >= _FOOTERS_KEPT:
                _FOOTERS.pop(next(iter(_FOOTERS)))
            _FOOTERS[key] = fragment
    return fragment


def _pieces(groups: list[tuple[ds.Fragment, int, int]], url: Callable[[str], str]) -> Iterator[Piece]:
    """A chunk's (fragment, row group, rows) as one piece per file, named by `url`."""
    for _, run in itertools.groupby(groups, key=lambda group: group[0].path):
        run = list(run)
        fragment = run[0][0]
        yield Piece(url(fragment.path), tuple(g[1] for g in run), sum(g[2] for g in run),
                    fragment.partition_expression)


def _in_partition(piece: Piece) -> bool:
    """Whether the piece's file is in a hive partition, whose columns pyarrow adds from its path."""
    return piece.partition is not None and not piece.partition.equals(_NO_PARTITION)


class SkippedChunk(InputError):
    """A chunk that could not be read while bad files are skipped: the task goes on without its rows."""


def _walk(root: str) -> list[str]:
    """Data files below `root`, skipping hidden and underscore files (`_SUCCESS`, `.staging`)."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        found += [os.path.join(folder, f) for f in files if not f.startswith((".", "_"))]
    return found


def _format_of(path: str) -> str:
    return "csv" if path.rstrip("/").lower().endswith((".csv", ".csv.gz")) else "parquet"


def _bad_file(exc: Exception, files: list[str]) -> str:
    message = str(exc)
    named = (f for f in files if f in message or f.split("://", 1)[-1] in message)
    return next(named, files[0] if len(files) == 1 else ", ".join(files[:3]))
