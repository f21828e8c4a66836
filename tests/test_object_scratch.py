"""A run's scratch on object storage, against a real S3-compatible server on 127.0.0.1: a dataflow with a
shuffle join, a broadcast join and aggregates, read from and written to s3, gives the rows of the same graph
run all-local on `sync` and `processes`; its scratch prefix is gone afterwards; a failing stage leaves no
scratch object and no committed output; `[run] scratch` and `run(scratch=...)` put it elsewhere. Last, the
same graph on an external Dask cluster and an external Ray head whose workers see none of the driver's files.
(`--resume` with scratch there: test_object_resume.)"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from typing import Any
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import load
from pipeline.dataset import Dataset, Output, read, run
from pipeline.errors import StageError
from pipeline.io.storage import ObjectPath
from clusters import ray_auth  # noqa: F401 - fixture
from s3server import S3Server, aws_env, engine, manifest, objects, s3_server  # noqa: F401 - fixtures

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # cluster workers cannot import the tests

ROW_GROUP = 100
LINE_CHUNK = 300  # line items are read in 4 chunks, so an aggregate of them has states to cut


# ---- data and graph ----------------------------------------------------------------------------------------


def write_parts(table: pa.Table, folder: Path, files: int) -> Path:
    """`table` split over `files` Parquet files of ROW_GROUP-row row groups, named in row order."""
    folder.mkdir(parents=True)
    bounds = np.linspace(0, table.num_rows, files + 1).astype(int)
    for i, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        pq.write_table(table.slice(start, stop - start), folder / f"data-{i:03d}.parquet", row_group_size=ROW_GROUP)
    return folder


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Order heads (300 rows, 3 files) and their line items (1200 rows, 4 files) as local Parquet."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(11)
    orders = pa.table({
        "okey": pa.array(np.arange(300), pa.int64()),
        "region": pa.array(rng.choice(["east", "north", "south", "west"], 300)),
        "priority": pa.array(rng.integers(1, 4, 300), pa.int64()),
    })
    lineitem = pa.table({
        "lid": pa.array(np.arange(1200), pa.int64()),
        "okey": pa.array(rng.integers(0, 320, 1200), pa.int64()),  # some match no order
        "qty": pa.array(rng.integers(1, 50, 1200), pa.int64()),
        "price": pa.array(rng.integers(100, 10_000, 1200) / 100),
    })
    return {"orders": write_parts(orders, root / "orders", 3), "lineitem": write_parts(lineitem, root / "lineitem", 4)}


@pytest.fixture(scope="module")
def uploaded(s3_server: S3Server, inputs: dict[str, Path]) -> str:  # noqa: F811
    """The inputs copied to a bucket of their own; returns its name."""
    bucket = s3_server.bucket("in")
    for name, folder in inputs.items():
        s3_server.upload(folder, f"{bucket}/{name}")
    return bucket


def fail_on_big(df: pd.DataFrame) -> pd.DataFrame:
    """A stage that fails on some chunks, after others have written scratch files."""
    if (df["qty_sum"] > 0).any():
        raise ValueError("refused by the test")
    return df


def over_one(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["lines"] > 1]


def graph(orders: Dataset, lineitem: Dataset, fail: bool = False) -> dict[str, Dataset]:
    """Line items ⋈ orders by shuffle, aggregated by region; per-order totals (an aggregate combined in two
    key ranges, its states cut through the scratch) joined back to the orders by broadcast; and the joined
    line items of orders with more than one line, a semi join whose strategy is chosen while it runs (its
    small side read from the scratch by every worker), aggregated by region."""
    joined = lineitem.join(orders, on="okey", how="inner", strategy="shuffle")
    per_region = joined.aggregate(by="region", aggs={"items": ["lid", "size"], "qty": ["qty", "sum"]})
    totals = lineitem.aggregate(by="okey", aggs={"qty_sum": ["qty", "sum"]}, partitions=2)  # by key range
    if fail:
        totals = totals.then(fail_on_big)
    enriched = orders.join(totals, on="okey", how="left", strategy="broadcast")
    counted = lineitem.aggregate(by="okey", aggs={"lines": ["lid", "size"]})  # rows unknown until it runs
    busy = joined.join(counted.then(over_one), on="okey", how="semi")  # broadcast once it proves small
    per_busy_region = busy.aggregate(by="region", aggs={"items": ["lid", "size"]})
    return {"per_region": per_region, "enriched": enriched, "per_busy_region": per_busy_region}


def outputs(datasets: dict[str, Dataset], base: str, opts: dict[str, str] | None = None) -> list[Output]:
    """Each dataset written as a prefix under `base` (a folder or a URL)."""
    return [d.write(f"{base}/{name}", storage_options=opts) for name, d in datasets.items()]


def frame(table: pa.Table | pd.DataFrame, by: list[str]) -> pd.DataFrame:
    df = table if isinstance(table, pd.DataFrame) else table.to_pandas()
    return df.sort_values(by).reset_index(drop=True)


SORT = {"per_region": ["region"], "enriched": ["okey"], "per_busy_region": ["region"]}


def local_result(inputs: dict[str, Path], tmp: Path) -> dict[str, pd.DataFrame]:
    run(*outputs(graph(read(str(inputs["orders"])), read(str(inputs["lineitem"]), chunk_rows=LINE_CHUNK)), str(tmp)), engine="sync")
    return {name: frame(pq.read_table(tmp / name), by) for name, by in SORT.items()}


def s3_result(server: S3Server, bucket: str) -> dict[str, pd.DataFrame]:
    fs = server.filesystem
    return {name: frame(pq.read_table(f"{bucket}/{name}", filesystem=fs), by) for name, by in SORT.items()}



def s3_inputs(bucket: str, opts: dict[str, str]) -> tuple[Dataset, Dataset]:
    return (read(f"s3://{bucket}/orders", storage_options=opts, name="orders"),
            read(f"s3://{bucket}/lineitem", storage_options=opts, name="lineitem",
                 chunk_rows=LINE_CHUNK))


@pytest.fixture(scope="module", autouse=True)
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Workers run from an empty folder: anything written relative to it by mistake shows there."""
    folder = tmp_path_factory.mktemp("cwd")
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(before)


