"""A run report as one HTML file that opens anywhere, offline: `facts` (from `pipeline.report`) in, a page out.

    facts ──json (once, `<` escaped)──▶ <script type="application/json" id="report-data">
    report_assets/report.css, report.js ──inline──▶ <style>, <script>   (no network, no CDN)
    facts["plan_svg"] ──inline──▶ the plan panel (kept out of the JSON so nothing is embedded twice)

The page draws itself from the JSON: tables as DOM nodes (text only, never parsed as HTML) and the timeline
on a <canvas>, so tens of thousands of task bars stay quick to draw and to hover.
"""

from __future__ import annotations

import html
import json
import math
from importlib import resources
from typing import Any

PANELS = (  # id, heading, how to read it
    ("plan", "Plan", "One box per step of the task graph, top to bottom in the order they run; hover a box "
                     "for its task count."),
    ("timeline", "Timeline", "One row per worker lane, time left to right; each bar is one task, coloured by "
                             "stage. Red hatched bars failed; a dark notch marks a retry. Hover a bar for details."),
    ("stages", "Time per stage", "Task seconds summed per stage, split by what the tasks spent them on; queued is "
                                 "time sent to a worker but not yet started. Wide bars are where the run went."),
    ("workers", "Workers", "Per worker: lanes, busy task seconds, the share of (lanes × wall time) left idle, "
                           "and peak memory. High idle % means too few or too uneven tasks."),
    ("skew", "Skew", "Per stage the slowest, median and fastest task; a slowest far above the median is one "
                     "chunk or file holding the stage up."),
    ("advice", "Advice", "What the numbers suggest, each with the figure it comes from."),
    ("io", "I/O and memory", "Rows in and out, bytes written to the outputs and spilled to scratch by "
                             "exchanges, and each worker's peak resident memory."),
    ("outputs", "Outputs", "What was committed: each output's rows and files, and its stages' counters."),
)


def _asset(name: str) -> str:
    return (resources.files("pipeline") / "report_assets" / name).read_text(encoding="utf-8")


def _finite(value: Any) -> Any:
    """NaN and infinities as null: JSON.parse refuses them and the page would stay blank."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def data_json(facts: dict[str, Any]) -> str:
    """The facts (less the SVG) as JSON that cannot end its <script>: every `<` is written as \\u003c."""
    data = {k: v for k, v in facts.items() if k != "plan_svg"}
    text = json.dumps(_finite(data), separators=(",", ":"), ensure_ascii=False, default=str)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render(facts: dict[str, Any]) -> str:
    """The whole page as one string."""
    title = html.escape(str(facts.get("title") or "pipeline run"))
    svg = facts.get("plan_svg") or ""  # made by pipeline.plan_graph.draw, which escapes its text
    panels = []
    for pid, heading, how in PANELS:
        body = f'<div class="plan-svg">{svg}</div>' if pid == "plan" and svg else f'<div id="{pid}-body"></div>'
        if pid == "plan" and not svg:
            body = '<p class="none">No plan drawing in this report.</p>'
        panels.append(f'<section id="panel-{pid}"><h2>{heading}</h2><p class="how">{html.escape(how)}</p>'
                      f'{body}</section>')
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">",
        f"<title>{title}</title>",
        f"<style>\n{_asset('report.css')}</style>",
        "</head><body>",
        '<header id="header"><h1>' + title + '</h1><div id="header-body"></div></header>',
        '<noscript><p class="error">This report draws itself with JavaScript; enable it to see the run.</p></noscript>',
        *panels,
        f'<script type="application/json" id="report-data">{data_json(facts)}</script>',
        f"<script>\n{_asset('report.js')}</script>",
        "</body></html>",
        "",
    ])


def write(facts: dict[str, Any], path: str) -> None:
    """Write the page to `path` (UTF-8)."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(render(facts))
