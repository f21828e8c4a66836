"""Resume: each chunk task records what it finished in the staging folder, under a fingerprint of
everything its result depends on — the stage chain's code and params, the source settings, and the
chunk's files (path, size, modification time, row groups). A resumed run reuses a chunk only when the
fingerprint still matches, so a changed stage invalidates every chunk and a changed file only its own.

    staging/chunk-00003.done    {"fingerprint": "..."}   written last: the result below is complete
    staging/chunk-00003.value   the receipt or partial aggregate (cloudpickle)

On object storage, where an object is whole or absent, one PUT does both: the value is stored under a key
that names the fingerprint (`chunk-00003.<fingerprint>.value`), so `done()` is one HEAD and a stale
fingerprint's object is simply never asked for.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cloudpickle

from pipeline.io import storage
from pipeline.io.manifest import write_json_atomically
from pipeline.io.chunk import Chunk
from pipeline.io.source import Source
from pipeline.stage import Stage


@dataclass(frozen=True)
class Checkpoint:
    folder: str
    name: str
    fingerprint: str

    @property
    def marker(self) -> str:
        return storage.join(self.folder, f"{self.name}.done")

    @property
    def value_path(self) -> str:
        if not storage.is_local(self.folder):
            return storage.join(self.folder, f"{self.name}.{self.fingerprint}.value")
        return storage.join(self.folder, f"{self.name}.value")

    def save(self, value: Any) -> None:
        """Record a finished result: the value first, then the marker that vouches for it (on object
        storage, one PUT under the fingerprint's name)."""
        if not storage.is_local(self.folder):
            storage.put(self.value_path, cloudpickle.dumps(value))
            return
        tmp = f"{self.value_path}.tmp-{os.getpid()}"
        with open(tmp, "wb") as fh:
            fh.write(cloudpickle.dumps(value))
        os.replace(tmp, self.value_path)
        write_json_atomically(self.marker, json.dumps({"fingerprint": self.fingerprint}), durable=False)

    def done(self) -> bool:
        """Whether an earlier attempt finished this exact work (cheap: reads only the marker)."""
        try:
            if not storage.is_local(self.folder):
                return storage.exists(self.value_path)
            with open(self.marker) as fh:
                return json.load(fh).get("fingerprint") == self.fingerprint
        except (OSError, ValueError):
            return False

    def load(self) -> Any:
        return cloudpickle.loads(storage.get(self.value_path))


def fingerprints(stages: Sequence[Stage], source: Source, kind: str) -> Callable[[Chunk], str]:
    """fingerprint(chunk): a digest of everything a chunk task's result depends on. What all chunks share
    (code, params, source settings) is digested once."""
    shared = [kind, source_settings(source), *([s.name, code_digest(s.fn), _params(s.params)] for s in stages)]
    base = hashlib.sha256(json.dumps(shared, default=repr).encode()).hexdigest()
    options = getattr(source, "storage_options", None)
    return lambda chunk: hashlib.sha256(json.dumps([base, _chunk_identity(chunk, options)]).encode()).hexdigest()


def code_digest(fn: Any) -> str:
    """The function's source when it has one, else its pickled form."""
    try:
        code: bytes = inspect.getsource(fn).encode()
    except (OSError, TypeError):
        code = cloudpickle.dumps(fn)
    return hashlib.sha256(code).hexdigest()


def source_settings(source: Source) -> list[Any]:
    return [type(source).__name__, getattr(source, "format", None), list(source.columns or []),
            repr(getattr(source, "filters", None)), str(getattr(source, "schema", None))]


def _chunk_identity(chunk: Chunk, storage_options: Any = None) -> list[Any]:
    """Each piece's file by path, size and modification time (on object storage, from the object's metadata)."""
    identity = []
    for piece in chunk.pieces:
        fs, inner = storage.resolve(piece.path, storage_options)
        size, mtime = storage.file_identity(fs, inner, piece.path)
        identity.append([piece.path, size, mtime, list(piece.row_groups or [])])
    return identity


def _params(params: Any) -> str:
    return json.dumps(params, sort_keys=True, default=repr)
