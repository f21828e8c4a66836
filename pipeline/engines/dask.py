"""The Dask engine: tasks go to a Dask cluster through the scheduler every engine shares (`_schedule`), so
a lost worker is blamed, isolated and retried by one rule everywhere, and tiny tasks share a Dask task.

A chunk's data never leaves the worker that reads it; what a task returns (a receipt for a written part, a
partial aggregate) is small and is fetched as soon as the task finishes, then released on the cluster. So a
worker that dies loses nothing finished: Dask would otherwise recompute the results it held, and such a
recompute dying with its worker would fail a downstream task that did nothing wrong. The private cluster
runs with `allowed-failures` 0, so each worker death reaches the shared scheduler, which counts the
attempts (`[engine] retries`); a cluster by address counts with its own `allowed-failures` first.

- no address: a private `LocalCluster` on 127.0.0.1 (one single-threaded worker process per `workers`),
  closed by `close()`;
- `address="tcp://HOST:PORT"` or `"tls://HOST:PORT"`: a client of an existing scheduler, never shut down
  (`security`, from `[engine.security]`, gives the TLS client certificates);
- `client=`: an existing `distributed.Client` (a notebook's), left open.

On Ctrl-C the private cluster's workers kill the external programs their tasks started (`pipeline.children`),
as on `processes`. On a cluster reached by address or client the run waits for its tasks in flight, whose
programs end by themselves or at their timeout.

Tasks travel as cloudpickle bytes (`_payload.Packer`): Dask's serializer does not honour modules registered
with `cloudpickle.register_pickle_by_value` for nested objects, so the bytes are what carry a user's
module to workers that cannot import it. Workers need only this framework installed.
"""

from __future__ import annotations

import itertools
import ipaddress
import logging
import os
import secrets
import time
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any
from urllib.parse import urlsplit

import dask
import distributed
from distributed.scheduler import KilledWorker
from distributed.core import Status
from distributed.deploy.cluster import Cluster
from distributed.security import Security

from pipeline import children
from pipeline.engines import check_options, default_workers
from pipeline.engines._payload import Packer, run_packed_batch
from pipeline.engines._schedule import BatchSizer, Item, Lost, run_plan
from pipeline.engines.local import (DEFAULT_RETRIES, IN_FLIGHT_PER_WORKER, WORKER_INTERRUPT, _main_hidden,
                                    children_ignore_sigint, children_killed_on_interrupt, interrupt_processes)
from pipeline.engines.memory import worker_limit
from pipeline.errors import ConfigError, PipelineError
from pipeline.io import polars_read
from pipeline.plan import Plan, Task

CONNECT_TIMEOUT = 10.0
RESTART_WAIT = 60.0  # seconds a lost worker may take to be back before suspects run on what is left
SECURITY_KEYS = {"ca_file", "cert_file", "key_file", "require_encryption"}
OPTIONS = {"security", "retries", "connect_timeout", "client", "worker_memory"}


class _QuietFailures(distributed.WorkerPlugin):
    """In the private cluster's workers: drop the records Dask logs for every task that raised, and for a
    heartbeat that found the scheduler gone (it lives in the driver, so that is the driver stopping, as on
    Ctrl-C). Those workers write to the user's terminal, where each would be a traceback; the run reports the
    first failure itself, once. A cluster reached by address keeps its own logs."""

    def setup(self, worker: distributed.Worker) -> None:
        logging.getLogger("distributed.worker").addFilter(_not_ours_to_show)


_NOT_OURS = ("Compute Failed", "Failed to communicate with scheduler during heartbeat")


