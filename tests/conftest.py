"""Shared fixtures: small Parquet datasets written for real, and one engine of each kind per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.engines import ENGINES, get_engine

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def make_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """A table with string, categorical and int keys, float values with nulls, and ints."""
    rng = np.random.default_rng(seed)
    values = rng.integers(-4000, 4000, rows) / 4
    return pd.DataFrame(
        {
            "id": np.arange(rows, dtype="int64"),
            "carrier": rng.choice(["AA", "B6", "DL", "UA", "WN"], rows),
            "month": rng.integers(1, 13, rows).astype("int64"),
            "kind": pd.Categorical(rng.choice(["x", "y", "z"], rows), categories=["z", "y", "x"]),
            "delay": np.where(rng.random(rows) < 0.1, np.nan, values),
            "distance": rng.integers(50, 3000, rows).astype("int64"),
        }
    )


def write_parquet_files(df: pd.DataFrame, folder: Path, files: int, row_group_rows: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(np.array_split(np.arange(len(df)), files)):
        table = pa.Table.from_pandas(df.iloc[part], preserve_index=False)
        pq.write_table(table, folder / f"data-{i:03d}.parquet", row_group_size=row_group_rows)
    return folder


@pytest.fixture(scope="session")
def table() -> pd.DataFrame:
    return make_frame(6_000)


@pytest.fixture(scope="session")
def dataset(table: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6,000 rows in 4 Parquet files of 500-row row groups."""
    return write_parquet_files(table, tmp_path_factory.mktemp("input") / "table", files=4, row_group_rows=500)


ENGINE_NAMES = list(ENGINES)


@pytest.fixture(scope="session", params=ENGINE_NAMES)
def engine(request: pytest.FixtureRequest) -> Iterator:
    """Each registered engine once per session, with two workers."""
    with get_engine(request.param, workers=2) as built:
        yield built