@pytest.fixture
def opts(s3_server: S3Server) -> dict[str, str]:  # noqa: F811
    return s3_server.options


# ---- sync and processes ------------------------------------------------------------------------------------


def test_scratch_on_s3_gives_the_local_rows_and_is_removed(s3_server, uploaded, inputs, opts, tmp_path, engine):
    expected = local_result(inputs, tmp_path / "local")
    out = s3_server.bucket("out")
    manifests = run(*outputs(graph(*s3_inputs(uploaded, opts)), f"s3://{out}/result", opts), engine=engine)
    assert set(manifests) == {f"s3://{out}/result/{name}" for name in SORT}
    got = s3_result(s3_server, f"{out}/result")
    for name in SORT:
        pd.testing.assert_frame_equal(got[name], expected[name], check_dtype=False)
    listed = objects(s3_server, out)
    assert [o for o in listed if ".scratch-" in o] == []  # the scratch prefix is gone
    assert all(o.startswith(tuple(f"result/{name}/" for name in SORT)) for o in listed)


def test_scratch_is_written_beside_the_first_object_output(s3_server, uploaded, opts, monkeypatch, engine):
    """While the run goes, map files, aggregate states and parts are objects under `.<name>.scratch-<run>/`."""
    from pipeline.io import scratch

    seen: list[str] = []
    original = scratch.remove

    def spy(folder: str) -> None:
        seen.append(folder)
        seen.extend(objects(s3_server, str(folder).removeprefix("s3://")))
        original(folder)

    monkeypatch.setattr("pipeline.graph_run.remove", spy)
    out = s3_server.bucket("out")
    run(*outputs(graph(*s3_inputs(uploaded, opts)), f"s3://{out}/result", opts), engine=engine)
    folder, *files = seen
    assert isinstance(folder, ObjectPath) and folder.storage_options == opts
    assert folder.startswith(f"s3://{out}/result/.per_region.scratch-")
    assert any(f.endswith(".arrow") and "/map-" in f for f in files)  # the shuffle's map outputs
    assert any(f.endswith(".arrow") and "/part-" in f for f in files)  # reductions and the broadcast side
    assert any(f.endswith(".pickle") and "/state-" in f for f in files)  # the per-range aggregate's states...
    assert any(f.endswith(".pickle") and "/split-" in f for f in files)  # ...and their cuts
    assert any(f.endswith("/choice") for f in files)  # the semi join's strategy, chosen while running
    assert objects(s3_server, str(folder).removeprefix("s3://")) == []


def test_failing_stage_leaves_no_scratch_and_no_output(s3_server, uploaded, opts, engine):
    out = s3_server.bucket("out")
    with pytest.raises(StageError, match="refused by the test"):
        run(*outputs(graph(*s3_inputs(uploaded, opts), fail=True), f"s3://{out}/result", opts), engine=engine)
    assert objects(s3_server, out) == []  # no scratch, no staged parts, no manifest


