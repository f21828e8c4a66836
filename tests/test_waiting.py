"""Stages that wait: `declare(io_concurrency=N)` runs N slices of each chunk at once on threads inside the
worker, in row order, on every engine; `map_ordered` keeps order, bounds concurrency and leaves no thread."""

from __future__ import annotations

import sys
import threading
import types
from pathlib import Path

import cloudpickle
import pandas as pd
import pyarrow as pa
import pytest

from pipeline import ConfigError, Pipeline, declare
from pipeline.io import FileSource
from pipeline.waiting import Rate, in_slices, map_ordered

SLICES = 4
CHUNK_ROWS = 1000
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # cluster workers cannot import the tests


def _barrier(chunk: int) -> threading.Barrier:
    """The chunk's own barrier, in this process: per-process state for a stage shipped by value (its globals
    travel pickled; a lock cannot), one per chunk, since the threads engine runs two chunks at once."""
    holder = sys.modules.setdefault("_test_waiting_state", types.ModuleType("_test_waiting_state"))
    with holder.__dict__.setdefault("lock", threading.Lock()):
        return holder.__dict__.setdefault(f"barrier-{chunk}", threading.Barrier(SLICES, timeout=60))


@declare(io_concurrency=SLICES)
def meet(df: pd.DataFrame) -> pd.DataFrame:
    """Waits at its chunk's barrier of SLICES parties: passes only if the SLICES slices of one chunk really
    run at once (slices run one after another would break the barrier at its deadline and fail the stage)."""
    _barrier(int(df["id"].iloc[0]) // CHUNK_ROWS).wait()
    return df.assign(twice=df["id"] * 2, thread=threading.get_ident())


def test_io_concurrency_runs_slices_at_once_in_row_order_on_every_engine(engine, dataset: Path, table, tmp_path):
    # 6,000 rows in chunks of 1,000: every chunk is cut into 4 slices of 250 that meet at the barrier.
    manifest = Pipeline().then(meet).run(FileSource(str(dataset), chunk_rows=CHUNK_ROWS), str(tmp_path / "out"),
                                         engine)
    out = pd.read_parquet(tmp_path / "out")
    pd.testing.assert_series_equal(out["id"], table["id"].reset_index(drop=True))
    assert (out["twice"] == out["id"] * 2).all()
    threads_per_chunk = out.groupby(out.index // CHUNK_ROWS)["thread"].nunique()
    assert (threads_per_chunk == SLICES).all()
    assert manifest.rows == len(table)


def test_config_key_sets_io_concurrency_and_refuses_it_on_a_reduction(tmp_path: Path, dataset: Path):
    from pipeline import config

    base = f'[source]\npath = "{dataset}"\n[sink]\npath = "{tmp_path / "out"}"\n'
    good = tmp_path / "good.toml"
    good.write_text(base + '[[stages]]\nname = "w"\nuses = "stages.clean:drop_nulls"\nio_concurrency = 3\n')
    assert config.load(str(good)).pipeline.stages[0].concurrency == 3
    bad = tmp_path / "bad.toml"
    bad.write_text(base + '[[stages]]\nname = "count"\nuses = "stages.analyze:aggregate"\nio_concurrency = 3\n'
                   '[stages.params]\nby = ["kind"]\naggs = { n = ["id", "count"] }\n')
    with pytest.raises(ConfigError, match=r"stages\[0\].*io_concurrency is for per-chunk stages.*reduction"):
        config.load(str(bad))
    zero = tmp_path / "zero.toml"
    zero.write_text(base + '[[stages]]\nname = "w"\nuses = "stages.clean:drop_nulls"\nio_concurrency = 0\n')
    with pytest.raises(ConfigError, match="io_concurrency"):
        config.load(str(zero))


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "4"])
def test_declare_refuses_a_bad_io_concurrency(value):
    with pytest.raises(ValueError, match="io_concurrency must be a whole number"):
        declare(io_concurrency=value)
    with pytest.raises(ValueError, match="io_slice_rows must be a whole number"):
        declare(io_concurrency=2, io_slice_rows=value)
    with pytest.raises(ValueError, match="give both"):
        declare(io_slice_rows=10)


@pytest.mark.parametrize("kind", ["pandas", "arrow", "polars"])
def test_in_slices_keeps_rows_and_order_in_every_format(kind: str):
    from pipeline.batch import convert

    table = pa.table({"i": list(range(103))})
    batch = convert(table, kind)
    seen: list[int] = []
    lock = threading.Lock()

    def tag(part):
        with lock:
            seen.append(len(part))
        return part

    out = convert(in_slices(tag, batch, concurrency=8), "arrow")
    assert out.column("i").to_pylist() == list(range(103))
    assert sorted(seen) == [12] + [13] * 7  # 8 slices of ceil(103 / 8) rows
    assert convert(in_slices(tag, batch, concurrency=8, slice_rows=50), "arrow").num_rows == 103


def test_map_ordered_bounds_concurrency_keeps_order_and_leaves_no_thread():
    in_flight, peak, lock = [0], [0], threading.Lock()
    gate = threading.Barrier(5, timeout=60)

    def call(i: int) -> int:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        if i < 5:
            gate.wait()  # the first five must be in flight together
        with lock:
            in_flight[0] -= 1
        return i * i

    assert map_ordered(call, range(50), concurrency=5) == [i * i for i in range(50)]
    assert peak[0] == 5
    assert not [t for t in threading.enumerate() if t.name.startswith("pipeline-io")]


def test_map_ordered_raises_the_first_failure_and_cancels_the_rest():
    started: list[int] = []

    def call(i: int) -> int:
        started.append(i)
        if i == 3:
            raise KeyError(f"row {i}")
        threading.Event().wait(0.005)  # each call waits, as an I/O call does: all 1,000 would take seconds
        return i

    with pytest.raises(KeyError, match="row 3"):
        map_ordered(call, range(1000), concurrency=2)
    assert len(started) < 1000  # the calls after the failure were not started
    assert not [t for t in threading.enumerate() if t.name.startswith("pipeline-io")]


def test_rate_spaces_calls_evenly(monkeypatch):
    """The pacing arithmetic, on a fake clock: 4 per second gives start slots 0.25 s apart."""
    now, slept = [100.0], []
    monkeypatch.setattr("pipeline.waiting.time.monotonic", lambda: now[0])
    monkeypatch.setattr("pipeline.waiting.time.sleep", lambda s: (slept.append(s), now.__setitem__(0, now[0] + s)))
    rate = Rate(4)
    for _ in range(5):
        rate.acquire()
    assert slept == [0.25, 0.25, 0.25, 0.25]
    with pytest.raises(ValueError, match="rate must be a positive"):
        Rate(0)