def _not_ours_to_show(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(_NOT_OURS)


class _ProgramsStoppable(distributed.WorkerPlugin):
    """In the private cluster's workers: kill the external programs tasks started when the driver says the
    run is interrupted (`WORKER_INTERRUPT`); the workers ignore Ctrl-C itself. Set up in the worker's main
    thread, where its event loop runs, so the signal is handled while a task's thread waits on its program."""

    def setup(self, worker: distributed.Worker) -> None:
        children.on_signal(WORKER_INTERRUPT)


class _ReadsWithPolars(distributed.WorkerPlugin):
    """In the private cluster's worker processes: decode Parquet with Polars where it may (`polars_read`), with
    the worker's share of the cores, as the processes engine's workers do."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def setup(self, worker: distributed.Worker) -> None:
        os.environ.setdefault("POLARS_MAX_THREADS", str(self.threads))  # read when Polars is imported
        polars_read.enable()


class _PrivateCluster(distributed.LocalCluster):
    """The private cluster: its nannies restart their workers for as long as it runs. A `LocalCluster` closes
    a worker's nanny for good when that worker has been gone `lost-worker-timeout` (15 s) after any removal,
    which a chunk that kills every worker it lands on makes likely; the cluster would shrink with each one."""

    def _update_worker_status(self, op: str, msg: Any) -> None:
        Cluster._update_worker_status(self, op, msg)  # the bookkeeping, without that timer


class DaskEngine:
    """Runs plans on a Dask cluster: a private local one, or one reached by `address` or `client`."""

    name = "dask"

    def __init__(self, workers: int | None = None, address: str | None = None, **options: Any) -> None:
        check_options("dask", options, OPTIONS)
        self.workers = default_workers(workers)
        self.address = address
        self.connect_timeout = float(options.get("connect_timeout", CONNECT_TIMEOUT))
        self.security = _security(options.get("security"))
        self.retries = int(options.get("retries", DEFAULT_RETRIES))
        self.worker_memory = options.get("worker_memory")  # the private cluster's nanny limit
        self._worker_memory: int | None = None  # in force: only the private cluster's is known here
        self._client: distributed.Client | None = options.get("client")
        self._owns_client = self._client is None
        self._cluster: _PrivateCluster | None = None
        self._interrupted = False  # the private cluster's workers kill every program they start, until resumed
        if self._client is not None and address is not None:
            raise ConfigError("engine: give the dask engine an address or a client, not both")

    def _connect(self) -> distributed.Client:
        """The client, created on first use so that building an engine costs nothing."""
        if self._client is not None:
            return self._client
        if self.address is None:
            self._client = self._start_local()
            return self._client
        import ssl

        _warn_if_plaintext(self.address)
        unreachable = f"cannot reach the Dask scheduler at {self.address}"
        if (
            self.address.startswith("tls://")
            and self.security is None
            and Security().get_connection_args("client").get("ssl_context") is None  # none in Dask's own config
        ):
            raise PipelineError(
                f"{unreachable}: a tls:// scheduler needs this client's certificates: give ca_file, cert_file "
                "and key_file in [engine.security]"
            )
        # Built in two steps so that a client that failed to connect is closed here. Left to the garbage
        # collector, it would close at exit, after its event loop has stopped: a wait of twice the timeout,
        # then a traceback.
        client = distributed.Client.__new__(distributed.Client)
        try:
            client.__init__(self.address, timeout=self.connect_timeout, security=self.security, set_as_default=False)
        except Exception as exc:  # noqa: BLE001 - refused, timed out, bad handshake: all mean unreachable
            try:
                client.close(timeout=self.connect_timeout)
            except Exception:  # noqa: BLE001 - half-built: whatever it has is released as far as possible
                pass
            reason, cause, seen = str(exc), exc, set()
            while cause is not None and not isinstance(cause, ssl.SSLError) and id(cause) not in seen:
                seen.add(id(cause))
                cause = cause.__cause__ or cause.__context__
            cause = cause if isinstance(cause, ssl.SSLError) else None
            if isinstance(cause, ssl.SSLCertVerificationError):
                reason = (
                    f"the scheduler's TLS certificate is not signed by the CA in engine.security.ca_file "
                    f"({cause.verify_message})"
                )
            elif cause is not None or (self.address.startswith("tls://") and "SSL" in reason):
                # the SSL error may be only in the message (a closed stream can stand between them)
                detail = str(cause) if cause is not None else reason[reason.index("SSL") :].partition(": ")[2]
                reason = (
                    f"the scheduler refused the TLS handshake ({detail or reason}): is engine.security.cert_file "
                    "signed by the CA the cluster trusts?"
                )
            raise PipelineError(f"{unreachable}: {reason}") from None
        self._client = client
        return self._client

    def _start_local(self) -> distributed.Client:
        # Hide the user's script from spawned workers, as the processes engine does: scripts and
        # notebooks rarely guard their top level with `if __name__ == "__main__"`.
        # A dead worker fails its tasks at once (allowed-failures 0) so the shared scheduler counts the
        # attempts, as on every engine; the nanny stops a worker over its memory limit.
        self._worker_memory = worker_limit(self.worker_memory, self.workers)
        with _main_hidden(), children_ignore_sigint(), dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            self._cluster = _PrivateCluster(
                n_workers=self.workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                memory_limit=self._worker_memory or 0,
                # No dashboard, but the scheduler's health/metrics server still listens: loopback, any port.
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            )
        client = distributed.Client(self._cluster, set_as_default=False)
        client.register_plugin(_QuietFailures(), name="pipeline-quiet-failures")
        client.register_plugin(_ProgramsStoppable(), name="pipeline-programs-stoppable")
        threads_each = max(1, (os.cpu_count() or 1) // self.workers)
        client.register_plugin(_ReadsWithPolars(threads_each), name="pipeline-reads-with-polars")
        return client

    def run(self, plan: Plan, on_done: Callable[[Task], None] | None = None) -> Any:
        """Submit tasks once their dependencies have finished, through the scheduler every engine shares, so
        a lost worker is blamed and retried by the same rule. Each task's small result comes back as it
        finishes (see the module docstring) and goes to its dependents with them."""
        client = self._connect()
        if self._interrupted:  # the last run was: its workers may start programs again
            client.run(children.resume)
            self._interrupted = False
        run_token = secrets.token_hex(6)  # two runs on one cluster must not share keys
        packer = Packer()  # the plan's shared objects (source, stages, sink) are pickled once per run
        sent = itertools.count()

        def submit(items: list[Item]) -> Future:
            first = items[0][0].key
            key = f"{first}-{run_token}-{next(sent)}"  # a retry is a new key: Dask forgets a failed one
            batch = [(packer.pack(task), deps) for task, deps in items]
            return _awaited(client.submit(run_packed_batch, batch, key=key, pure=False), first)

        accounted: set[int] = set()  # worker pids the nannies stopped for memory, seen by an earlier failure

        def recover(error: BaseException) -> Lost | None:
            """A lost worker; over its memory limit when its nanny stopped it for that, or (a result lost
            after its task finished, which names no worker) when a nanny stopped one since the last failure:
            a suspect runs alone, so that was its worker."""
            if not isinstance(error, (KilledWorker, _ResultLost)):
                return None
            over = False
            if self._cluster is not None:
                stopped = _stopped_for_memory(self._cluster)
                pid = getattr(getattr(error, "last_worker", None), "pid", None)
                over = pid in stopped if isinstance(error, KilledWorker) else bool(stopped - accounted)
                accounted.update(stopped)
            self._await_workers(client)
            return Lost(exact=False, limit=self._worker_memory if over else None)

        in_flight = IN_FLIGHT_PER_WORKER * max(1, sum(client.nthreads().values()))
        # each Dask task costs a round trip through the scheduler: tiny tasks share one, as on `processes`
        try:
            with children_killed_on_interrupt(self._interrupt_workers):
                return run_plan(plan, submit, in_flight, on_done, recover, self.retries, BatchSizer())
        except KeyboardInterrupt:
            self._interrupted = self._cluster is not None
            raise

    def _interrupt_workers(self) -> None:
        """On Ctrl-C: the private cluster's workers kill their programs (its nannies, in this process, know
        their pids)."""
        if self._cluster is not None:
            processes = (getattr(nanny, "process", None) for nanny in list(self._cluster.workers.values()))
            interrupt_processes(p.pid for p in processes if getattr(p, "pid", None))

    def _await_workers(self, client: distributed.Client) -> None:
        """After a worker died, wait (bounded) until a worker is ready to take a suspect: on the private
        cluster, one whose nanny has finished restarting it. A suspect does not wait for every worker: it
        runs alone anyway."""
        deadline = time.monotonic() + RESTART_WAIT
        while time.monotonic() < deadline:
            nannies = list(self._cluster.workers.values()) if self._cluster is not None else []
            ready = any(getattr(getattr(n, "process", None), "status", None) == Status.running for n in nannies)
            if (ready or self._cluster is None) and client.nthreads():
                return
            time.sleep(0.05)

    def close(self) -> None:
        """Close what this engine started: its client (not a given one) and its local cluster."""
        if self._client is not None and self._owns_client:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def __enter__(self) -> "DaskEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ResultLost(Exception):
    """A task's result was lost with a worker before it could be fetched: a lost worker, like `KilledWorker`."""