def test_scratch_option_puts_it_elsewhere(s3_server, uploaded, inputs, opts, tmp_path, engine):
    """`run(scratch=URL)` with local outputs: the intermediate data goes to the bucket, the rows are the same."""
    expected = local_result(inputs, tmp_path / "local")
    tmp = s3_server.bucket("tmp")
    datasets = graph(read(str(inputs["orders"])), read(str(inputs["lineitem"]), chunk_rows=LINE_CHUNK))
    run(*outputs(datasets, str(tmp_path / "out")), engine=engine, scratch=f"s3://{tmp}/scratch", scratch_options=opts)
    for name, by in SORT.items():
        pd.testing.assert_frame_equal(frame(pq.read_table(tmp_path / "out" / name), by), expected[name])
    assert objects(s3_server, tmp) == []
    assert [p.name for p in tmp_path.joinpath("out").iterdir() if ".scratch-" in p.name] == []


def test_config_run_scratch(s3_server, uploaded, opts, tmp_path):
    """`[run] scratch` in a graph config reaches the run; its options default to an output's in the bucket."""
    out = s3_server.bucket("out")
    options = "{ " + ", ".join(f'{k} = "{v}"' for k, v in opts.items()) + " }"
    config = tmp_path / "job.toml"
    config.write_text(f"""
[inputs.orders]
path = "s3://{uploaded}/orders"
storage_options = {options}
[outputs.copy]
from = "orders"
path = "s3://{out}/copy"
storage_options = {options}
[run]
scratch = "s3://{out}/tmp"
""")
    job = load(config)
    assert [(o.scratch, o.scratch_options) for o in job.outputs] == [(f"s3://{out}/tmp", None)]
    from pipeline.graph_run import _scratch_folder

    folder = _scratch_folder([job.outputs[0].sink], "r1", job.outputs[0].scratch, None)
    assert folder == f"s3://{out}/tmp/.copy.scratch-r1" and folder.storage_options == opts
    run(*job.outputs, engine="sync")
    assert objects(s3_server, f"{out}/tmp") == []


def test_nothing_is_written_relative_to_the_working_folder(s3_server, uploaded, opts, elsewhere, engine):
    """Every scratch path goes to the bucket: no `s3:` folder appears where the driver and workers run."""
    out = s3_server.bucket("out")
    run(*outputs(graph(*s3_inputs(uploaded, opts)), f"s3://{out}/result", opts), engine=engine)
    assert sorted(p.name for p in elsewhere.iterdir()) == []


# ---- a cluster whose workers share no files with the driver or each other -----------------------------------


@contextlib.contextmanager
def isolated_engine(kind: str, root: Path, hide: list[Path], token: str) -> Iterator[tuple[Any, Callable]]:
    """An engine on an external cluster (`dask scheduler` + 2 workers, or `ray start --head` reached by Ray
    Client) whose processes have their own empty /tmp and cannot see `hide`; and `sees(path)`, which asks
    the workers whether they see a file (call it once the engine has run: Ray connects on the first run)."""
    from clusters import dask_cluster, ray_head_cluster

    from pipeline.engines import get_engine

    if kind == "dask":
        import distributed

        with dask_cluster(root, workers=2, hide=hide) as address:
            with distributed.Client(address, timeout=30, set_as_default=False) as client:
                with get_engine("dask", workers=2, address=address) as engine:
                    yield engine, lambda path: list(client.run(os.path.exists, path).values())
        return
    import ray

    with ray_head_cluster(root, token, hide=hide) as head:
        with get_engine("ray", workers=2, address=head.client_address) as engine:
            yield engine, lambda path: ray.get([ray.remote(os.path.exists).remote(path) for _ in range(2)])


@pytest.mark.parametrize("kind", ["dask", "ray"])
def test_isolated_cluster_meets_through_the_bucket(s3_server, uploaded, inputs, opts, tmp_path, kind, ray_auth):
    """Each worker has its own empty /tmp (and the test's folders hidden): map files, reduction results and
    the broadcast side can only travel through the bucket, with the endpoint and keys the storage_options
    carry (the workers' environment names no endpoint)."""
    from clusters import can_isolate

    if shutil.which("unshare") is None or not (Path(sys.executable).parent / kind).exists() or not can_isolate():
        pytest.skip(f"needs unshare, private mount namespaces and the {kind} command")
    expected = local_result(inputs, tmp_path / "local")
    out = s3_server.bucket("out")
    hide = sorted({tmp_path.parent, Path(str(inputs["orders"])).parents[1]})
    with isolated_engine(kind, tmp_path / "cluster", hide, ray_auth) as (engine, sees):
        run(*outputs(graph(*s3_inputs(uploaded, opts)), f"s3://{out}/result", opts), engine=engine)
        probe = str(inputs["orders"] / "data-000.parquet")
        assert os.path.exists(probe) and sees(probe) == [False, False]  # the workers cannot read the driver's files
    got = s3_result(s3_server, f"{out}/result")
    for name in SORT:
        pd.testing.assert_frame_equal(got[name], expected[name], check_dtype=False)
    assert [o for o in objects(s3_server, out) if ".scratch-" in o] == []
