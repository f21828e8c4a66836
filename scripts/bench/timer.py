"""What a system reports from inside its own process: phase times and extra numbers.

The parent cannot time a job from outside without counting interpreter start-up and imports, so each
system marks its own phases: import, startup (engine or cluster), job, teardown.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Timer:
    phases: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a block; a repeated phase name adds up."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - started

    def record(self, name: str, value: float) -> None:
        self.metrics[name] = float(value)


def timed(fn, *args, **kwargs) -> float:  # noqa: ANN001 - any callable
    """Seconds one call takes."""
    started = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - started
