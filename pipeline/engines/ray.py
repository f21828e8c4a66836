"""The Ray engine: every task is a Ray task whose dependencies are other tasks' object references, so
results flow from worker to worker through Ray's object store and never through the driver.

- no address: a private local Ray on 127.0.0.1 (no dashboard, `workers` CPUs), shut down by `close()`;
- `address="HOST:PORT"` (a head's GCS), `"auto"` (the driver runs on a cluster node) or
  `"ray://HOST:PORT"` (Ray Client): the driver joins that cluster and `close()` only disconnects;
- Ray already initialised by the caller (a notebook): used as is and left alone (with an address, only
  if it is that cluster).

A head started with `ray start --head` has token authentication on whenever a token exists (a local
`ray.init` creates `~/.ray/auth_token`): the driver then needs `RAY_AUTH_MODE=token` in its environment
and the cluster's token, which Ray looks for in `RAY_AUTH_TOKEN`, then the file named by
`RAY_AUTH_TOKEN_PATH`, then `~/.ray/auth_token`. Ray sends a token to an explicit address only when told
to, so this engine does not guess either; a refused connection says what to set.

Tasks go through the scheduler the local engines share (`_schedule.run_plan`): a task is submitted once its
dependencies have finished, at most two Ray tasks per CPU of the cluster at a time, and tiny tasks share a
Ray task (each costs a round trip to the driver). A Ray task returns a tiny marker the driver waits on (the
batch's timing, or the failure) and then each task's real result, which only dependent tasks read. A Ray task
is never cancelled: `ray.cancel` on a task whose reply is arriving aborts the driver inside Ray, so a failed
or interrupted run starts no more tasks and lets the few in flight finish. Tasks travel as cloudpickle bytes
(`_payload.Packer`), since Ray's serializer does not honour modules registered by value for nested objects.

Ray never re-runs a task itself (`max_retries=0`): a worker runs one Ray task at a time, so a worker's
death is blamed exactly on the Ray task it ran, and the shared scheduler counts the attempts and isolates
the batch-mates of a task that died. Under `worker_memory`, a guard in each worker (`memory.guard`) ends a
worker over the limit, leaving a note in Ray's key-value store so the death is reported as memory.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import logging
import os
import secrets
import socket
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from pipeline.engines import check_options, default_workers, memory
from pipeline.engines._payload import Packer, Payload, run_packed_batch
from pipeline.engines._schedule import BatchSizer, Item, Lost, run_plan
from pipeline.engines.local import DEFAULT_RETRIES, IN_FLIGHT_PER_WORKER, children_ignore_sigint
from pipeline.errors import ConfigError, PipelineError
from pipeline.io import polars_read
from pipeline.plan import Plan, Task

CONNECT_TIMEOUT = 15.0
OPTIONS = {"retries", "connect_timeout", "log_to_driver", "worker_memory"}
AUTH_HINT = (
    "; if the cluster uses token authentication (the default for `ray start --head`), set RAY_AUTH_MODE=token "
    "and give its token in RAY_AUTH_TOKEN, in a file named by RAY_AUTH_TOKEN_PATH, or in ~/.ray/auth_token"
)


class _WorkerLost(Exception):
    """A Ray task whose worker process died. Ray runs one task at a time in a worker, so the death is known
    to be this Ray task's (an exact `Lost`); `note` is where a memory guard would have said it was memory."""

    def __init__(self, error: BaseException, note: str) -> None:
        super().__init__(str(error))
        self.error, self.note = error, note


def _run_marked(payloads: list[Payload], counts: list[int], note: str, limit: int | None, *dep_values: Any) -> tuple[Any, ...]:
    """Run packed tasks in order, each given the next `counts[i]` of `dep_values`. The first return value
    (the batch's timing) is a marker the driver reads for next to nothing; each task's result follows. Under a
    memory `limit`, a guard ends this worker over it, first leaving `note` in Ray's key-value store."""
    polars_read.enable()  # a Ray task runs in a worker process, never in the driver (see `polars_read`)
    if limit is not None:
        memory.guard(limit, lambda: _internal_kv()._internal_kv_put(note, b"1", overwrite=True))
    values = iter(dep_values)
    results, timing = run_packed_batch([(p, [next(values) for _ in range(n)]) for p, n in zip(payloads, counts)])
    return (timing, *results)


def _internal_kv() -> Any:
    from ray.experimental import internal_kv

    return internal_kv


