"""The local engines: one scheduler (`_schedule.run_plan`), three executors.

- sync: in the calling thread, for debugging;
- threads: a thread pool (pandas and pyarrow release the GIL in much of their work);
- processes: a pool of worker processes, the default. Tasks travel as cloudpickle bytes, so functions
  defined in a notebook, a script or a module next to the config reach workers that cannot import them.

On Ctrl-C the external programs tasks started (`pipeline.children`) are killed, in the driver and, through
`WORKER_INTERRUPT`, in the workers, so the tasks in flight, which the scheduler waits for, end at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing as mp
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from multiprocessing import context as mp_context
from multiprocessing import popen_forkserver
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from pipeline import children
from pipeline.io import polars_read
from pipeline.engines import check_options, default_workers
from pipeline.engines._payload import Packer, run_packed_batch
from pipeline.engines._schedule import BatchSizer, InlineExecutor, Lost, Submit, call_batch, run_plan
from pipeline.engines.memory import MemoryWatch, worker_limit
from pipeline.errors import ConfigError
from pipeline.plan import Plan, Task

IN_FLIGHT_PER_WORKER = 2
DEFAULT_RETRIES = 2  # per task, for lost workers only: a stage's own exception is never retried
WORKER_INTERRUPT = signal.SIGUSR1  # the driver's word to a worker: the run is interrupted, kill your programs


@contextlib.contextmanager
def children_killed_on_interrupt(stop_workers: Callable[[], None] = lambda: None) -> Iterator[None]:
    """Ctrl-C while the block runs first kills the external programs tasks started: this process's, and
    the workers' through `stop_workers`; then it raises KeyboardInterrupt as usual. It must act in the signal
    handler: the scheduler, on the way out, waits for the tasks in flight, and those are waiting for their
    programs. Only in the main thread (where signals arrive), and only over Python's own handler."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    interrupted = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal interrupted
        interrupted = True
        children.interrupt()
        stop_workers()
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if interrupted:  # every task of the run has ended: programs may start again
            children.resume()


def interrupt_processes(pids: Iterable[int]) -> None:
    """Tell worker processes (set up by `children.on_signal(WORKER_INTERRUPT)`) to kill their programs."""
    for pid in list(pids):  # one step: a pool's own thread may change its workers meanwhile
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, WORKER_INTERRUPT)


class _LocalEngine:
    """Shared lifecycle: build the executor lazily, run plans through the common scheduler, shut down."""

    name = "local"

    def __init__(self, workers: int | None = None, retries: int = DEFAULT_RETRIES,
                 worker_memory: str | int | None = None, **options: Any) -> None:
        """`worker_memory` is accepted by every local engine so one config runs on any; only `processes`
        has separate workers to hold to it."""
        check_options(self.name, options, ())
        self.workers = default_workers(workers)
        self.retries = retries
        self.worker_memory = worker_limit(worker_memory, self.workers)
        self._executor: Executor | None = None

    def _make_executor(self) -> Executor:
        raise NotImplementedError

    def _executor_ready(self) -> Executor:
        if self._executor is None:
            self._executor = self._make_executor()
        return self._executor

    def _submitter(self) -> Submit:
        """How this engine hands a batch of tasks and their dependencies' results to its executor."""
        return lambda items: self._executor_ready().submit(call_batch, items)

    def _sizer(self) -> BatchSizer:
        """Threads and the calling thread pay almost nothing per task: no batching."""
        return BatchSizer(most=1)

    def _recover(self, error: BaseException) -> Lost | None:
        """What is known of the lost worker behind `error`, once replaced; None if `error` is no lost worker."""
        return None

    def run(self, plan: Plan, on_done: Callable[[Task], None] | None = None) -> Any:
        in_flight = self.workers * IN_FLIGHT_PER_WORKER
        with children_killed_on_interrupt(self._interrupt_workers):
            return run_plan(plan, self._submitter(), in_flight, on_done, self._recover, self.retries, self._sizer())

    def _interrupt_workers(self) -> None:
        """On Ctrl-C: worker processes kill their programs (threads share the driver's, killed already)."""

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> "_LocalEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyncEngine(_LocalEngine):
    name = "sync"

    def __init__(self, workers: int | None = None, **options: Any) -> None:
        super().__init__(1, **options)

    def _make_executor(self) -> Executor:
        return InlineExecutor()


