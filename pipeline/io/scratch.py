"""The run's scratch folder: data between datasets that cannot be fused into one task.

    .<output>.scratch-<run>/
        lineitem~1/map-00003.arrow       an exchange's map output (rows grouped by partition)
        lineitem~1/map-00003.done        its checkpoint (resume reuses finished maps)
        totals~2/part-00000.arrow        a reduction's result, or a broadcast side's parts

Files are Arrow IPC: written once by the worker that made them, read by any worker, never through the
driver. The folder sits beside the first output so it is on the same storage, and is removed when the
run ends, except after an interrupt, when `--resume` takes it over.

On object storage (outputs there, or `[run] scratch = "s3://..."`) the folder is a prefix and its paths
are `storage.ObjectPath`s carrying the storage_options, so workers that share no disk still meet there:
each file is one PUT (an object is whole or absent), reads are ranged GETs through pyarrow's filesystem.
Local paths keep the temporary-name-and-rename writes and memory-mapped reads.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from pipeline import exchange as kernel
from pipeline.batch import Batch, to_arrow
from pipeline.errors import InputError
from pipeline.io.chunk import Chunk, Piece
from pipeline.io import indexed, storage
from pipeline.io.manifest import Receipt
from pipeline.stats import Stats


def scratch_folder(output: str, run_id: str) -> str:
    folder, name = os.path.split(os.path.abspath(output))
    return os.path.join(folder, f".{name}.scratch-{run_id}")


def object_scratch_folder(output: str, run_id: str, storage_options: Mapping[str, Any] | None) -> str:
    """`s3://bucket/prefix/.<name>.scratch-<run>` beside an output on object storage, with its options."""
    folder, _, name = output.rstrip("/").rpartition("/")
    return storage.ObjectPath(f"{folder}/.{name}.scratch-{run_id}", storage_options)


def remove(folder: str) -> None:
    if not storage.is_local(folder):
        storage.remove_tree(folder)
        return
    shutil.rmtree(folder, ignore_errors=True)


def write_ipc(path: str, table: pa.Table) -> int:
    """Write `table` whole or not at all; returns the bytes written."""

    def write(sink: pa.NativeFile) -> None:
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)

    return indexed.write_whole(path, write)


def read_ipc_files(paths: Sequence[str]) -> pa.Table:
    """Part files read as one table, in order."""
    tables = [read_ipc(path) for path in paths]
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")


def read_ipc(path: str) -> pa.Table:
    try:
        if not storage.is_local(path):
            fs, inner = storage.object_fs(path)
            with fs.open_input_file(inner) as source:
                return pa.ipc.open_file(source).read_all()
        with pa.memory_map(path) as source:
            return pa.ipc.open_file(source).read_all()
    except (pa.ArrowException, OSError) as exc:
        raise InputError(path, str(exc)) from None


@dataclass(frozen=True)
class ScratchSink:
    """Where a dataset that others read is written: `part-NNNNN.arrow` per part, no commit."""

    folder: str
    path: str = "<scratch>"

    def part(self, chunk: int | None) -> str:
        return storage.join(self.folder, f"part-{chunk or 0:05d}.arrow")

    def write_part(self, batch: Batch, chunk: int | None, stats: Stats, source: str) -> Receipt:
        table = to_arrow(batch).replace_schema_metadata(None)
        size = write_ipc(self.part(chunk), table)
        return Receipt(chunk, os.path.basename(self.part(chunk)), table.num_rows, size, [], stats, source)


@dataclass(frozen=True)
class ScratchSource:
    """Reads what a `ScratchSink` wrote: each chunk's pieces are part files, read as one table."""

    name: str
    columns: Sequence[str] | None = None
    trace_kind = "exchange read"  # reads what the run itself wrote, not its input

    def describe(self) -> str:
        return self.name

    def read(self, chunk: Chunk) -> pa.Table:
        return read_ipc_files([piece.path for piece in chunk.pieces])

    @staticmethod
    def chunks(sink: ScratchSink, parts: Sequence[int]) -> list[Chunk]:
        return [Chunk(i, (Piece(sink.part(p)),)) for i, p in enumerate(parts)]


@dataclass(frozen=True)
class ExchangeSource:
    """One partition of an exchange per chunk: its rows from every map file, in map order."""

    folder: str
    maps: int
    name: str
    columns: Sequence[str] | None = None
    trace_kind = "exchange read"

    def describe(self) -> str:
        return self.name

    def map_path(self, index: int) -> str:
        return storage.join(self.folder, f"map-{index:05d}.arrow")

    def read(self, chunk: Chunk) -> pa.Table:
        return kernel.read_partition([self.map_path(m) for m in range(self.maps)], chunk.index)

    def chunks(self, partitions: int) -> list[Chunk]:
        """A chunk per partition, labelled for messages ("exchange of orders by o_orderkey, partition 3")."""
        return [Chunk(p, (Piece(f"{self.name}, partition {p}"),)) for p in range(partitions)]
