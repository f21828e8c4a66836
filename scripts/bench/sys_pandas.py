"""pandas in one process: the whole table at once, and file by file (the parallel-efficiency base)."""

from __future__ import annotations

import pandas as pd

from bench import job
from bench.spec import RunSpec
from bench.timer import Timer


def whole(spec: RunSpec, t: Timer) -> pd.DataFrame:
    with t.phase("job"):
        df = pd.read_parquet(spec.data, columns=job.COLUMNS)
        result = job.aggregate_whole(job.clean_transform(df))
    return result


def files(spec: RunSpec, t: Timer) -> pd.DataFrame:
    with t.phase("job"):
        result = job.combine([job.partial_of_file(path) for path in spec.files])
    return result