def _awaited(future: distributed.Future, key: str) -> Future:
    """A concurrent future of `(the tasks' values, their timing)` once the Dask task has finished, or of its
    failure. The values (receipts and partial aggregates: small) are fetched at once and released on the cluster, so a
    worker that dies later loses nothing finished: Dask would otherwise recompute it, and a recompute that
    lost its worker would fail a task downstream that did nothing wrong. The future is running from the
    start, so after a failure the scheduler waits for it rather than cancelling it: a Dask task cannot be
    interrupted, and the caller removes the staging folder, which nothing may still be writing to."""
    settled: Future = Future()
    settled.set_running_or_notify_cancel()

    def settle(done: distributed.Future) -> None:
        try:
            if done.status == "finished":
                settled.set_result(done.result())
                return
            error = done.exception() if done.status == "error" else None
        except BaseException as exc:  # noqa: BLE001 - lost or cancelled meanwhile: reported as it is
            error = exc
        finally:
            done.release()
        if error is None or done.status in ("lost", "cancelled"):  # its result went with a worker
            error = _ResultLost(f"Dask reports task {key} as {done.status}")
        settled.set_exception(error)

    future.add_done_callback(settle)
    return settled


def _stopped_for_memory(cluster: _PrivateCluster) -> set[int]:
    """The pids of the workers the private cluster's nannies last stopped for going over their memory limit.
    The nannies live in this process and record the pid before stopping it, so this is known at once (their
    report to the scheduler travels on another connection and can come after the task's failure)."""
    pids = (getattr(getattr(n, "memory_manager", None), "_last_terminated_pid", None) for n in cluster.workers.values())
    return {pid for pid in pids if isinstance(pid, int) and pid > 0}


