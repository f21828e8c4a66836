"""The Dask engine: every task becomes a Dask future whose dependencies are other futures, so Dask's
scheduler places tasks next to their inputs and intermediate results never pass through the driver.

- no address: a private `LocalCluster` on 127.0.0.1 (one single-threaded worker process per `workers`),
  closed by `close()`;
- `address="tcp://HOST:PORT"` or `"tls://HOST:PORT"`: a client of an existing scheduler, never shut down
  (`security`, from `[engine.security]`, gives the TLS client certificates);
- `client=`: an existing `distributed.Client` (a notebook's), left open.

Tasks travel as cloudpickle bytes (`_payload.Packer`): Dask's serializer does not honour modules registered
with `cloudpickle.register_pickle_by_value` for nested objects, so the bytes are what carry a user's
module to workers that cannot import it. Workers need only this framework installed.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import distributed
from distributed.scheduler import KilledWorker
from distributed.security import Security

from pipeline.engines import check_options, default_workers
from pipeline.engines._payload import Packer, run_packed
from pipeline.engines.local import _main_hidden, children_ignore_sigint
from pipeline.errors import ConfigError, PipelineError
from pipeline.plan import Plan, Task

CONNECT_TIMEOUT = 10.0
CANCEL_WAIT = 30.0
SECURITY_KEYS = {"ca_file", "cert_file", "key_file", "require_encryption"}
# `retries` is accepted for configs shared across engines, but a task whose worker died is re-run by the
# Dask scheduler itself (`distributed.scheduler.allowed-failures`, 3 by default); Dask's own task `retries`
# would also re-run a stage that raised, which must stay final.
OPTIONS = {"security", "retries", "connect_timeout", "client"}


class _QuietFailures(distributed.WorkerPlugin):
    """In the private cluster's workers: drop the record Dask logs for every task that raised. Those workers
    write to the user's terminal, where it would be one traceback per failed chunk; the run reports the
    first failure itself, once. A cluster reached by address keeps its own logs."""

    def setup(self, worker: distributed.Worker) -> None:
        logging.getLogger("distributed.worker").addFilter(_not_compute_failed)


def _not_compute_failed(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Compute Failed")


class DaskEngine:
    """Runs plans on a Dask cluster: a private local one, or one reached by `address` or `client`."""

    name = "dask"

    def __init__(self, workers: int | None = None, address: str | None = None, **options: Any) -> None:
        check_options("dask", options, OPTIONS)
        self.workers = default_workers(workers)
        self.address = address
        self.connect_timeout = float(options.get("connect_timeout", CONNECT_TIMEOUT))
        self.security = _security(options.get("security"))
        self._client: distributed.Client | None = options.get("client")
        self._owns_client = self._client is None
        self._cluster: distributed.LocalCluster | None = None
        if self._client is not None and address is not None:
            raise ConfigError("engine: give the dask engine an address or a client, not both")

    def _connect(self) -> distributed.Client:
        """The client, created on first use so that building an engine costs nothing."""
        if self._client is not None:
            return self._client
        if self.address is None:
            self._client = self._start_local()
            return self._client
        _warn_if_plaintext(self.address)
        try:
            self._client = distributed.Client(
                self.address, timeout=self.connect_timeout, security=self.security, set_as_default=False
            )
        except Exception as exc:  # noqa: BLE001 - refused, timed out, bad handshake: all mean unreachable
            raise PipelineError(f"cannot reach the Dask scheduler at {self.address}: {exc}") from None
        return self._client

    def _start_local(self) -> distributed.Client:
        # Hide the user's script from spawned workers, as the processes engine does: scripts and
        # notebooks rarely guard their top level with `if __name__ == "__main__"`.
        with _main_hidden(), children_ignore_sigint():
            self._cluster = distributed.LocalCluster(
                n_workers=self.workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                # No dashboard, but the scheduler's health/metrics server still listens: loopback, any port.
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            )
        client = distributed.Client(self._cluster, set_as_default=False)
        client.register_plugin(_QuietFailures(), name="pipeline-quiet-failures")
        return client

    def run(self, plan: Plan, on_done: Callable[[Task], None] | None = None) -> Any:
        """Submit every task in plan order; only the output's value is gathered."""
        client = self._connect()
        run_token = secrets.token_hex(6)  # two runs on one cluster must not share keys
        packer = Packer()  # the plan's shared objects (source, stages, sink) are pickled once per run
        task_of: dict[str, str] = {}
        futures: dict[str, distributed.Future] = {}
        depth: dict[str, int] = {}
        for task in plan:
            depth[task.key] = 1 + max((depth[d] for d in task.deps), default=-1)
            dask_key = f"{task.key}-{run_token}"
            task_of[dask_key] = task.key
            futures[task.key] = client.submit(
                run_packed,
                packer.pack(task),
                *(futures[d] for d in task.deps),
                key=dask_key,
                pure=False,
                priority=depth[task.key],  # ready combines before new chunks: partials merge early
            )
        output = futures[plan.output]
        pending = distributed.as_completed(list(futures.values()), loop=client.loop)
        futures.clear()  # Dask keeps what dependents still need; the driver holds no results
        try:
            for future in pending:
                if future.status != "finished":
                    _raise_failure(future, task_of[future.key])
                if on_done:
                    on_done(plan.tasks[task_of[future.key]])
            return output.result()
        except BaseException:
            remaining = list(pending.futures)
            if remaining:
                client.cancel(remaining, reason="pipeline run failed")
                _await_running(client, run_token)
            raise
        finally:
            pending.clear()
            del output

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


def _running_keys(token: str, dask_worker: Any = None) -> list[str]:
    """On a worker: this run's tasks still occupying a thread (cancelled ones included)."""
    tasks = getattr(getattr(dask_worker, "state", None), "all_running_tasks", ())
    return [str(ts.key) for ts in tasks if str(ts.key).endswith(token)]


def _await_running(client: distributed.Client, token: str, timeout: float = CANCEL_WAIT) -> None:
    """Wait (bounded) until no worker still runs a task of this run: Dask cannot interrupt a running task,
    and after a failure the caller removes the staging folder, which nothing may still be writing to."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not any(client.run(_running_keys, token).values()):
                return
        except Exception:  # noqa: BLE001 - a worker gone or unreachable: nothing more to wait for there
            return
        time.sleep(0.1)


def _raise_failure(future: distributed.Future, key: str) -> None:
    """Re-raise a task's own exception (same type and message as on every engine)."""
    if future.status != "error":
        raise PipelineError(f"Dask reports task {key} as {future.status} (was the scheduler restarted?)")
    try:
        future.result()
    except KilledWorker as exc:
        raise PipelineError(f"task {key} killed the Dask workers it ran on: {exc}") from None


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
