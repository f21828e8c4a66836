"""Built-in stages that wait on the network: `fetch` downloads the URL in each row.

Requests run on threads inside the worker (`pipeline.waiting.map_ordered`): a worker keeps many in flight
while its CPU would otherwise sit idle, and the engines' processes multiply that. Retries with backoff, on
429/5xx answers and on connection errors, are urllib3's. Reference it from a config as
``uses = "stages.io:fetch"``.

Each call makes its own connection pool and closes it before returning, rather than caching one per worker
process: nothing (no socket, no pool) outlives the call, a pool is never inherited by a forked worker, and the
pool is sized by the call's own `concurrency`. Connections are still reused across the rows of a chunk, so a
handshake is paid once per connection per chunk.
"""

from __future__ import annotations

import email.message
import functools
import logging
from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple

import pandas as pd
import pyarrow as pa
import urllib3
from urllib3.exceptions import (ConnectTimeoutError, HTTPError, LocationParseError, MaxRetryError,
                                NameResolutionError, NewConnectionError, ReadTimeoutError)

from pipeline.stage import declare
from pipeline.waiting import map_ordered, worker_rate
from stages._checks import is_number, require_columns

BODIES = ("text", "bytes")
ON_ERROR = ("raise", "null")
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})  # worth asking again: busy, or failing for now

log = logging.getLogger(__name__)


def _not_a_retry(record: logging.LogRecord) -> bool:
    """urllib3 logs each retry as a warning, which Python prints when nothing configured logging: a chunk whose
    rows are retried would flood the terminal. `fetch` names the retries in its own errors instead."""
    return not str(record.msg).startswith("Retrying")


logging.getLogger("urllib3.connectionpool").addFilter(_not_a_retry)


class FetchError(Exception):
    """A row's URL could not be downloaded; the message names the URL, why, and the row."""


class Row(NamedTuple):
    position: int  # in the chunk
    label: Hashable  # in the chunk's index
    url: object

    def __str__(self) -> str:
        return f"row {self.position} of the chunk, index {self.label!r}"


def _check(column: object, **params: Any) -> None:
    """The params' checks, when the pipeline is validated (before any data is read)."""
    if not isinstance(column, str) or not column:
        raise ValueError(f"fetch: column must be a column name, got {column!r}")
    _check_params(**params)


@declare(check=_check)
def fetch(df: pd.DataFrame, column: str, output: str = "content", body: str = "text", concurrency: int = 16,
          timeout: float = 10.0, retries: int = 3, backoff: float = 0.1, rate: float | None = None,
          on_error: str = "raise", headers: Mapping[str, str] | None = None, base: str | None = None
          ) -> pd.DataFrame:
    """Download the URL in ``column`` of each row into ``output``, rows kept in order.

    ``body="text"`` gives strings decoded by the response's charset (default UTF-8, undecodable bytes
    replaced); ``"bytes"`` gives the raw bytes. Up to ``concurrency`` requests are in flight per chunk, and at
    most ``rate`` start per second in each worker process. Each request gets ``timeout`` seconds to connect
    and to each read; answers 429/500/502/503/504 (honouring Retry-After) and connection errors are retried
    ``retries`` times, waiting longer each time (``backoff`` × 2ⁿ seconds). Null URLs give null. A failing
    row (after its retries, any answer but 2xx) raises ``FetchError`` naming the URL, the reason and the row,
    or with ``on_error="null"`` gets null; a malformed URL raises ValueError before any request, or gets null.
    ``headers`` are sent with every request. With ``base``, the column holds paths, each appended to it.

    >>> fetch(pd.DataFrame({"url": [None]}), "url")["content"].isna().tolist()
    [True]
    >>> fetch(pd.DataFrame({"url": ["a/b"]}), "url")
    Traceback (most recent call last):
    ValueError: fetch: malformed URL 'a/b' (row 0 of the chunk, index 0): no scheme (http:// or https://)
    """
    _check_params(output, body, concurrency, timeout, retries, backoff, rate, on_error, headers, base)
    require_columns(df, [column], "fetch")
    rows, malformed = _rows(df[column], base)
    if malformed and on_error == "raise":
        raise ValueError(malformed[0])
    got = _download(rows, body, concurrency, timeout, retries, backoff, rate, on_error == "null", headers)
    values: list[Any] = [None] * len(df)
    for row, value in zip(rows, got):
        values[row.position] = None if isinstance(value, FetchError) else value
    failures = malformed + [str(value) for value in got if isinstance(value, FetchError)]
    if failures:
        log.info("fetch: %d of %d rows left null; the first: %s", len(failures), len(df), failures[0])
    out = df.copy(deep=False)
    out[output] = _column(values, body)
    return out