def _security(options: Mapping[str, Any] | None) -> Security | None:
    """`[engine.security]` (ca_file, cert_file, key_file, require_encryption) as a Dask `Security`."""
    if not options:
        return None
    unknown = set(options) - SECURITY_KEYS
    if unknown:
        raise ConfigError(
            f"engine.security: unknown key(s) {', '.join(sorted(unknown))}; expected {', '.join(sorted(SECURITY_KEYS))}"
        )
    files = {"ca_file": "tls_ca_file", "cert_file": "tls_client_cert", "key_file": "tls_client_key"}
    for key in files:
        if key not in options:
            raise ConfigError(f"engine.security.{key} is required for TLS")
        if not os.path.isfile(options[key]):
            raise ConfigError(f"engine.security.{key}: no such file {options[key]}")
    return Security(
        require_encryption=bool(options.get("require_encryption", True)),
        **{name: options[key] for key, name in files.items()},
    )


def _warn_if_plaintext(address: str) -> None:
    """A plaintext scheduler is open to anyone who can reach it; say so unless it is loopback-only."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme != "tcp":
        return
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        warnings.warn(
            f"connecting to the Dask scheduler at {address} without encryption: anyone who can reach the "
            "scheduler can run code on it and on its workers, and task data travels in the clear. "
            "Use a tls:// address and give certificates in [engine.security] (ca_file, cert_file, key_file).",
            UserWarning,
            stacklevel=4,
        )
