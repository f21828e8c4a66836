"""One run at a time per output on object storage: a lock object `.<name>.lock` beside the output.

There is no flock on S3, and no process death the store would notice. So the lock is an object created with
`If-None-Match: *` (only one creator wins), holding the owner's token, host, pid and a `heartbeat` time that a
driver thread renews every HEARTBEAT seconds with `If-Match` on the lock's own etag (a driver whose lock was
taken over stops renewing). A driver killed with SIGKILL leaves its lock behind; the next run reads it and, if
its heartbeat is older than STALE seconds, or its holder ran on this host and its pid is gone, takes it over by
replacing exactly that stale object (`If-Match` on its etag: of two runs taking over together only one
succeeds). Heartbeats are the writers' clocks: they must agree within STALE. A live run that lost its lock cannot commit over the new holder's output: every commit
writes its manifest conditionally on the etag it read, and checks its parts are still there.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pipeline.errors import SinkError
from pipeline.io import s3_client

HEARTBEAT = 10.0  # seconds between renewals
STALE = 60.0  # a lock not renewed for this long belongs to a dead driver


def stale_after() -> float:
    """STALE, or `PIPELINE_S3_LOCK_STALE` seconds when set: read at each call, so a test (or a store with a
    known clock skew) can change it without waiting a minute."""
    return float(os.environ.get("PIPELINE_S3_LOCK_STALE") or STALE)


def lock_key(url: str) -> str:
    """`s3://bucket/a/out` → `bucket/a/.out.lock` (the path inside the filesystem)."""
    inner = url.split("://", 1)[1].strip("/")
    folder, _, name = inner.rpartition("/")
    return f"{folder}/.{name}.lock" if folder else f"{name}/.lock"


@contextmanager
def object_lock(url: str, storage_options: Mapping[str, Any] | None = None) -> Iterator[None]:
    """Hold the output's lock object for the block, renewing it; SinkError if a live run holds it."""
    s3, key = s3_client.client(storage_options), lock_key(url)
    owner = secrets.token_hex(8)
    etag = _acquire(s3, key, owner, url)
    stop = threading.Event()
    state = {"etag": etag}
    beat = threading.Thread(target=_renew, args=(s3, key, owner, state, stop), daemon=True, name="output-lock")
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()
        if state["etag"] is not None:
            s3_client.delete(s3, key, state["etag"])  # only our own lock, never one that was taken over


def holder(body: bytes) -> dict[str, Any]:
    try:
        found = json.loads(body)
        return found if isinstance(found, dict) else {}
    except ValueError:
        return {}


def _body(owner: str) -> bytes:
    return json.dumps({"owner": owner, "host": socket.gethostname(), "pid": os.getpid(),
                       "heartbeat": time.time()}).encode()


def _acquire(s3: Any, key: str, owner: str, url: str) -> str:
    for _ in range(3):
        try:
            return s3_client.put(s3, key, _body(owner), None)
        except s3_client.PreconditionFailed:
            pass
        found = s3_client.get(s3, key)
        if found is None:
            continue  # released meanwhile: try to create it again
        body, etag = found
        other = holder(body)
        age = time.time() - float(other.get("heartbeat", 0) or 0)
        if age < stale_after() and not _dead_here(other):
            who = f"pid {other.get('pid')} on {other.get('host')}" if other else "another run"
            raise SinkError(f"another run is writing {url} (lock held by {who}, renewed {age:.0f}s ago); "
                            f"wait for it to finish (a killed run's lock is taken over {stale_after():.0f}s "
                            "after its last renewal)")
        try:
            return s3_client.put(s3, key, _body(owner), etag)  # take over exactly that stale lock
        except s3_client.PreconditionFailed:
            continue
    raise SinkError(f"another run is writing {url} (its lock keeps changing); wait for it to finish")


def _dead_here(other: dict[str, Any]) -> bool:
    """Whether the holder ran on this host and its process is gone: its lock is taken over at once instead
    of after STALE (a resume right after a crash need not wait)."""
    if other.get("host") != socket.gethostname() or not isinstance(other.get("pid"), int):
        return False
    try:
        os.kill(other["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, owned by another user
        return False
    return False


def _renew(s3: Any, key: str, owner: str, state: dict[str, Any], stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT):
        try:
            state["etag"] = s3_client.put(s3, key, _body(owner), state["etag"])
        except s3_client.PreconditionFailed:
            state["etag"] = None  # taken over: stop renewing, and never delete the new holder's lock
            return
        except Exception:  # a network blip: try again at the next beat, before the lock turns stale
            continue
