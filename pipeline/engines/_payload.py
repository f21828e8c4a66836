"""Tasks as self-contained cloudpickle bytes, for every engine that crosses a process boundary.

Functions from `__main__`, a notebook, or a module next to the config (registered by value) travel with
the task, so workers need only this framework installed. A task's `Ref` arguments stay as placeholders;
the engine passes the dependencies' results alongside, in `Task.deps` order.

A payload is one bytes object per function and argument. The same source, stages and sink appear in
every chunk's task, so a `Packer` pickles each distinct object once per run, and workers keep recently
unpickled shared parts: per-task cost is then about the chunk alone. Chunks are pickled by the C pickler
where that is safe, and never kept.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections import OrderedDict
from typing import Any

import cloudpickle

from pipeline import trace
from pipeline.io.chunk import Chunk
from pipeline.plan import Ref, Task

Payload = tuple[bytes, ...]
_REF = b""  # in a payload: the place of a dependency's result
_CHUNK = b"C"  # prefix of a chunk's part: unpickled every time, never kept (it is one task's data)
_HOLE = object()  # the same place, once unpacked
_LOADED: OrderedDict[bytes, Any] = OrderedDict()
_LOADED_KEPT = 64
_LOADED_LOCK = threading.Lock()


class Packer:
    """Pickles each distinct plan object once. Objects are keyed by identity, which is stable while the
    plan that holds them is alive, so use one Packer per plan run."""

    def __init__(self) -> None:
        self._memo: dict[int, tuple[Any, bytes]] = {}

    def pack(self, task: Task) -> Payload:
        return tuple(self._bytes(part) for part in (task.fn, *task.args))

    def _bytes(self, obj: Any) -> bytes:
        if isinstance(obj, Ref):
            return _REF
        if isinstance(obj, Chunk):  # distinct per task, so never memoised
            return _dumps_chunk(obj)
        held = self._memo.get(id(obj))
        if held is None:
            held = self._memo[id(obj)] = (obj, cloudpickle.dumps(obj))
        return held[1]


def _dumps_chunk(chunk: Chunk) -> bytes:
    """A chunk is our own class holding plain data: the C pickler does it several times faster than
    cloudpickle. Python objects in its data may be instances of the user's own classes, which only
    cloudpickle can send to a worker that cannot import them."""
    dumps = cloudpickle.dumps if chunk.objects else pickle.dumps
    return _CHUNK + dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL)


def pack(task: Task) -> Payload:
    """One task's payload, without sharing across tasks."""
    return Packer().pack(task)


def run_packed_batch(items: list[tuple[Payload, list[Any]]]) -> tuple[list[Any], trace.Timing]:
    """Run several packed tasks in order, in one message: (their results, the batch's timing)."""
    return trace.run_batch(lambda item: run_packed(item[0], *item[1]), items)


def run_packed(payload: Payload, *dep_values: Any) -> Any:
    """Unpack a task and run it with its `Ref` placeholders replaced by `dep_values`, in order."""
    return trace.task(_unpack_and_run, payload, dep_values)


def _unpack_and_run(payload: Payload, dep_values: tuple[Any, ...]) -> Any:
    """Unpickling is the task's `serialise` step."""
    started = time.perf_counter()
    fn, *args = (_load(part) if part else _HOLE for part in payload)
    trace.record("serialise", "unpickle", time.perf_counter() - started)
    values = iter(dep_values)
    return fn(*(next(values) if a is _HOLE else a for a in args))


def _load(part: bytes) -> Any:
    if part[:1] == _CHUNK:
        return pickle.loads(memoryview(part)[1:])
    with _LOADED_LOCK:
        obj = _LOADED.get(part)
        if obj is not None:
            _LOADED.move_to_end(part)
            return obj
    obj = cloudpickle.loads(part)
    with _LOADED_LOCK:
        _LOADED[part] = obj
        if len(_LOADED) > _LOADED_KEPT:
            _LOADED.popitem(last=False)
    return obj
