"""The child side of a measurement: run one system in this fresh process and report to files.

The parent reads `result.json` (phase times, metrics, or the error) and `result.parquet` (the answer,
normalised outside the timed phases).
"""

from __future__ import annotations

import json
import os
import traceback

import pandas as pd

from bench import job
from bench.spec import RunSpec
from bench.systems import resolve
from bench.timer import Timer

RESULT_JSON = "result.json"
RESULT_PARQUET = "result.parquet.normalized"


def run_one(name: str, spec: RunSpec) -> int:
    timer = Timer()
    report: dict = {"system": name}
    try:
        output = resolve(name)(spec, timer)
        if isinstance(output, pd.DataFrame):
            job.normalize(output).to_parquet(os.path.join(spec.scratch, RESULT_PARQUET))
        code = 0
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails loudly
        report["error"] = f"{type(exc).__name__}: {exc}"
        report["traceback"] = traceback.format_exc()
        code = 1
    report["phases"] = timer.phases
    report["metrics"] = timer.metrics
    with open(os.path.join(spec.scratch, RESULT_JSON), "w") as f:
        json.dump(report, f)
    return code
