"""A shuffle's data goes through files, not memory: a table bigger than a worker's memory limit is sorted
by workers held to that limit (one over it would be stopped, and one that kept going over it would stop the
run), and the output's parts in order are the table in order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import get_engine, read
from pipeline.io.source import DEFAULT_CHUNK_ROWS

ROWS = 25_000_000  # 400 MB of int64 keys and float64 values: more than a worker may hold
LIMIT = "300MB"


def test_a_table_bigger_than_a_worker_is_sorted_by_workers_held_to_their_limit(tmp_path: Path):
    source = tmp_path / "big.parquet"
    rng = np.random.default_rng(0)
    schema = pa.schema([("k", pa.int64()), ("v", pa.float64())])
    with pq.ParquetWriter(source, schema) as writer:
        for _ in range(ROWS // 1_000_000):
            piece = pa.table({"k": rng.integers(0, 1 << 40, 1_000_000), "v": rng.random(1_000_000)}, schema=schema)
            writer.write_table(piece, row_group_size=250_000)

    with get_engine("processes", workers=2, worker_memory=LIMIT) as engine:
        assert engine.worker_memory < ROWS * 16  # the table really is bigger than a worker's limit
        manifest = read(str(source)).sort("k").write(str(tmp_path / "sorted")).run(engine)

    assert manifest.rows == ROWS and len(manifest.files) >= ROWS // DEFAULT_CHUNK_ROWS  # a partition per chunk
    previous_last = -1
    for entry in sorted(manifest.files, key=lambda f: f["file"]):  # part names in order: the table in order
        keys = pq.read_table(tmp_path / "sorted" / entry["file"], columns=["k"])["k"].to_numpy()
        assert (np.diff(keys) >= 0).all() and (len(keys) == 0 or keys[0] >= previous_last)
        previous_last = keys[-1] if len(keys) else previous_last
