"""One run at a time per destination: an exclusive lock on `.<name>.lock` beside the output, held by the
driver for the whole run and removed after. The OS releases the lock if the driver dies, so a killed run
never blocks the next one (its lock file is simply taken over). Outputs on object storage: `object_lock`."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pipeline.errors import SinkError
from pipeline.io.storage import is_local


@contextmanager
def output_lock(path: str, storage_options: Mapping[str, Any] | None = None) -> Iterator[None]:
    """Held by the driver for the whole run. A URL output holds a lock object instead (see `object_lock`),
    reached with the sink's storage_options."""
    if not is_local(path):
        from pipeline.io.object_lock import object_lock

        with object_lock(path, dict(storage_options or {})):
            yield
        return
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    lock_path = os.path.join(folder, f".{name}.lock")
    while True:
        handle = open(lock_path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise SinkError(f"another run is writing {path} (lock held by {holder}); wait for it to finish") from None
        if _same_file(handle, lock_path):  # not a file its last holder removed while we opened it
            break
        handle.close()
    try:
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        os.remove(lock_path)  # removed while still held, so nobody can lock the old file after us
        handle.close()


def _same_file(handle, path: str) -> bool:
    try:
        return os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False
