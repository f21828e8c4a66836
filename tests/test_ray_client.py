"""Ray Client for real: a `ray://` address to the client server of a head started with `ray start --head`
(token authentication on, 127.0.0.1 only). The driver's tasks go through that server; the user's stage
module, which the cluster cannot import, travels with them; the answers are the sync engine's."""

from __future__ import annotations

from pathlib import Path

import cloudpickle
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import userstages
from pipeline import FileSource, Pipeline
from pipeline.engines import get_engine
from stages.analyze import aggregate

from clusters import RayHead, ray_auth, ray_client_head  # noqa: F401 - fixtures

cloudpickle.register_pickle_by_value(userstages)  # as the config loader does for a user's module

AGGS = {"n": ["id", "size"], "score": ["score", "sum"], "worst": ["delay", "max"]}


@pytest.fixture
def no_ray_driver() -> None:
    """A driver joins one Ray at a time: end any Ray another test left initialised in this process."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


def test_ray_client_gives_the_sync_answer(
    ray_client_head: RayHead, no_ray_driver: None, dataset: Path, table: pd.DataFrame, tmp_path: Path
) -> None:
    import ray
    from ray.util.client import ray as client_ray

    stages = Pipeline().then(userstages.long_flights, min_distance=800).then(userstages.add_speed)
    by_carrier = stages.then(aggregate, by=["carrier", "month"], aggs=AGGS)
    source = FileSource(str(dataset), chunk_rows=1000)
    with get_engine("sync") as sync:
        expected = by_carrier.run(source, str(tmp_path / "sync.parquet"), engine=sync)
        expected_rows = stages.run_frame(table, chunks=5, engine=sync)
    assert ray_client_head.client_address.startswith("ray://127.0.0.1:")
    with get_engine("ray", address=ray_client_head.client_address, workers=2) as engine:
        manifest = by_carrier.run(source, str(tmp_path / "ray.parquet"), engine=engine)
        assert client_ray.is_connected()  # through the client server, not as a driver on the cluster
        rows = stages.run_frame(table, chunks=5, engine=engine)
    assert not ray.is_initialized() and not client_ray.is_connected()  # close() disconnected
    assert manifest.rows == expected.rows == 60  # 5 carriers x 12 months
    assert_frame_equal(pd.read_parquet(tmp_path / "ray.parquet"), pd.read_parquet(tmp_path / "sync.parquet"),
                       check_exact=False, rtol=1e-12)
    assert_frame_equal(rows, expected_rows)
