"""Per-worker memory limits: sizes as people write them, the default share, and the watch that enforces it.

One chunk that needs far more memory than the others (a skewed key, an exploding join) must cost one worker,
not the machine. A worker whose resident memory (RSS) goes over its limit is killed and replaced, and its
task counts one attempt, as for any lost worker; a task that keeps doing it alone is named with the limit.

- `processes`: `MemoryWatch` in the driver polls the workers' RSS (as Dask's nanny does) and kills one over
  the limit; the driver knows the pids it killed, so the lost batch is known to be a memory kill.
- `ray`: the same watch runs inside each worker (`guard`), for the process it is in: a worker on another node
  has no driver beside it. It leaves a note in Ray's key-value store before ending the process.
- `dask`: the nanny's own `memory_limit`, for the private cluster; a cluster by address keeps its own.

>>> parse_size("2GB"), parse_size("512 MiB"), parse_size(1024)
(2000000000, 536870912, 1024)
>>> format_size(2_000_000_000), format_size(536870912)
('2 GB', '536.9 MB')
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable

from pipeline.errors import ConfigError

POLL_SECONDS = 0.02
SHARE_OF_MACHINE = 0.8  # of physical memory, split among the workers: the driver and the OS keep the rest
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(size: str | int | float) -> int:
    """Bytes from `2GB`, `1.5 GiB`, `800MB` or a number of bytes."""
    if isinstance(size, (int, float)) and not isinstance(size, bool):
        if size <= 0:
            raise ConfigError(f"engine.worker_memory: must be positive, got {size!r}")
        return int(size)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(size))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS or float(match.group(1)) <= 0:
        raise ConfigError(f"engine.worker_memory: expected a size like '2GB' or '512MiB', got {size!r}")
    return int(float(match.group(1)) * _UNITS[unit])


def format_size(size: int) -> str:
    """A size as people read it, in decimal units."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} B"


def machine_memory() -> int | None:
    """Physical memory of this machine, in bytes, where the OS says."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def worker_limit(worker_memory: str | int | None, workers: int) -> int | None:
    """The limit a worker gets: as configured, else its share of `SHARE_OF_MACHINE` of the machine."""
    if worker_memory is not None:
        return parse_size(worker_memory)
    total = machine_memory()
    return int(total * SHARE_OF_MACHINE / max(1, workers)) if total else None


def rss(pid: int) -> int | None:
    """Resident memory of process `pid` in bytes (Linux `/proc`), or None if it is gone or unknown."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class MemoryWatch:
    """A daemon thread that kills any of `pids()` whose RSS goes over `limit`, and remembers which."""

    def __init__(self, limit: int, pids: Callable[[], Iterable[int]], interval: float = POLL_SECONDS) -> None:
        self.limit, self._pids, self._interval = limit, pids, interval
        self._killed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="pipeline-memory-watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            for pid in list(self._pids()):
                used = rss(pid)
                if used is not None and used > self.limit:
                    with self._lock:
                        self._killed = True
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass

    def took_one(self) -> bool:
        """Whether this watch killed a worker since it was last asked."""
        with self._lock:
            killed, self._killed = self._killed, False
        return killed

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class _Guard:
    """This worker process's own watch (see `guard`): one thread, whose limit and note the latest task sets."""

    def __init__(self, limit: int, note: Callable[[], None]) -> None:
        self.limit, self.note = limit, note
        threading.Thread(target=self._watch, name="pipeline-memory-guard", daemon=True).start()

    def _watch(self) -> None:
        pid = os.getpid()
        while True:
            time.sleep(POLL_SECONDS)
            used = rss(pid)
            if used is not None and used > self.limit:
                try:
                    self.note()
                finally:
                    os.kill(pid, signal.SIGKILL)


_guard: _Guard | None = None


def guard(limit: int, note: Callable[[], None]) -> None:
    """In a worker process: have a thread call `note()` and end this process the moment its RSS goes over
    `limit` (started once; each task gives its own note). A Python thread runs whenever the task releases
    the GIL, as pandas, numpy and Arrow do in their heavy loops, and at least every switch interval
    otherwise."""
    global _guard
    if _guard is None:
        _guard = _Guard(limit, note)
    _guard.limit, _guard.note = limit, note
