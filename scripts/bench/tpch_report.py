"""The TPC-H suite's console output: a line per system run, the query × system table, the targets."""

from __future__ import annotations

from rich.table import Table

from bench.report import console, targets_table  # noqa: F401 - re-exported for the suite

OURS = "ours-processes"


def _cell(row: dict | None) -> str:
    if row is None:
        return ""
    if "seconds" not in row:
        return "[yellow]" + _reason(row["error"]) + "[/yellow]"
    wrong = "" if row.get("verdict", "ok") == "ok" else " [red]WRONG[/red]"
    return f"{row['seconds']:.2f}{wrong}"


def _reason(error: str) -> str:
    """A short form of why a query did not run, for a table cell (the JSON keeps the whole message)."""
    first = error.splitlines()[0] if error else "failed"
    return first if len(first) <= 28 else first[:27] + "…"


def progress_line(repeat: int, repeats: int, label: str, records: list[dict]) -> None:
    done = [r for r in records if "seconds" in r]
    total = sum(r["seconds"] for r in done)
    failed = [f"Q{r['query']:02d}" for r in records if "seconds" not in r]
    wrong = [f"Q{r['query']:02d}" for r in done if r.get("verdict") != "ok"]
    noisy = sum(1 for r in done if r.get("noisy"))
    console.print(f"  [{repeat + 1}/{repeats}] {label:<26} {len(done):>2} ran in {total:7.2f} s"
                  + (f"  not run: {','.join(failed)}" if failed else "")
                  + (f"  [red]wrong: {','.join(wrong)}[/red]" if wrong else "")
                  + (f"  ({noisy} noisy)" if noisy else ""), highlight=False)


def query_table(summary: dict[str, dict[int, dict]], queries: tuple[int, ...]) -> None:
    """Median seconds per query (rows) and system (columns), and each system's total and peak."""
    labels = list(summary)
    table = Table(title="TPC-H: median seconds per query, inside a warm process (start-up excluded)")
    table.add_column("query")
    for label in labels:
        table.add_column(label, justify="right")
    for number in queries:
        table.add_row(f"Q{number:02d}", *(_cell(summary[label].get(number)) for label in labels))
    totals, peaks, temps, cpus = [], [], [], []
    for label in labels:
        rows = summary[label].values()
        ran = [r["seconds"] for r in rows if "seconds" in r]
        totals.append(f"{sum(ran):.2f}" + ("" if len(ran) == len(rows) else f" ({len(ran)}/{len(rows)})"))
        peaks.append(f"{max((r.get('peak_rss_mb', 0) for r in rows), default=0):.0f}")
        temps.append(f"{max((r.get('temp_mb', 0) for r in rows), default=0):.0f}")
        cpus.append(f"{sum(r.get('cpu_s', 0) for r in rows):.1f}")
    table.add_row("total", *totals)
    table.add_row("peak MB", *peaks)
    table.add_row("temp files MB", *temps)
    table.add_row("CPU s (process tree)", *cpus)
    console.print(table)


def breakdown_table(rows: dict[int, dict]) -> None:
    """Seconds per kind of work for each join query (summed over workers, so they add up to workers × wall)."""
    from bench.tpch_breakdown import CATEGORIES

    if not rows:
        return
    table = Table(title="Where ours-processes spends its time in the join queries (seconds, summed over workers)")
    for column in ("query", "wall s", *CATEGORIES):
        table.add_column(column, justify="left" if column == "query" else "right")
    for number, row in sorted(rows.items()):
        table.add_row(f"Q{number:02d}", f"{row['seconds']:.2f}", *(f"{row[c]:.2f}" for c in CATEGORIES))
    totals = {c: sum(row[c] for row in rows.values()) for c in CATEGORIES}
    whole = sum(totals.values()) or 1.0
    table.add_row("share", f"{sum(r['seconds'] for r in rows.values()):.2f}",
                  *(f"{100 * totals[c] / whole:.0f}%" for c in CATEGORIES))
    console.print(table)
