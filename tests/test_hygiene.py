"""Nothing is left running: Ctrl-C (SIGINT to the whole foreground process group, as a terminal sends it)
stops a run on every engine that starts processes, with every worker and cluster process it started gone
and nothing committed; and a large run of many small files leaks no file handles or processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

import spawned
from pipeline import Pipeline
from pipeline.engines import get_engine
from pipeline.io import FileSource

PIPELINE = str(Path(sys.executable).parent / "pipeline")
TESTS = Path(__file__).resolve().parent


def _interruptible() -> None:
    """In the child, before exec: Ctrl-C as from a terminal, even when these tests run in a background job
    (a non-interactive shell starts those with SIGINT ignored, and an ignored signal stays ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_gone(processes: list[psutil.Process], timeout: float = 30) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return alive


def started_by_multiprocessing(me: psutil.Process, before: set[psutil.Process]) -> list[psutil.Process]:
    """Processes not in `before` that `me` or its forkserver started: not those of clusters other tests left
    running (a session's local Ray starts and ends its own workers at any time)."""

    def parent(process: psutil.Process) -> int | None:
        try:
            return process.ppid()
        except psutil.Error:  # ended meanwhile
            return None

    def is_forkserver(process: psutil.Process) -> bool:
        try:
            return "multiprocessing.forkserver" in " ".join(process.cmdline())
        except psutil.Error:
            return False

    servers = {p.pid for p in me.children() if is_forkserver(p)}
    return [p for p in me.children(recursive=True) if p not in before and parent(p) in {me.pid, *servers}]


@pytest.mark.parametrize("engine", ["processes", "dask", "ray"])
def test_ctrl_c_stops_everything_the_run_started(dataset: Path, tmp_path: Path, engine: str):
    shutil.copy(TESTS / "userstages.py", tmp_path / "userstages.py")
    log, out = tmp_path / "log.txt", tmp_path / "out"
    config = tmp_path / "job.toml"
    config.write_text(
        f'[source]\npath = "{dataset}"\nchunk_rows = 500\n'
        f'[[stages]]\nname = "slow"\nuses = "userstages:slow_logged"\nparams = {{ log = "{log}", seconds = 1.0 }}\n'
        f'[sink]\npath = "{out}"\n[engine]\nname = "{engine}"\nworkers = 2\n'
    )
    run = spawned.spawn([PIPELINE, "run", str(config), "--quiet"], stderr=subprocess.PIPE, text=True,
                        preexec_fn=_interruptible)
    started: list[psutil.Process] = []
    try:
        spawned.wait_for(lambda: (log.exists() and log.read_text().strip()) or run.poll() is not None, 180,
                         "chunk logged")
        assert run.poll() is None, run.stderr.read()
        started = psutil.Process(run.pid).children(recursive=True)
        assert started  # workers (and, for dask and ray, cluster processes) are running
        os.killpg(run.pid, signal.SIGINT)
        stderr = run.communicate(timeout=120)[1]
        assert run.returncode == 130, stderr
        assert "interrupted" in stderr and "Traceback" not in stderr
        assert wait_gone(started) == []
        assert not out.exists()
    finally:  # on any failure above, nothing the run started outlives the test
        spawned.stop(run, known=started)


def test_ten_thousand_chunks_leak_no_handles_or_processes(table, tmp_path: Path):
    """1,000 files of 10 row groups each: 10,000 chunks through the processes engine."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "many"
    folder.mkdir()
    small = pa.Table.from_pandas(table.head(50), preserve_index=False)
    for i in range(1000):
        pq.write_table(small, folder / f"f{i:04d}.parquet", row_group_size=5)
    me = psutil.Process()
    handles_before = me.num_fds()
    children_before = set(me.children(recursive=True))
    from stages.analyze import aggregate

    pipeline = Pipeline().then(aggregate, by=["carrier"], aggs={"n": ["id", "count"], "total": ["distance", "sum"]})
    with get_engine("processes", workers=2) as engine:
        manifest = pipeline.run(FileSource(str(folder), chunk_rows=5), str(tmp_path / "agg.parquet"), engine)
        workers = started_by_multiprocessing(me, children_before)
        peak = sum(p.memory_info().rss for p in [me, *workers])
        # forked workers are direct children; with a forkserver, the direct children are the server and its
        # resource tracker (one each per driver process, reused by every run) and the workers their children
        forked = engine._executor._mp_context.get_start_method() == "fork"
        helpers = [] if forked else [p for p in workers if p.ppid() == me.pid]
    assert manifest.stats["read"].chunks == 10_000 and manifest.stats["read"].rows_in == 50_000
    assert len(helpers) <= 2 and len(workers) - len(helpers) == 2
    assert wait_gone([p for p in workers if p not in helpers]) == []
    assert me.num_fds() <= handles_before + 2  # nothing held open per file or chunk
    assert peak < 2 * 1024**3  # driver and two workers together, for 10,000 chunks
