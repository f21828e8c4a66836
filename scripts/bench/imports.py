"""The import-time budget of `pipeline run`: what the command imports before and around a run, from
`python -X importtime`, so that a module that starts costing start-up time shows in the next benchmark.

Runs the command once in a fresh process over the taxi job and returns the packages that cost the most to
import (each package's own modules) and the total.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOP = 12


def budget(data: str, workers: int) -> dict:
    """{"total_s": ..., "modules": [[name, seconds], ...]} for one `pipeline run` of the taxi job."""
    with tempfile.TemporaryDirectory(prefix="imports-") as folder:
        config = Path(folder) / "taxi.toml"
        config.write_text((ROOT / "configs" / "taxi.toml").read_text())
        command = [sys.executable, "-X", "importtime", "-m", "pipeline.cli", "run", str(config), "--quiet",
                   "--workers", str(workers), "--set", f'source.path="{data}"',
                   "--set", f'sink.path="{folder}/out.parquet"', "--set", 'sink.mode="overwrite"']
        done = subprocess.run(command, capture_output=True, text=True, cwd=folder,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise RuntimeError(f"pipeline run failed: {done.stderr[-2000:]}")
    return parse(done.stderr)


def parse(stderr: str) -> dict:
    """Each top-level package's own import time: the `self` column of `-X importtime` summed over its modules,
    so pandas is counted under pandas, not under the module of ours that imported it."""
    own: dict[str, float] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, _, name = (part for part in line[len("import time:"):].split("|"))
        root = name.strip().split(".")[0]
        own[root] = own.get(root, 0.0) + int(self_us) / 1e6
    ranked = sorted(own.items(), key=lambda kv: -kv[1])
    return {"total_s": round(sum(own.values()), 3), "modules": [[n, round(s, 3)] for n, s in ranked[:TOP]]}


def show(found: dict, console: object) -> None:
    console.print(f"import-time budget of `pipeline run` (taxi job): {found['total_s']:.2f} s in all; top modules: "
                  + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in found["modules"]))