class ThreadsEngine(_LocalEngine):
    name = "threads"

    def _make_executor(self) -> Executor:
        return ThreadPoolExecutor(self.workers, thread_name_prefix="pipeline")


@contextlib.contextmanager
def _main_hidden() -> Iterator[None]:
    """Hide `__main__`'s origin while a worker is launched, so the worker does not re-run the user's script
    (scripts and notebooks rarely guard with `if __name__ == "__main__"`). Workers need nothing from it:
    cloudpickle sends functions defined there by value."""
    main = sys.modules["__main__"]
    saved = {name: main.__dict__.get(name) for name in ("__file__", "__spec__")}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.update({name: value for name, value in saved.items() if value is not None})


@contextlib.contextmanager
def children_ignore_sigint() -> Iterator[None]:
    """Processes started inside ignore Ctrl-C (an ignored signal stays ignored across fork and exec): the
    terminal sends SIGINT to the whole process group, and the driver alone should handle it — cancel,
    shut its workers and clusters down, report once — rather than every worker printing a traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Popen(popen_forkserver.Popen):
    def _launch(self, process_obj: object) -> None:
        with _main_hidden():
            super()._launch(process_obj)


class _WorkerProcess(mp_context.ForkServerProcess):
    _start_method = "forkserver"

    @staticmethod
    def _Popen(process_obj: object) -> _Popen:
        return _Popen(process_obj)


class _ForkServerContext(mp_context.ForkServerContext):
    Process = _WorkerProcess


START_METHODS = ("auto", "fork", "forkserver")
_FORK_UNSAFE_MODULES = ("polars",)  # native thread pools with no at-fork handling: a forked child can hang
_FORK_SAFE_THREADS = ("pipeline-memory-watch",)  # only sleeps and reads /proc: holds no lock a child could inherit


def fork_is_safe() -> bool:
    """Whether a plain fork of this process is safe right now: on Linux, with no Python thread but this one
    (another could hold a lock the child inherits) and no runtime loaded whose native threads break in a
    forked child. The native threads numpy and pyarrow start (BLAS, jemalloc, Arrow's pool) re-initialise
    after fork. Forking is what makes start-up instant: the workers inherit every imported module."""
    others = [t for t in threading.enumerate() if t is not threading.current_thread() and t.name not in _FORK_SAFE_THREADS]
    return (sys.platform == "linux" and not others
            and not any(name in sys.modules for name in _FORK_UNSAFE_MODULES))


def _tune_malloc() -> None:
    """Keep freed column buffers in the worker's heap instead of returning them to the OS at once: every
    chunk allocates and frees arrays of the same sizes, and glibc's defaults (mmap above a few MB, trim on
    every large free) turn each of those into fresh page faults. Costs at most the trim threshold in idle
    memory per worker."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 * 2**20)
    libc.mallopt(m_trim_threshold, 256 * 2**20)


def _worker_init(threads: int) -> None:
    """In each worker: ignore Ctrl-C (it reaches the whole process group, and only the driver should act on
    it) but kill its programs when the driver says the run is interrupted; tune malloc; give Arrow's (and
    Polars') thread pools this worker's share of the cores, not every core, so that N workers run N×share
    threads rather than N×cores threads fighting over the same cores; decode Parquet with Polars where it
    may (`polars_read`: a worker never forks workers of its own)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    children.on_signal(WORKER_INTERRUPT)
    _tune_malloc()
    os.environ.setdefault("POLARS_MAX_THREADS", str(threads))  # read when Polars is first imported here
    import pyarrow

    pyarrow.set_cpu_count(threads)
    polars_read.enable()


def _warm(executor: Executor, workers: int) -> None:
    """Have every worker process started and ready (the pool otherwise starts them one submit at a time)."""
    try:
        for future in [executor.submit(os.getpid) for _ in range(workers * 2)]:
            future.result()
    except Exception:  # noqa: BLE001 - a broken pool is reported by the run that uses it
        pass


def packed_submitter(executor: Callable[[], Executor]) -> Submit:
    """How a batch reaches a pool of worker processes: packed (`_payload`), in one message. One per run: the
    plan's shared objects are pickled once."""
    packer = Packer()

    def submit(items: list[tuple[Task, list[Any]]]) -> Future:
        try:
            return executor().submit(run_packed_batch, [(packer.pack(t), deps) for t, deps in items])
        except BrokenProcessPool as exc:  # broke before we noticed: report it like a lost task
            future: Future = Future()
            future.set_exception(exc)
            return future

    return submit


