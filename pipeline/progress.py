"""What a person sees during and after a run: a progress bar over tasks, then a summary table."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.io import Manifest
from pipeline.plan import Plan, Task


@contextmanager
def progress_bar(console: Console, title: str) -> Iterator[Callable[[Plan], Callable[[Task], None]]]:
    """Yields the `on_progress(plan)` hook a run takes: it adds a bar and returns the per-task callback."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:

        def start(plan: Plan) -> Callable[[Task], None]:
            bar = progress.add_task(title, total=len(plan))
            return lambda task: progress.advance(bar)

        yield start


def summary(manifest: Manifest) -> Table:
    """Rows in and out and time per stage, the output and its size."""
    table = Table(title=f"{manifest.rows:,} rows → {manifest.path}  ({manifest.seconds:.2f} s)", title_justify="left")
    for column in ("stage", "chunks", "rows in", "rows out", "task time (s)"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for name, count in manifest.stats.items():
        table.add_row(name, f"{count.chunks:,}", _count(count.rows_in), _count(count.rows_out), f"{count.seconds:.2f}")
    return table


def _count(rows: int | None) -> str:
    return "lazy" if rows is None else f"{rows:,}"
