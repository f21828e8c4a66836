"""What recording a run's timeline costs: the taxi job on `processes`, each run a fresh process, with
`PIPELINE_TIMELINE=off` and on, interleaved; medians of the job's time and their ratio."""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path

from bench.measure import measure
from bench.spec import RunSpec


def main(data: str, workers: int, repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="recording-") as scratch:
        for _ in range(repeats):
            for state in ("off", "on"):
                os.environ["PIPELINE_TIMELINE"] = state
                record, _ = measure("ours-processes", RunSpec(data, workers, scratch), Path(scratch))
                if "error" in record:
                    raise SystemExit(f"recording {state}: {record['error']}\n{record.get('log_tail', '')}")
                times[state].append(record["phases"]["job"])
    os.environ.pop("PIPELINE_TIMELINE", None)
    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    print(f"taxi job on processes ({workers} workers), median of {repeats}: recording off {off:.3f} s, "
          f"on {on:.3f} s, on/off = {on / off:.3f} (target ≤ 1.02)")
    return {"off_s": off, "on_s": on, "ratio": on / off}
