"""The hand-written anchor: `multiprocessing.Pool` over files, a partial group-by per file, combined.

What a careful engineer writes without a framework; our `processes` engine should cost no more.
"""

from __future__ import annotations

import multiprocessing
import time

import pandas as pd

from bench import job
from bench.spec import RunSpec
from bench.timer import Timer


def pool(spec: RunSpec, t: Timer) -> pd.DataFrame:
    files = spec.files
    with t.phase("job"):
        started = time.perf_counter()
        with multiprocessing.Pool(spec.workers) as workers:
            t.record("pool_start_s", time.perf_counter() - started)
            parts = workers.map(job.partial_of_file, files, chunksize=1)
        result = job.combine(parts)
    return result
