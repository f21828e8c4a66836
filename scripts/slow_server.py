"""A small, slow HTTP server for the tests and the benchmark of stages that wait on the network.

    python scripts/slow_server.py [--port 0] [--delay 0.05] [--max-requests N] [--idle-exit SECONDS] [--root DIR]

One asyncio loop serves many concurrent slow requests with little CPU, over HTTP/1.1 with keep-alive. It binds
127.0.0.1 only and prints one line, `http://127.0.0.1:PORT`, once listening, so a parent reads the address. It
stops by itself after `--max-requests` requests (/stats too), after `--idle-exit` seconds without one, or on
SIGTERM/SIGINT.

Routes (GET): `/files/NAME` (a file under `--root`), `/text/ANYTHING` (ANYTHING, url-decoded, as text),
`/stats` (counters as JSON) and `/stats/reset`. Query parameters on any route:
`delay=SECONDS` (before answering; default `--delay`), `status=CODE` (answer with that status),
`fail=N` (the first N requests to this exact path and query answer 503, or `status` if given; later ones
succeed), `retry_after=SECONDS` (a Retry-After header on failures), `hang=1` (never answer, until the client
goes away).

In a test, `with serving(delay=0.01) as url: ...` runs it as a subprocess and stops it on leaving.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

MAX_HEADER_LINES = 100


@dataclass
class Stats:
    """What the server has seen: `/stats` answers these, `/stats/reset` starts them over."""

    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    by_path: Counter = field(default_factory=Counter)

    def reset(self) -> None:
        self.requests, self.max_in_flight, self.by_path = 0, self.in_flight, Counter()

    def as_json(self) -> dict:
        return {"requests": self.requests, "in_flight": self.in_flight, "max_in_flight": self.max_in_flight,
                "by_path": dict(self.by_path)}


@dataclass
class Response:
    """What to answer; Content-Length and Connection are added when it is written."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


