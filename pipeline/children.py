"""The external programs stages started in this process, each in a process group of its own, so that a stopped
run can kill them: a program in its own group does not get the terminal's Ctrl-C, and a worker that is
stopped or interrupted would otherwise leave it running.

A run that is interrupted calls `interrupt()` (the driver, and each worker on the signal `on_signal` sets
up): every registered group is killed, and so is any registered from then on, until `resume()`, since a
task already taken by a worker may start its program a moment later. Kept free of heavy imports: the
engines import it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from subprocess import Popen

_lock = threading.RLock()  # re-entrant: a signal handler may run in a thread that holds it
_running: set[Popen] = set()
_interrupted = False


@contextlib.contextmanager
def running(popen: Popen) -> Iterator[None]:
    """Register `popen`, the leader of its own process group, while the block runs."""
    with _lock:
        _running.add(popen)
        if _interrupted:
            _kill(popen)
    try:
        yield
    finally:
        with _lock:
            _running.discard(popen)


def kill_all() -> None:
    """SIGKILL the process group of every registered program."""
    with _lock:
        for popen in list(_running):
            _kill(popen)


def interrupt() -> None:
    """Kill every registered group, and each one registered until `resume()`: the run is being stopped."""
    global _interrupted
    with _lock:
        _interrupted = True
        kill_all()


def resume() -> None:
    """Let programs run again, once the interrupted run has ended."""
    global _interrupted
    with _lock:
        _interrupted = False


def on_signal(signum: int) -> None:
    """Make `signum` interrupt this process's programs (call in the main thread: a worker's initializer)."""
    signal.signal(signum, lambda *_: interrupt())


def _kill(popen: Popen) -> None:
    """Kill the group of a program not yet reaped (until then its group id cannot name another group)."""
    if popen.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(popen.pid, signal.SIGKILL)
