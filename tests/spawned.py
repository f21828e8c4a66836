"""Processes a test starts itself, and waits with deadlines.

A command starts in its own session (so its process group can be signalled as a whole) and is stopped by the
test, by pid: the command, its descendants (recorded before anything is killed, since orphans lose their
parent) and whatever is still in its process group. Waits poll a condition until a deadline; none sleeps
a fixed time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from typing import Any

import psutil


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll `condition` until it is true; fail naming `what` if `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:g} s")
        time.sleep(interval)


def spawn(args: list[str], **kwargs: Any) -> subprocess.Popen:
    """`subprocess.Popen` in a new session; pair it with `stop` in a `finally`."""
    return subprocess.Popen(args, start_new_session=True, **kwargs)


def alive(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    return False


def group(pgid: int) -> list[psutil.Process]:
    """Every process in process group `pgid`."""
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(OSError, psutil.Error):
            if os.getpgid(process.pid) == pgid:
                found.append(process)
    return found


def kill(processes: Iterable[psutil.Process], timeout: float = 30) -> list[psutil.Process]:
    """SIGKILL each of `processes` still running, by pid; wait for them (bounded); return any survivors."""
    processes = list(processes)
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()  # psutil checks the pid still names the same process
    _, survivors = psutil.wait_procs(processes, timeout=timeout)
    return [p for p in survivors if alive(p)]


def stop(proc: subprocess.Popen, known: Iterable[psutil.Process] = (), timeout: float = 30) -> None:
    """Kill `proc`, its descendants, its process group and `known` (say, children recorded earlier), by pid."""
    everything = {p.pid: p for p in known}
    if proc.returncode is None:  # not reaped yet, so its pid still names it
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(proc.pid)
            everything.update({p.pid: p for p in [root, *root.children(recursive=True)]})
    everything.update({p.pid: p for p in group(proc.pid)})
    with contextlib.suppress(ProcessLookupError, PermissionError):  # and anything born in the group since
        os.killpg(proc.pid, signal.SIGKILL)
    survivors = kill(everything.values(), timeout)
    proc.wait(timeout)
    assert not survivors, f"still running after SIGKILL: {[p.pid for p in survivors]}"


def run(args: list[str], timeout: float = 300, capture_output: bool = False, **kwargs: Any
        ) -> subprocess.CompletedProcess:
    """Like `subprocess.run(..., timeout=...)`, but what the command started goes too: whatever of its
    process tree is still running when it ends, overruns or the test is interrupted is killed by pid."""
    if capture_output:
        kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc = spawn(args, **kwargs)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        stop(proc)
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)