def _download(rows: list[Row], body: str, concurrency: int, timeout: float, retries: int, backoff: float,
              rate: float | None, keep_going: bool, headers: Mapping[str, str] | None) -> list[Any]:
    """Each row's body, or (`keep_going`) its FetchError; the connections are closed whatever happens."""
    http = _pool_manager(concurrency, timeout, retries, backoff, headers)
    get = functools.partial(_get, http, body, timeout, retries)
    try:
        return map_ordered(_returning_errors(get) if keep_going else get, rows, concurrency,
                           worker_rate("stages.io:fetch", rate) if rate else None)
    except FetchError as exc:  # raised again here: the pool threads' frames would only bury the message
        raise FetchError(str(exc)) from None
    finally:
        _close(http)


def _close(http: urllib3.PoolManager) -> None:
    """Close every pool's connections: `PoolManager.clear` only forgets the pools, so their sockets would stay
    open until the garbage collector finds them (long, when a failure's traceback holds them in a cycle)."""
    for key in http.pools.keys():
        http.pools[key].close()
    http.clear()


def _pool_manager(concurrency: int, timeout: float, retries: int, backoff: float,
                  headers: Mapping[str, str] | None) -> urllib3.PoolManager:
    retry = urllib3.util.Retry(
        total=retries, connect=retries, read=retries, status=retries, backoff_factor=backoff,
        status_forcelist=RETRY_STATUSES, allowed_methods={"GET"}, respect_retry_after_header=True,
        raise_on_status=False,  # the last answer comes back, so its status can be named
    )
    return urllib3.PoolManager(maxsize=concurrency, block=True, retries=retry, headers=dict(headers or {}),
                               timeout=urllib3.Timeout(connect=timeout, read=timeout))


def _get(http: urllib3.PoolManager, body: str, timeout: float, retries: int, row: Row) -> str | bytes:
    try:
        response = http.request("GET", row.url)
    except MaxRetryError as exc:
        raise FetchError(f"GET {row.url}: {_reason(exc.reason, timeout)}{_after(retries)} ({row})") from None
    except HTTPError as exc:
        raise FetchError(f"GET {row.url}: {_reason(exc, timeout)} ({row})") from None
    if not 200 <= response.status < 300:
        tried = len(response.retries.history) if response.retries else 0
        raise FetchError(f"GET {row.url}: HTTP {response.status} {response.reason}{_after(tried)} ({row})")
    return response.data if body == "bytes" else _text(response)


def _returning_errors(get: Callable[[Row], Any]) -> Callable[[Row], Any]:
    """`get`, giving back the FetchError of a failing row rather than raising it (for `on_error="null"`)."""

    def call(row: Row) -> Any:
        try:
            return get(row)
        except FetchError as exc:
            return exc

    return call


def _reason(error: BaseException | None, timeout: float) -> str:
    """Why a request got no answer, in words: the cause urllib3 wraps, not its pool's repr."""
    cause = getattr(error, "__cause__", None)
    detail = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause or error)
    if isinstance(error, NameResolutionError):
        return f"name resolution failed ({detail})"
    if isinstance(error, NewConnectionError):
        return f"cannot connect ({detail})"
    if isinstance(error, ConnectTimeoutError):
        return f"timed out connecting (timeout {timeout:g} s)"
    if isinstance(error, ReadTimeoutError):
        return f"timed out waiting for the response (timeout {timeout:g} s)"
    return str(error)


