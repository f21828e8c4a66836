"""What every system run gets: where the data is, how many workers, where to put scratch output."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class RunSpec:
    data: str  # a directory of trips-*.parquet files
    workers: int
    scratch: str  # a private directory for this run's outputs
    tasks: int = 2000  # tiny tasks, for the overhead runs
    tiny_file: str = ""  # one file of `tasks` row groups of 10 rows, for the overhead runs

    @property
    def files(self) -> list[str]:
        return sorted(glob.glob(os.path.join(self.data, "trips-*.parquet")))

    @property
    def pattern(self) -> str:
        return os.path.join(self.data, "trips-*.parquet")

    def out(self, name: str) -> str:
        return os.path.join(self.scratch, name)
