"""Scratch files written whole or not at all, and files of pieces a reader finds one at a time.

    +---------------------------------------------------------------+
    | piece 0 | piece 1 | ... | piece n-1                           |
    | footer: where each piece starts, then the end (int64 × n+1),  |
    |         n (int64), MAGIC                                      |
    +---------------------------------------------------------------+

An exchange's map file holds one Arrow IPC stream per partition, and a split aggregate state one pickle per
key range: a reader wants only its own piece, so it reads the footer's two offsets and then that piece, not
the whole file (a memory map locally, ranged reads on object storage).
"""

from __future__ import annotations

import os
import struct
import uuid
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from pipeline.io import storage

MAGIC = b"PXMAP001"  # the last bytes of a file of pieces (first used by map files, whose name it keeps)
_TAIL = struct.Struct("<q8s")  # the piece count, then MAGIC


def write_whole(path: str, write: Callable[[pa.NativeFile], None]) -> int:
    """Run `write` into a file readers see whole or not at all; returns its size. Locally a unique temporary
    name then a rename, so two attempts of one task never write into each other (no fsync: scratch only needs
    to outlive a killed process); on object storage one PUT, as an object is whole or absent."""
    if not storage.is_local(path):
        buffer = pa.BufferOutputStream()
        write(buffer)
        return storage.put(path, buffer.getvalue())
    folder, name = os.path.split(path)
    os.makedirs(folder or ".", exist_ok=True)
    temporary = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
    try:
        with pa.OSFile(temporary, "wb") as sink:
            write(sink)
            size = sink.tell()
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return size


def write_pieces(path: str, count: int, write_piece: Callable[[pa.NativeFile, int], None]) -> int:
    """A file of `count` pieces, `write_piece(sink, i)` writing piece i, then the footer; written whole."""

    def write(sink: pa.NativeFile) -> None:
        starts = []
        for index in range(count):
            starts.append(sink.tell())
            write_piece(sink, index)
        starts.append(sink.tell())
        sink.write(np.asarray(starts, dtype="<i8").tobytes() + _TAIL.pack(count, MAGIC))

    return write_whole(path, write)


def read_piece(path: str, index: int) -> pa.Buffer:
    """Piece `index` of a file `write_pieces` made. Locally memory-mapped, so the bytes stay valid after the
    file is closed or replaced by a retry. Raises ValueError for a file that is not one, or has no such piece."""
    if storage.is_local(path):
        whole = _mapped(path)
        start, end = _piece_range(whole.size, lambda at, size: whole.slice(at, size), path, index)
        return whole.slice(start, end - start)
    fs, inner = storage.object_fs(path)
    with fs.open_input_file(inner) as source:
        start, end = _piece_range(source.size(), lambda at, size: source.read_at(size, at), path, index)
        return source.read_at(end - start, start)


def read_pieces(path: str) -> list[pa.Buffer]:
    """Every piece of a file `write_pieces` made, the file read once (memory-mapped locally)."""
    if storage.is_local(path):
        whole = _mapped(path)
    else:
        fs, inner = storage.object_fs(path)
        with fs.open_input_file(inner) as source:
            whole = source.read_buffer()
    count = _piece_count(whole.size, lambda at, size: whole.slice(at, size), path)
    footer = whole.slice(whole.size - _TAIL.size - 8 * (count + 1), 8 * (count + 1))
    starts = np.frombuffer(footer, dtype="<i8").tolist()
    return [whole.slice(start, end - start) for start, end in zip(starts[:-1], starts[1:])]


def _mapped(path: str) -> pa.Buffer:
    """A local file memory-mapped: its bytes stay valid after it is closed or replaced by a retry."""
    with pa.memory_map(path) as source:
        return source.read_buffer()


def _piece_count(size: int, read_at: Callable[[int, int], pa.Buffer], path: str) -> int:
    tail = bytes(read_at(size - _TAIL.size, _TAIL.size)) if size >= _TAIL.size else b""
    if tail[8:] != MAGIC:
        raise ValueError(f"{path} is not a scratch file of pieces (no index at its end)")
    return _TAIL.unpack(tail)[0]


def _piece_range(size: int, read_at: Callable[[int, int], pa.Buffer], path: str, index: int) -> tuple[int, int]:
    """Where piece `index` starts and ends in a file of `size` bytes; `read_at(offset, nbytes)` reads it."""
    count = _piece_count(size, read_at, path)
    if not 0 <= index < count:
        raise ValueError(f"{path} has pieces 0..{count - 1}, not {index}")
    starts = np.frombuffer(bytes(read_at(size - _TAIL.size - 8 * (count + 1) + 8 * index, 16)), dtype="<i8")
    return int(starts[0]), int(starts[1])