class ProcessesEngine(_LocalEngine):
    """A pool of worker processes. `start_method="auto"` forks when `fork_is_safe()` (instant start, the
    driver's imports inherited) and otherwise uses a forkserver preloaded with pandas and pyarrow, which is
    safe whatever threads the driver runs. A replacement pool after a lost worker is chosen the same way."""

    name = "processes"

    def __init__(self, workers: int | None = None, start_method: str = "auto", **options: Any) -> None:
        super().__init__(workers, **options)
        if start_method not in START_METHODS:
            raise ConfigError(f"engine.start_method: must be one of {', '.join(START_METHODS)}, not {start_method!r}")
        self.start_method = start_method
        self._warming: threading.Thread | None = None
        self._watch: MemoryWatch | None = None

    def _forking(self) -> bool:
        return self.start_method == "fork" or (self.start_method == "auto" and fork_is_safe())

    def _make_executor(self) -> Executor:
        executor = self._make_pool()
        if self._watch is None and self.worker_memory is not None:
            self._watch = MemoryWatch(self.worker_memory, self._worker_pids)
        return executor

    def _worker_pids(self) -> list[int]:
        processes = getattr(self._executor, "_processes", None)
        return list(processes or ())

    def _make_pool(self) -> Executor:
        if self._forking():
            executor = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("fork"),
                                           initializer=_worker_init, initargs=(self._threads_each(),))
            gc.freeze()  # objects the children inherit are never scanned there, so their pages stay shared
            try:
                with warnings.catch_warnings():  # the fork check above is the informed version of this warning
                    warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
                    executor.submit(os.getpid)  # a fork pool starts all its workers at the first submit
            finally:
                gc.unfreeze()
            return executor
        context = _ForkServerContext()
        context.set_forkserver_preload(["pandas", "pyarrow", "pipeline.tasks"])
        return ProcessPoolExecutor(self.workers, mp_context=context, initializer=_worker_init,
                                   initargs=(self._threads_each(),))

    def _threads_each(self) -> int:
        return max(1, (os.cpu_count() or 1) // self.workers)

    def __enter__(self) -> "ProcessesEngine":
        """Start the workers now, while the driver lists chunks and compiles the plan: forked ones are ready
        at once; forkserver ones start in the background."""
        forking = self._forking()
        executor = self._executor_ready()
        if not forking:
            self._warming = threading.Thread(target=_warm, args=(executor, self.workers), daemon=True)
            self._warming.start()
        return self

    def run(self, plan: Plan, on_done: Callable[[Task], None] | None = None) -> Any:
        if self._warming is not None:
            self._warming.join()
            self._warming = None
        try:
            return super().run(plan, on_done)
        except KeyboardInterrupt:  # its workers now kill every program they start: a later run gets new ones
            super().close()
            raise

    def _interrupt_workers(self) -> None:
        interrupt_processes(self._worker_pids())

    def _submitter(self) -> Submit:
        return packed_submitter(self._executor_ready)

    def _sizer(self) -> BatchSizer:
        """Each message is a pipe round trip and a wake-up on both sides: tiny tasks share messages."""
        return BatchSizer()

    def _recover(self, error: BaseException) -> Lost | None:
        """A killed or crashed worker breaks the whole pool, failing every task in flight: which one it was
        running is not known. Replace the pool once (the first lost task to report does; the rest find a
        healthy pool); whether the memory watch killed it says why."""
        if not isinstance(error, BrokenProcessPool):
            return None
        broken = self._executor
        if broken is not None and getattr(broken, "_broken", False):
            broken.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        over = self._watch is not None and self._watch.took_one()
        return Lost(exact=False, limit=self.worker_memory if over else None)

    def close(self) -> None:
        if self._watch is not None:
            self._watch.stop()
            self._watch = None
        super().close()
