"""Real clusters for tests: a Dask scheduler with two workers, and a Ray head, on 127.0.0.1 only.

Each process starts in its own session (so its whole process group can be signalled), from a fresh empty
working directory and without PYTHONPATH, so workers can import only what is installed: a stage module
that reaches them must have travelled inside the task. Stopping is bounded and leaves nothing behind:
the process tree is recorded first, the root is asked to stop, then any survivor is killed by pid, and
the listening ports are checked to be free again.

Use as fixtures (`dask_scheduler`, `ray_head` for the session, `ray_client_head` for a module) or as
context managers (`dask_cluster`, `dask_tls_cluster`, `ray_cluster`, `ray_head_cluster`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0


def free_port() -> int:
    """A port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports (all held open while choosing, so none repeats)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in socks]


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
        return True
    return False


def port_bindable(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def clean_env(**extra: str) -> dict[str, str]:
    """This environment minus PYTHONPATH (workers import only installed code), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    env.update(extra)
    return env


@dataclass
class Service:
    """One started command, its log and the ports it should release when stopped."""

    name: str
    proc: subprocess.Popen
    log: Path
    ports: list[int] = field(default_factory=list)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start(name: str, args: list[str], root: Path, env: dict[str, str], ports: list[int] = ()) -> Service:
    """Run `args` in a new session from an empty directory under `root`, output to `root/<name>.log`."""
    cwd = root / name
    cwd.mkdir(parents=True)
    log = root / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Service(name, proc, log, list(ports))


def wait_until(ready: Callable[[], bool], services: list[Service], what: str, timeout: float = START_TIMEOUT) -> None:
    """Poll `ready` until true; fail with every service's output if one exits or time runs out."""
    deadline = time.monotonic() + timeout
    while not ready():
        dead = [s for s in services if s.proc.poll() is not None]
        if dead or time.monotonic() > deadline:
            reason = f"{dead[0].name} exited ({dead[0].proc.returncode})" if dead else f"no {what} in {timeout:.0f} s"
            logs = "\n".join(f"--- {s.name} ({' '.join(map(str, s.proc.args))}):\n{s.output()}" for s in services)
            raise RuntimeError(f"cluster did not start: {reason}\n{logs}")
        time.sleep(0.2)


def _tree(pid: int) -> list[psutil.Process]:
    """The process, its descendants, and anything else in its process group."""
    try:
        root = psutil.Process(pid)
        procs = {p.pid: p for p in [root, *root.children(recursive=True)]}
    except psutil.NoSuchProcess:
        return []
    for proc in psutil.process_iter():
        with contextlib.suppress(OSError, psutil.Error):
            if proc.pid not in procs and os.getpgid(proc.pid) == pid:
                procs[proc.pid] = proc
    return list(procs.values())


def stop(service: Service, timeout: float = STOP_TIMEOUT) -> None:
    """Ask the root to stop (it shuts its children down), then kill every survivor by pid; check ports."""
    tree = _tree(service.proc.pid)
    if service.proc.poll() is None:
        service.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            service.proc.wait(timeout)
    for proc in _running(tree, wait=5):
        with contextlib.suppress(psutil.Error):
            proc.kill()
    with contextlib.suppress(ProcessLookupError, PermissionError):  # and anything born in the group since
        os.killpg(service.proc.pid, signal.SIGKILL)
    service.proc.wait(10)
    alive = _running(tree, wait=10)
    busy = [p for p in service.ports if not _released(p)]
    if alive or busy:
        raise RuntimeError(f"{service.name} did not stop cleanly: processes {[p.pid for p in alive]}, ports {busy}")


def _running(procs: list[psutil.Process], wait: float) -> list[psutil.Process]:
    """Those of `procs` still running after up to `wait` seconds (a zombie only awaits its reaper)."""
    deadline = time.monotonic() + wait
    while True:
        alive = []
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _released(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not port_bindable(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def stop_all(services: list[Service]) -> None:
    """Stop in reverse start order; report every failure, after trying them all."""
    errors = []
    for service in reversed(services):
        try:
            stop(service)
        except Exception as exc:  # noqa: BLE001 - collected and re-raised below
            errors.append(f"{service.name}: {exc}")
    if errors:
        raise RuntimeError("; ".join(errors))


def isolated(args: list[str], hide: Sequence[Path]) -> list[str]:
    """`args` run in a private mount namespace with an empty tmpfs over each of `hide` and over /tmp (unless
    this checkout's interpreter lives there), from /tmp: the process sees none of the files the test wrote, as a
    worker on another machine would not.
    Needs root and `unshare` (see `can_isolate`)."""
    private = [*hide, *(["/tmp"] if not _under_tmp(BIN) else [])]  # a venv under /tmp must stay visible
    mounts = " && ".join(f"mount -t tmpfs none {shlex.quote(str(path))}" for path in private)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", f'{mounts} && cd /tmp && exec "$@"',
            "sh", *args]


def _under_tmp(path: Path) -> bool:
    return Path("/tmp") in path.resolve().parents


def can_isolate() -> bool:
    """Whether `isolated` works here (root, `unshare`, and tmpfs mounts allowed)."""
    probe = ["unshare", "--mount", "--propagation", "private", "sh", "-c", "mount -t tmpfs none /tmp"]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    return False


@contextlib.contextmanager
def dask_cluster(root: Path, workers: int = 2, hide: Sequence[Path] = ()) -> Iterator[str]:
    """A `dask scheduler` and `workers` single-threaded `dask worker` processes; yields the address. With
    `hide`, each worker runs `isolated` from those folders and /tmp."""
    import distributed

    port = free_port()
    address = f"tcp://{HOST}:{port}"
    env = clean_env()
    services = [start("scheduler", [str(BIN / "dask"), "scheduler", "--host", HOST, "--port", str(port),
                                    "--no-dashboard", "--dashboard-address", f"{HOST}:0"], root, env, [port])]
    try:
        wait_until(lambda: port_open(port), services, "scheduler listening")
        for i in range(workers):
            args = [str(BIN / "dask"), "worker", address, "--host", HOST, "--nworkers", "1", "--nthreads", "1",
                    "--no-dashboard", "--dashboard-address", f"{HOST}:0", "--death-timeout", "60",
                    "--name", f"worker-{i}", "--local-directory", str(root / f"worker-{i}")]
            services.append(start(f"worker-{i}", isolated(args, hide) if hide else args, root, env))
        with distributed.Client(address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=START_TIMEOUT)
        yield address
    finally:
        stop_all(services)


@contextlib.contextmanager
def dask_tls_cluster(root: Path, certs: Mapping[str, Path | str], workers: int = 2) -> Iterator[str]:
    """As `dask_cluster`, but every connection is TLS with mutual authentication; yields the tls:// address.

    `certs` holds `ca_file` (the CA both sides trust), `cert_file` and `key_file` (the certificate and key
    the scheduler and workers present, also used by workers and here as clients of the scheduler)."""
    import distributed
    from distributed.security import Security

    port = free_port()
    address = f"tls://{HOST}:{port}"
    env = clean_env()
    tls = ["--tls-ca-file", str(certs["ca_file"]), "--tls-cert", str(certs["cert_file"]),
           "--tls-key", str(certs["key_file"])]
    services = [start("scheduler", [str(BIN / "dask"), "scheduler", "--protocol", "tls", "--host", HOST,
                                    "--port", str(port), "--no-dashboard", "--dashboard-address", f"{HOST}:0", *tls],
                      root, env, [port])]
    try:
        wait_until(lambda: port_open(port), services, "scheduler listening")
        for i in range(workers):
            args = [str(BIN / "dask"), "worker", address, "--protocol", "tls", "--host", HOST, "--nworkers", "1",
                    "--nthreads", "1", "--no-dashboard", "--dashboard-address", f"{HOST}:0", "--death-timeout", "60",
                    "--name", f"worker-{i}", "--local-directory", str(root / f"worker-{i}"), *tls]
            services.append(start(f"worker-{i}", args, root, env))
        security = Security(tls_ca_file=str(certs["ca_file"]), tls_client_cert=str(certs["cert_file"]),
                            tls_client_key=str(certs["key_file"]), require_encryption=True)
        with distributed.Client(address, timeout=30, security=security, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=START_TIMEOUT)
        yield address
    finally:
        stop_all(services)


@dataclass(frozen=True)
class RayHead:
    """A Ray head's addresses: its GCS (HOST:PORT, for a driver on the cluster) and its Ray Client server."""

    address: str
    client_port: int

    @property
    def client_address(self) -> str:
        return f"ray://{HOST}:{self.client_port}"


@contextlib.contextmanager
def ray_cluster(root: Path, token: str, cpus: int = 2) -> Iterator[str]:
    """`ray start --head --block` with token authentication on; yields the GCS address (HOST:PORT)."""
    with ray_head_cluster(root, token, cpus) as head:
        yield head.address


@contextlib.contextmanager
def ray_head_cluster(root: Path, token: str, cpus: int = 2, hide: Sequence[Path] = ()) -> Iterator[RayHead]:
    """`ray start --head --block` with token authentication on; yields its GCS and Ray Client addresses. With
    `hide`, the head and its workers run `isolated` from those folders and /tmp (reach it by Ray Client then).

    Ray's session files go to a short temp dir (its socket paths must fit in 107 bytes), removed after."""
    port, client_port, agent_port, *metrics = free_ports(5)
    temp_dir = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    args = [str(BIN / "ray"), "start", "--head", "--node-ip-address", HOST, "--port", str(port),
            "--include-dashboard=false", "--num-cpus", str(cpus), "--block", "--disable-usage-stats",
            "--ray-client-server-port", str(client_port), "--dashboard-agent-listen-port", str(agent_port),
            "--temp-dir", temp_dir]
    # Two metrics ports are fixed by default (44217, 44227): give them free ones so a Ray already running
    # on this machine (another test's, or someone's own) cannot collide with this head.
    # gRPC's fork handlers off: the Ray Client server forks (then execs) a server per client while its gRPC
    # threads are busy, and with the handlers on, the child restarts gRPC threads before the exec, which
    # can crash it (SIGSEGV): "Starting Ray client server failed" for about one first connection in three.
    env = clean_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, GRPC_ENABLE_FORK_SUPPORT="0",
                    AUTOSCALER_METRIC_PORT=str(metrics[0]), DASHBOARD_METRIC_PORT=str(metrics[1]))
    services = [start("ray-head", isolated(args, hide) if hide else args, root, env,
                      [port, client_port, agent_port, *metrics])]
    try:
        wait_until(lambda: "Ray runtime started" in services[0].output(), services, "'Ray runtime started'")
        # the Ray Client server starts in the background: it may not listen yet when the head says it started
        wait_until(lambda: port_open(client_port), services, "Ray Client server listening")
        yield RayHead(f"{HOST}:{port}", client_port)
    finally:
        try:
            stop_all(services)
        finally:
            shutil.rmtree(temp_dir, ignore_errors=True)


def driver_token() -> str | None:
    """The token a Ray driver in this process uses, found where Ray looks: RAY_AUTH_TOKEN, then the file
    named by RAY_AUTH_TOKEN_PATH, then ~/.ray/auth_token."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    for path in (os.environ.get("RAY_AUTH_TOKEN_PATH"), Path.home() / ".ray" / "auth_token"):
        if path and Path(path).is_file():
            return Path(path).read_text().strip()
    return None


@pytest.fixture(scope="session")
def ray_auth() -> Iterator[str]:
    """The token this session's Ray head and driver share, with RAY_AUTH_MODE=token for the driver.

    Ray caches the token a process first loads, so the head is given the driver's own token when it has
    one; otherwise a new one goes into RAY_AUTH_TOKEN (and no token file is written to $HOME)."""
    keys = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    saved = {k: os.environ.get(k) for k in keys}
    token = driver_token()
    if token is None:
        token = os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    os.environ.update(RAY_AUTH_MODE="token", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    try:
        yield token
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def dask_scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Address of a real Dask scheduler with two workers, for the whole session."""
    with dask_cluster(tmp_path_factory.mktemp("dask-cluster")) as address:
        yield address


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory: pytest.TempPathFactory, ray_auth: str) -> Iterator[str]:
    """Address of a real Ray head (2 CPUs, token authentication), for the whole session."""
    with ray_cluster(tmp_path_factory.mktemp("ray-cluster"), ray_auth) as address:
        yield address


@pytest.fixture(scope="module")
def ray_client_head(tmp_path_factory: pytest.TempPathFactory, ray_auth: str) -> Iterator[RayHead]:
    """A real Ray head (2 CPUs, token authentication) and its Ray Client server, for one test module."""
    with ray_head_cluster(tmp_path_factory.mktemp("ray-client-cluster"), ray_auth) as head:
        yield head