def _after(retries: int) -> str:
    return "" if retries == 0 else f" after {retries} {'retry' if retries == 1 else 'retries'}"


def _text(response: urllib3.BaseHTTPResponse) -> str:
    """The body decoded as its Content-Type says; a stray byte is replaced rather than failing the row."""
    message = email.message.Message()
    message["Content-Type"] = response.headers.get("Content-Type", "")
    try:
        return response.data.decode(message.get_content_charset() or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return response.data.decode("utf-8", errors="replace")


def _column(values: list[Any], body: str) -> Any:
    """The same type in every chunk, also in one whose rows are all null: strings, or Arrow binary. An array,
    not a Series, so it goes in by position whatever the index."""
    return pd.array(values, dtype="str" if body == "text" else pd.ArrowDtype(pa.binary()))


def _rows(urls: pd.Series, base: str | None) -> tuple[list[Row], list[str]]:
    """The rows to fetch, and a message for each malformed URL (null ones are neither)."""
    rows, malformed = [], []
    for position, (label, url) in enumerate(urls.items()):
        if pd.api.types.is_scalar(url) and pd.isna(url):
            continue
        if base is not None and isinstance(url, str):
            url = f"{base.rstrip('/')}/{url.lstrip('/')}"
        row = Row(position, label, url)
        problem = _malformed(url)
        if problem:
            malformed.append(f"fetch: malformed URL {url!r} ({row}): {problem}")
        else:
            rows.append(row)
    return rows, malformed


def _malformed(url: object) -> str:
    """What is wrong with `url` ('' if nothing)."""
    if not isinstance(url, str):
        return f"not a string but {type(url).__name__}"
    try:
        parsed = urllib3.util.parse_url(url)
    except LocationParseError as exc:
        return str(exc)
    if parsed.scheme is None:
        return "no scheme (http:// or https://)"
    if parsed.scheme not in ("http", "https"):
        return f"scheme {parsed.scheme!r} is not http or https"
    return "" if parsed.host else "no host"


def _check_params(output: object, body: object, concurrency: object, timeout: object, retries: object,
                  backoff: object, rate: object, on_error: object, headers: object, base: object) -> None:
    """Clear errors for params a config got wrong, before any request."""
    if not isinstance(output, str) or not output:
        raise ValueError(f"fetch: output must be a column name, got {output!r}")
    if body not in BODIES:
        raise ValueError(f"fetch: body must be one of {', '.join(map(repr, BODIES))}, got {body!r}")
    if on_error not in ON_ERROR:
        raise ValueError(f"fetch: on_error must be one of {', '.join(map(repr, ON_ERROR))}, got {on_error!r}")
    for name, value, least in (("concurrency", concurrency, 1), ("retries", retries, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"fetch: {name} must be a whole number of at least {least}, got {value!r}")
    if not is_number(timeout, allow_zero=False):
        raise ValueError(f"fetch: timeout must be a positive number of seconds, got {timeout!r}")
    if not is_number(backoff, allow_zero=True):
        raise ValueError(f"fetch: backoff must be a number of seconds, 0 or more, got {backoff!r}")
    if rate is not None and not is_number(rate, allow_zero=False):
        raise ValueError(f"fetch: rate must be a positive number of requests per second, or left out, got {rate!r}")
    if headers is not None and not (isinstance(headers, Mapping)
                                    and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())):
        raise ValueError(f"fetch: headers must be a table of names to text values, got {headers!r}")
    if base is not None and _malformed(base):
        raise ValueError(f"fetch: base must be an http:// or https:// URL, got {base!r}: {_malformed(base)}")
