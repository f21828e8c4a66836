"""Stages that wait: calls that spend their time waiting on I/O (a web request, a database, a service) run on a
bounded thread pool inside the worker, so one worker keeps many calls in flight while its CPU would otherwise
sit idle. Threads are right for waiting because the GIL is released while a call waits; for computing, the
engines' processes (or cluster workers) are. The two combine: each worker process runs its own pool.

Results keep the order of the inputs, and nothing outlives the call: the pool is shut down before it returns,
pending calls cancelled when one fails.

>>> map_ordered(lambda x: x * 2, [1, 2, 3], concurrency=2)
[2, 4, 6]
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def map_ordered(call: Callable[[T], R], items: Iterable[T], concurrency: int,
                rate: "Rate | None" = None) -> list[R]:
    """`[call(item) for item in items]`, with up to `concurrency` calls at once (and at most `rate.per_second`
    started per second, if given). The first failure, in input order among those that ran, is raised once the
    calls in flight have ended; calls not yet started are cancelled."""
    items = list(items)
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency!r}")
    paced = call if rate is None else _paced(call, rate)
    if concurrency == 1 or len(items) < 2:
        return [paced(item) for item in items]
    failed = threading.Event()
    pool = ThreadPoolExecutor(min(concurrency, len(items)), thread_name_prefix="pipeline-io")
    try:
        futures = [pool.submit(_unless_failed, paced, item, failed) for item in items]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        if any(f.exception() is not None for f in done):
            for future in futures:
                future.cancel()
            wait(futures)
            _raise_first(futures)
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _NotStarted(Exception):
    """A call skipped because an earlier one failed."""


def _unless_failed(call: Callable[[T], R], item: T, failed: threading.Event) -> R:
    """`call(item)`, unless a call has failed already: the pool's threads stop taking calls at once, rather than
    when the waiting thread wakes up to cancel them."""
    if failed.is_set():
        raise _NotStarted
    try:
        return call(item)
    except BaseException:
        failed.set()
        raise


def _raise_first(futures: Sequence[Future]) -> None:
    for future in futures:
        if not future.cancelled() and not isinstance(future.exception(), (type(None), _NotStarted)):
            raise future.exception()  # type: ignore[misc]


def _paced(call: Callable[[T], R], rate: "Rate") -> Callable[[T], R]:
    def paced(item: T) -> R:
        rate.acquire()
        return call(item)

    return paced


class Rate:
    """At most `per_second` calls started per second, shared by every thread of this process that holds it
    (calls are spaced evenly, so there are no bursts at the start of each second)."""

    def __init__(self, per_second: float) -> None:
        if not per_second > 0:
            raise ValueError(f"rate must be a positive number of calls per second, got {per_second!r}")
        self.per_second = per_second
        self._lock = threading.Lock()
        self._next = 0.0

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + 1.0 / self.per_second
        if slot > now:
            time.sleep(slot - now)


_RATES: dict[tuple[str, float], Rate] = {}
_RATES_LOCK = threading.Lock()


def worker_rate(name: str, per_second: float) -> Rate:
    """The `Rate` named `name` in this worker process: every task of a stage that runs here shares it, so a
    limit of 10/s holds per worker however many chunks run at once (a threads engine runs several)."""
    with _RATES_LOCK:
        return _RATES.setdefault((name, float(per_second)), Rate(per_second))


def in_slices(fn: Callable[[Any], Any], batch: Any, concurrency: int, slice_rows: int | None = None) -> Any:
    """`fn(batch)` for a per-chunk function whose rows wait independently: the batch is cut into slices (of
    `slice_rows` rows, or `concurrency` equal ones), `fn` runs on them concurrently, and the results are
    concatenated in order. Any format but a lazy frame (a query, not rows)."""
    from pipeline.batch import format_of, rows

    total = rows(batch)
    if total is None:
        raise TypeError("io_concurrency needs rows to split; a polars-lazy stage cannot declare it")
    size = slice_rows or max(1, -(-total // concurrency))
    if total <= size:
        return fn(batch)
    kind = format_of(batch)
    slices = [_slice(batch, kind, start, size) for start in range(0, total, size)]
    return _concat(map_ordered(fn, slices, concurrency))


def _slice(batch: Any, kind: str, start: int, size: int) -> Any:
    return batch.iloc[start : start + size] if kind == "pandas" else batch.slice(start, size)


def _concat(parts: list[Any]) -> Any:
    from pipeline.batch import format_of

    kind = format_of(parts[0])
    if kind == "pandas":
        import pandas as pd

        return pd.concat(parts)
    if kind == "arrow":
        import pyarrow as pa

        return pa.concat_tables(parts, promote_options="default")
    import polars

    return polars.concat(parts, how="diagonal_relaxed")
