"""The child side of a TPC-H measurement: one system, its queries in turn, in this fresh process.

Progress goes to `progress.jsonl` as it happens (a `start` line before a query, `done` or `error` after), so
the parent can time a query out, tell which query a dead process was running, and start a new process for
the rest. Each answer is written to `Q{nn}.parquet` outside the timed part.
"""

from __future__ import annotations

import json
import os
import time
import traceback

from bench.timer import Timer
from bench.tpch_systems import SYSTEMS, TpchSpec, system_of

PROGRESS = "progress.jsonl"


def answer_path(scratch: str, number: int) -> str:
    return os.path.join(scratch, f"Q{number:02d}.parquet")


def run_tpch(label: str, spec: TpchSpec) -> int:
    timer = Timer()
    with open(os.path.join(spec.scratch, PROGRESS), "a", buffering=1) as progress:
        def say(**event: object) -> None:
            progress.write(json.dumps({**event, "at": time.time()}) + "\n")

        try:
            with SYSTEMS[system_of(label)](spec, timer) as query:
                say(event="ready", phases=dict(timer.phases))
                for number in spec.queries:
                    say(event="start", query=number)
                    started = time.perf_counter()
                    try:
                        result = query(number)
                    except Exception as exc:  # noqa: BLE001 - this query's failure; the others still run
                        say(event="error", query=number, error=f"{type(exc).__name__}: {exc}"[:500],
                            traceback=traceback.format_exc()[-3000:])
                        continue
                    seconds = time.perf_counter() - started
                    result.to_parquet(answer_path(spec.scratch, number), index=False)
                    say(event="done", query=number, seconds=seconds)
        except BaseException as exc:  # the system itself did not start or stop: reported, then a failure
            say(event="system-error", error=f"{type(exc).__name__}: {exc}"[:500],
                traceback=traceback.format_exc()[-3000:])
            return 1
        say(event="finished", phases=dict(timer.phases))
    return 0
