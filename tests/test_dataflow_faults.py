"""Faults in a graph with exchanges, for real: a worker killed on either side of a shuffle is replaced and
the answer is exact; a driver killed mid-run leaves nothing committed, and `--resume` reuses the exchange's
finished map outputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import cloudpickle
import pandas as pd
import pytest

import spawned
import userstages
from pipeline.dataset import read
from pipeline.engines import get_engine
from test_resume import PIPELINE, TESTS, kill_midway, logged

cloudpickle.register_pickle_by_value(userstages)


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values("id").reset_index(drop=True)


@pytest.mark.parametrize("engine_name", ["processes", "joblib", "dask", "ray"])
def test_workers_killed_before_and_after_a_shuffle_are_replaced_and_the_join_is_exact(
    dataset: Path, tmp_path: Path, engine_name: str
):
    left = read(str(dataset), chunk_rows=500)
    right = read(str(dataset), chunk_rows=1500, columns=["id", "distance"]).named("distances")
    clean = left.join(right, on="id", strategy="shuffle", suffixes=("", "_again")).collect("sync")

    map_side, reduce_side = tmp_path / "killed-map", tmp_path / "killed-reduce"
    faulty = (left.then(userstages.die_once, marker=str(map_side), bad_id=3333)
              .join(right, on="id", strategy="shuffle", suffixes=("", "_again"))
              .then(userstages.die_once, marker=str(reduce_side), bad_id=4444))
    with get_engine(engine_name, workers=2) as engine:
        got = faulty.collect(engine)
    assert map_side.exists() and reduce_side.exists()  # a worker really died on each side
    pd.testing.assert_frame_equal(_sorted(got), _sorted(clean))


def write_graph_config(folder: Path, data: Path, out: Path, log: Path) -> Path:
    """Every chunk logged slowly before an exchange by carrier, then a count per carrier and partition."""
    shutil.copy(TESTS / "userstages.py", folder / "userstages.py")
    config = folder / "graph.toml"
    config.write_text(
        f'[inputs.table]\npath = "{data}"\nchunk_rows = 500\n'
        f'[datasets.logged]\nfrom = "table"\n'
        f'[[datasets.logged.stages]]\nname = "slow"\nuses = "userstages:slow_logged"\n'
        f'params = {{ log = "{log}", gate = "{log}.gate" }}\n'
        f'[[datasets.logged.stages]]\nname = "by_carrier"\nuses = "stages.shuffle:repartition"\n'
        f'params = {{ by = "carrier", partitions = 3 }}\n'
        f'[outputs.out]\nfrom = "logged"\npath = "{out}"\nmode = "overwrite"\n'
        f'[engine]\nname = "processes"\nworkers = 2\n'
    )
    return config


def test_kill_mid_shuffle_then_resume_reuses_finished_maps(dataset: Path, tmp_path: Path):
    out, log = tmp_path / "out", tmp_path / "log.txt"
    project = tmp_path / "project"
    project.mkdir()
    config = write_graph_config(project, dataset, out, log)
    kill_midway(config, log, after=4)
    assert not out.exists()  # nothing committed
    scratch = next(tmp_path.glob(".out.scratch-*"))
    finished = sorted(p.name for p in scratch.rglob("map-*.done"))
    assert finished  # map outputs survived the kill, with their checkpoints
    done_before = len(logged(log))

    result = spawned.run([PIPELINE, "run", str(config), "--resume"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    reused = int(result.stderr.split("resumed: ")[1].split()[0])
    assert reused >= len(finished)
    assert len(logged(log)) - done_before == 12 - reused  # only the maps not finished ran again
    table = pd.read_parquet(out).sort_values("id").reset_index(drop=True)
    expected = pd.read_parquet(dataset).sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(table[expected.columns], expected, check_dtype=False, check_categorical=False)
    for part in out.glob("*.parquet"):  # every carrier in exactly one part
        carriers = set(pd.read_parquet(part)["carrier"])
        others = [set(pd.read_parquet(p)["carrier"]) for p in out.glob("*.parquet") if p != part]
        assert all(not carriers & other for other in others)
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name or ".scratch-" in p.name]