class Server:
    """The routes, the counters, and when to stop."""

    def __init__(self, delay: float, max_requests: int, idle_exit: float, root: Path | None) -> None:
        self.delay, self.max_requests, self.idle_exit = delay, max_requests, idle_exit
        self.root = root.resolve() if root else None
        self.stats = Stats()
        self.served = 0  # every request, /stats included, for --max-requests
        self.busy = 0  # requests being answered that do not hang: the server is not idle while there are any
        self.last_activity = time.monotonic()
        self.stopping = asyncio.Event()

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Requests one after another on one connection, until the client closes it or asks to."""
        try:
            while not self.stopping.is_set():
                request = await read_request(reader)
                if request is None:
                    break
                method, target, headers = request
                keep_alive = headers.get("connection", "").lower() != "close"
                if not await self.exchange(method, target, reader, writer, keep_alive) or not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass  # a client gone or talking nonsense: its connection ends, the server goes on
        except asyncio.CancelledError:
            pass  # the server stopping: ended quietly (Python 3.11 logs a cancelled connection task as an error)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def exchange(self, method: str, target: str, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter, keep_alive: bool) -> bool:
        """Answer one request, counted in flight from its arrival until its response is sent (/stats aside);
        False if it hung until the client went away."""
        self.served += 1
        self.last_activity = time.monotonic()
        path = urlsplit(target).path
        observed = path not in ("/stats", "/stats/reset")
        if observed:
            self.stats.requests += 1
            self.stats.by_path[target] += 1
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        try:
            response = await self.answer(method, target, reader) if observed else self.report(path)
            if response is None:
                return False
            writer.write(encode(response, keep_alive))
            await writer.drain()
        finally:
            if observed:
                self.stats.in_flight -= 1
        self.finished()
        return True

    def report(self, path: str) -> Response:
        if path == "/stats/reset":
            self.stats.reset()
        return Response(200, json.dumps(self.stats.as_json()).encode(), "application/json")

    async def answer(self, method: str, target: str, reader: asyncio.StreamReader) -> Response | None:
        """Hang, or wait the delay and answer as the query asks (400 if it cannot be read)."""
        query = {key: values[-1] for key, values in parse_qs(urlsplit(target).query).items()}
        if query.get("hang") == "1":
            await reader.read()  # until the client closes its end
            return None
        try:
            return await self.delayed(method, target, query)
        except ValueError as exc:
            return Response(400, f"bad query: {exc}\n".encode())

    async def delayed(self, method: str, target: str, query: dict[str, str]) -> Response:
        self.busy += 1
        try:
            await asyncio.sleep(float(query.get("delay", self.delay)))
        finally:
            self.busy -= 1
        if method != "GET":
            return Response(405, b"only GET\n", headers={"Allow": "GET"})
        response = self.failure(target, query) or self.route(urlsplit(target).path)
        if response.status >= 400 and "retry_after" in query:
            response.headers["Retry-After"] = query["retry_after"]
        return response

    def failure(self, target: str, query: dict[str, str]) -> Response | None:
        """The status asked for: every time with `status` alone, the first `fail` times with `fail`."""
        status = int(query.get("status", 503 if "fail" in query else 200))
        if "fail" in query and self.stats.by_path[target] > int(query["fail"]):
            return None
        if status == 200:
            return None
        return Response(status, f"{status} {phrase(status)}\n".encode())

    def route(self, path: str) -> Response:
        if path.startswith("/text/"):
            return Response(200, unquote(path.removeprefix("/text/")).encode())
        if path.startswith("/files/") and self.root is not None:
            found = (self.root / unquote(path.removeprefix("/files/"))).resolve()
            if found.is_relative_to(self.root) and found.is_file():
                return Response(200, found.read_bytes(), "application/octet-stream")
        return Response(404, b"404 Not Found\n")

    def finished(self) -> None:
        """A response went out: stop after the last one allowed."""
        self.last_activity = time.monotonic()
        if self.served >= self.max_requests:
            self.stopping.set()

    async def watch_idle(self) -> None:
        """Stop once `idle_exit` seconds pass with no request arriving or being answered (hanging ones aside)."""
        while not self.stopping.is_set():
            await asyncio.sleep(min(self.idle_exit, 0.5))
            if self.busy == 0 and time.monotonic() - self.last_activity >= self.idle_exit:
                self.stopping.set()


async def read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]] | None:
    """(method, target, lower-cased headers) of the next request, its body read and dropped; None at the end."""
    line = await reader.readline()
    if not line.strip():
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADER_LINES):
        header = (await reader.readline()).decode("latin-1")
        if header in ("\r\n", "\n", ""):
            break
        name, _, value = header.partition(":")
        headers[name.strip().lower()] = value.strip()
    await reader.readexactly(int(headers.get("content-length", 0)))
    return method, target, headers


def phrase(status: int) -> str:
    with contextlib.suppress(ValueError):
        return HTTPStatus(status).phrase
    return "Status"


def encode(response: Response, keep_alive: bool) -> bytes:
    headers = {"Content-Type": response.content_type, "Content-Length": str(len(response.body)),
               **response.headers, "Connection": "keep-alive" if keep_alive else "close"}
    head = f"HTTP/1.1 {response.status} {phrase(response.status)}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (head + "\r\n").encode("latin-1") + response.body


async def serve(args: argparse.Namespace) -> None:
    server = Server(args.delay, args.max_requests, args.idle_exit, Path(args.root) if args.root else None)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.stopping.set)
    listener = await asyncio.start_server(server.connection, "127.0.0.1", args.port)
    print(f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}", flush=True)
    idle = asyncio.create_task(server.watch_idle())
    await server.stopping.wait()
    idle.cancel()
    listener.close()  # connections still open, hanging ones too, are cancelled as asyncio.run returns


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds before each answer")
    parser.add_argument("--max-requests", type=int, default=100_000, help="stop after this many requests (/stats too)")
    parser.add_argument("--idle-exit", type=float, default=60.0, help="stop after this many seconds without one")
    parser.add_argument("--root", default=None, help="the folder /files/NAME serves from")
    return parser.parse_args(argv)


@contextlib.contextmanager
def serving(delay: float = 0.05, root: str | Path | None = None, deadline: float = 30.0,
            **options: object) -> Iterator[str]:
    """Run the server as a subprocess and yield its base URL; on leaving, stop it and wait for it to end.
    `options` are the other flags by their Python names (`max_requests=10`, `idle_exit=5`)."""
    args = [sys.executable, __file__, "--delay", str(delay)] + (["--root", str(root)] if root else [])
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        yield read_address(proc, deadline)
    finally:
        proc.terminate()
        try:
            proc.wait(deadline)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def read_address(proc: subprocess.Popen, deadline: float) -> str:
    """The line the server prints once listening, or an error if it ends or takes `deadline` seconds first."""
    ready, _, _ = select.select([proc.stdout], [], [], deadline)
    line = proc.stdout.readline().strip() if ready else ""
    if not line.startswith("http://127.0.0.1:"):
        raise RuntimeError(f"slow_server did not start within {deadline:g} s (exit code {proc.poll()})")
    return line


if __name__ == "__main__":
    asyncio.run(serve(parse_args()))