class RayEngine:
    """Runs plans on Ray: a private local instance, or the cluster at `address`."""

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None, **options: Any) -> None:
        check_options("ray", options, OPTIONS)
        self.workers = default_workers(workers)
        self.address = address
        # per task, for lost workers, counted by the shared scheduler; a stage's own exception is never retried
        self.retries = int(options.get("retries", DEFAULT_RETRIES))
        # the default share is of this machine: a cluster by address is held to a limit only when one is given
        given = options.get("worker_memory")
        self.worker_memory = memory.worker_limit(given, self.workers) if given or address is None else None
        self.connect_timeout = float(options.get("connect_timeout", CONNECT_TIMEOUT))
        self.log_to_driver = bool(options.get("log_to_driver", True))
        self._owns_ray = False
        self._remote: Any = None
        if importlib.util.find_spec("ray") is None:
            raise ConfigError(
                "engine.name: the 'ray' engine needs 'ray', which is not installed (pip install 'pipeline[ray]')"
            )

    def _connect(self) -> Any:
        """Initialise Ray on first use (local or joined), unless the caller already has; return the task."""
        if self._remote is not None and _initialized():
            return self._remote
        if self.address is not None:
            self._check_reachable()
        if self.address is None or _on_loopback(self.address):
            # Read by Ray at import: without it Ray swaps 127.0.0.1 for the machine's outward address,
            # where a loopback-only Ray does not listen. Not for a remote cluster: there the driver must
            # advertise its real address.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        import ray

        if ray.is_initialized() and self.address not in (None, "auto"):
            joined = ray.get_runtime_context().gcs_address
            if joined != self.address:
                raise PipelineError(
                    f"Ray is already initialised in this process (cluster {joined}), so it cannot join "
                    f"{self.address}; call ray.shutdown() first, or run without an address to use it"
                )
        if not ray.is_initialized():
            common = {"logging_level": logging.WARNING, "log_to_driver": self.log_to_driver}
            if self.address is None:
                # "local": always a new private instance, never one RAY_ADDRESS or `ray start` points at.
                with children_ignore_sigint():
                    ray.init(
                        "local", num_cpus=self.workers, include_dashboard=False, _node_ip_address="127.0.0.1", **common
                    )
            else:
                try:
                    ray.init(address=self.address, **common)
                except Exception as exc:  # noqa: BLE001 - Ray raises many types here; all mean "cannot join"
                    hint = AUTH_HINT if os.environ.get("RAY_AUTH_MODE") != "token" else ""
                    raise PipelineError(f"cannot join the Ray cluster at {self.address}: {exc}{hint}") from None
            self._owns_ray = True
        self._remote = ray.remote(_run_marked)
        return self._remote

    def _check_reachable(self) -> None:
        """Fail fast on an address nobody listens on (Ray itself retries for about 20 s)."""
        target = self.address.removeprefix("ray://") if self.address else "auto"
        if target == "auto" or "://" in target:
            return
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"engine.address: expected HOST:PORT, auto or ray://HOST:PORT, got {self.address!r}")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=self.connect_timeout).close()
        except OSError as exc:
            raise PipelineError(f"cannot reach the Ray cluster at {self.address}: {exc}") from None

    def run(self, plan: Plan, on_done: Callable[[Task], None] | None = None) -> Any:
        """Submit tasks as their dependencies finish (dependencies as object references); fetch only the
        output."""
        remote = self._connect()
        import ray

        packer = Packer()  # the plan's shared objects (source, stages, sink) are pickled once per run
        run_token = secrets.token_hex(6)
        limit = self.worker_memory

        def submit(items: list[Item]) -> Future:
            key = items[0][0].key
            note = f"pipeline-memory:{run_token}:{key}"
            # max_retries=0: the shared scheduler retries a task whose worker died, isolating suspects first
            marker, *results = remote.options(name=key, num_returns=1 + len(items), max_retries=0).remote(
                [packer.pack(task) for task, _ in items], [len(refs) for _, refs in items], note, limit,
                *(ref for _, refs in items for ref in refs),
            )
            return _awaited(ray, marker, results, key, note)

        def recover(error: BaseException) -> Lost | None:
            if not isinstance(error, _WorkerLost):
                return None
            kv = _internal_kv()
            over = kv._internal_kv_get(error.note) is not None
            if over:
                kv._internal_kv_del(error.note)
            node_lost = isinstance(error.error, ray.exceptions.NodeDiedError)  # every task on it failed at once
            return Lost(exact=not node_lost, limit=limit if over else None)

        cpus = int(ray.cluster_resources().get("CPU", 0)) or self.workers
        # a Ray task costs a round trip to the driver: tiny tasks share one, as on `processes`
        in_flight = IN_FLIGHT_PER_WORKER * cpus
        value = run_plan(plan, submit, in_flight, on_done, recover, self.retries, BatchSizer(), inline=False)
        return _get(ray, value, plan.output)

    def close(self) -> None:
        """Shut down Ray only if this engine initialised it (for a cluster: disconnect, never stop it)."""
        self._remote = None
        if self._owns_ray:
            import ray

            ray.shutdown()
            self._owns_ray = False

    def __enter__(self) -> "RayEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _initialized() -> bool:
    """Whether Ray is (still) up in this process: someone may have called ray.shutdown() since."""
    import ray

    return ray.is_initialized()


def _on_loopback(address: str) -> bool:
    host = address.removeprefix("ray://").rpartition(":")[0].strip("[]")
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _awaited(ray: Any, marker: Any, results: list[Any], key: str, note: str) -> Future:
    """A future of `(results, timing)` once the Ray task's marker arrives, or of its failure. It is
    running from the start, so the scheduler's clean-up awaits it rather than cancelling it."""
    future: Future = Future()
    future.set_running_or_notify_cancel()

    def settle(done: Future) -> None:
        error = done.exception()
        if error is None:
            future.set_result((results, done.result()))
            return
        for result in results:  # fetched, so Ray does not report each one's copy of the error as unhandled
            result.future()
        if isinstance(error, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                                ray.exceptions.OutOfMemoryError)):
            future.set_exception(_WorkerLost(error, note))
        else:
            future.set_exception(_unwrapped(ray, error, key))

    marker.future().add_done_callback(settle)
    return future


def _get(ray: Any, ref: Any, key: str) -> Any:
    """`ray.get`, re-raising a task's own exception (same type and message as on every engine)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:
        raise _unwrapped(ray, exc, key) from None


def _unwrapped(ray: Any, error: BaseException, key: str) -> BaseException:
    """The task's own exception inside Ray's wrapping, or a `PipelineError` for Ray's own failures."""
    if not isinstance(error, ray.exceptions.RayError):
        return error
    cause: BaseException | None = error
    while isinstance(cause, ray.exceptions.RayTaskError):
        cause = cause.cause
    if isinstance(cause, BaseException) and not isinstance(cause, ray.exceptions.RayError):
        return cause
    return PipelineError(f"Ray could not run task {key}: {error}")
