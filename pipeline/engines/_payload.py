"""Tasks as self-contained cloudpickle bytes, for every engine that crosses a process boundary.

Functions from `__main__`, a notebook, or a module next to the config (registered by value) travel with
the task, so workers need only this framework installed. A task's `Ref` arguments stay as placeholders
in the bytes; the engine passes the dependencies' results alongside, in `Task.deps` order.
"""

from __future__ import annotations

from typing import Any

import cloudpickle

from pipeline.plan import Ref, Task


def pack(task: Task) -> bytes:
    return cloudpickle.dumps((task.fn, task.args))


def run_packed(payload: bytes, *dep_values: Any) -> Any:
    """Unpack a task and run it with its `Ref` arguments replaced by `dep_values`, in order."""
    fn, args = cloudpickle.loads(payload)
    values = iter(dep_values)
    return fn(*(next(values) if isinstance(a, Ref) else a for a in args))


def call_packed(payload: bytes) -> Any:
    """Run `fn(*args)` packed by the local scheduler, which has already substituted the results."""
    fn, args = cloudpickle.loads(payload)
    return fn(*args)
