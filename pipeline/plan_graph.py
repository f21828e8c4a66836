"""A plan drawn for people: one node per group of tasks that do the same step, not one per task.

    Plan ──group()──▶ Graph(nodes, edges) ──annotate(measured)──▶ Graph ──▶ to_dot() / to_svg()

A task key names its group: `by_maker~1/chunk-00003` and `…/chunk-00004` are both `by_maker~1/chunk`, every
level of `combine-2-00001` is one `combine` tree. A `…/done` task only waits for (or checks) the tasks before
it, so it joins their group. Measured numbers (rows, seconds) per task may be added later, e.g. by a run
report; they are summed per group and shown under a node's label and on its outgoing edges.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from xml.sax.saxutils import escape

from pipeline.joining import JoinSource
from pipeline.io.scratch import ExchangeSource
from pipeline.plan import Plan, Task
from pipeline.plan_layout import layout
from pipeline.shuffle import Exchange

_INDEX = re.compile(r"(-\d+)+$")
WRAP = 44  # characters a label line may have before it is broken at a '+', ',' or space
CHAR_W, LINE_H, PAD = 7.4, 16.0, 12.0  # monospace 12px text: width per character, line height, box padding
FILL = {"chunks": "#e6f0fa", "exchange": "#fcebd2", "combine": "#e4f3e1", "finalize": "#e4f3e1",
        "commit": "#e8e8e8", "step": "#f5f5f5"}


@dataclass(frozen=True)
class Node:
    """A group of tasks doing one step: a person reads a chain over N chunks, not N boxes."""

    id: str  # the group's key, e.g. "by_maker~1/chunk"
    label: str  # lines separated by "\n": what the tasks do, then how many and how they combine
    kind: str  # chunks | exchange | combine | finalize | commit | step
    tasks: int  # plan tasks in the group (a folded `…/done` counts)


@dataclass(frozen=True)
class Edge:
    """Some task of `dst` needs a result of `src`."""

    src: str
    dst: str


@dataclass(frozen=True)
class Measure:
    """What was measured for a task or a group; None where unknown."""

    rows_in: int | None = None
    rows_out: int | None = None
    seconds: float | None = None

    def __add__(self, other: "Measure") -> "Measure":
        def add(a: float | None, b: float | None) -> float | None:
            return a if b is None else b if a is None else a + b
        return Measure(add(self.rows_in, other.rows_in), add(self.rows_out, other.rows_out),  # type: ignore[arg-type]
                       add(self.seconds, other.seconds))

    def describe(self) -> str:
        rows = (f"{self.rows_in:,} → {self.rows_out:,} rows" if self.rows_in is not None and self.rows_out is not None
                else f"{self.rows_out:,} rows" if self.rows_out is not None
                else f"{self.rows_in:,} rows in" if self.rows_in is not None else "")
        seconds = f"{self.seconds:.2f} s" if self.seconds is not None else ""
        return ", ".join(part for part in (rows, seconds) if part)


@dataclass(frozen=True)
class Graph:
    """Nodes in plan order, edges each once; `members` lets task-level measures find their node."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    members: Mapping[str, str] = field(default_factory=dict)  # task key → node id
    measures: Mapping[str, Measure] = field(default_factory=dict)  # node id → summed over its tasks


def group_of(key: str) -> str:
    """`a~1/chunk-00003` → `a~1/chunk`; `combine-2-00001` → `combine`."""
    head, sep, last = key.rpartition("/")
    return head + sep + _INDEX.sub("", last)


def group(plan: Plan) -> Graph:
    """The plan's tasks grouped by step, with the dependencies between groups (each once)."""
    members = {task.key: group_of(task.key) for task in plan}
    for task in plan:  # a wait on one group's tasks is part of that group
        owners = {members[d] for d in task.deps}
        if members[task.key].endswith("/done") and len(owners) == 1:
            members[task.key] = owners.pop()
    tasks: dict[str, list[Task]] = {}
    for task in plan:
        tasks.setdefault(members[task.key], []).append(task)
    edges = {Edge(members[d], members[t.key]): None for t in plan for d in t.deps if members[d] != members[t.key]}
    nodes = tuple(_node(gid, [t for t in ts if group_of(t.key) == gid] or ts, len(ts)) for gid, ts in tasks.items())
    return Graph(nodes, tuple(edges), members)


def annotate(graph: Graph, measured: Mapping[str, Measure]) -> Graph:
    """The graph with measures summed per node; keys are task keys, or node ids for numbers already summed."""
    ids = {node.id for node in graph.nodes}
    sums: dict[str, Measure] = dict(graph.measures)
    for key, measure in measured.items():
        node = graph.members.get(key, key if key in ids else None)
        if node is not None:
            sums[node] = sums.get(node, Measure()) + measure
    return replace(graph, measures=sums)


def _node(gid: str, tasks: list[Task], count: int) -> Node:
    """A group's node from its own tasks (`count` includes folded waits)."""
    step = gid.rpartition("/")[2]
    dataset = gid.rpartition("/")[0].rsplit("~", 1)[0]
    done = [t for t in tasks if t.label != "reuse"]
    title = Counter(t.label for t in done).most_common(1)[0][0] if done else "reuse"
    reused = f", {len(tasks) - len(done)} reused" if len(done) < len(tasks) else ""
    if step == "combine":
        levels = len({t.key.rsplit("-", 2)[-2] for t in tasks})
        fan_in = max((len(t.deps) for t in tasks), default=0)
        prefix = f"{dataset}: " if dataset and not title.startswith(f"{dataset}: ") else ""
        detail = f"combine tree, fan-in {fan_in}, {levels} level{'s' if levels != 1 else ''}"
        return Node(gid, f"{prefix}{title}\n{detail}", "combine", count)
    if step in ("commit", "finalize"):
        return Node(gid, title, step, count)
    if any(t.chunk is not None for t in tasks):
        source = next((t.args[0] for t in done if t.args), None)
        unit = "partition" if isinstance(source, (JoinSource, ExchangeSource)) else "chunk"
        detail = f"×{len(tasks)} {unit}{'s' if len(tasks) != 1 else ''}"
        if isinstance(source, JoinSource):
            detail += f" of {source.describe()}"
        exchange = _exchange(done[0]) if done else ""  # every map task of a group has the same spec
        kind = "exchange" if step == "map" or exchange else "chunks"
        return Node(gid, "\n".join([title, detail + reused, *([exchange] if exchange else [])]), kind, count)
    return Node(gid, title + (f"\n×{len(tasks)} tasks" if len(tasks) > 1 else ""), "step", count)


def _exchange(task: Task) -> str:
    """'exchange by hash of k into N partitions' for a map task (its spec, then the partition count)."""
    for i, arg in enumerate(task.args[:-1]):
        if isinstance(arg, Exchange) and isinstance(task.args[i + 1], int):
            return arg.describe(task.args[i + 1])
    return ""


def lines(graph: Graph, node: Node) -> list[str]:
    """A node's label as display lines: long ones broken at '+', ',' or a space; the measure last."""
    out = [piece for line in _printable(node.label).split("\n") for piece in _wrap(line)]
    measure = graph.measures.get(node.id)
    return [*out, measure.describe()] if measure is not None and measure.describe() else out


def _wrap(line: str) -> list[str]:
    out = [""]
    for token in re.split(r"(?<=[+, ])", line):
        if out[-1] and len(out[-1]) + len(token) > WRAP:
            out.append("")
        out[-1] += token
    return [piece.rstrip() for piece in out]


def _edge_label(graph: Graph, edge: Edge) -> str:
    """Rows the edge's source step produced, when measured."""
    measure = graph.measures.get(edge.src)
    return f"{measure.rows_out:,} rows" if measure is not None and measure.rows_out is not None else ""


def _fill(node: Node) -> str:
    return FILL.get(node.kind, FILL["step"])


def _dot_quote(text: str) -> str:
    return '"' + _printable(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(graph: Graph) -> str:
    """The graph in the dot language, every id and label quoted."""
    out = ["digraph plan {", "  rankdir=TB;",
           '  node [shape=box, style="rounded,filled", fontname="monospace", fontsize=11];',
           '  edge [fontname="monospace", fontsize=10];']
    for node in graph.nodes:
        label = _dot_quote("\n".join(lines(graph, node)))
        tip = _dot_quote(f"{node.id}: {node.tasks} task{'s' if node.tasks != 1 else ''}")
        out.append(f'  {_dot_quote(node.id)} [label={label}, tooltip={tip}, fillcolor="{_fill(node)}"];')
    for edge in graph.edges:
        label = _edge_label(graph, edge)
        attrs = f" [label={_dot_quote(label)}]" if label else ""
        out.append(f"  {_dot_quote(edge.src)} -> {_dot_quote(edge.dst)}{attrs};")
    out.append("}")
    return "\n".join(out) + "\n"


def _printable(text: str) -> str:
    """Without control characters (XML 1.0 cannot hold them); line breaks kept."""
    return "".join(c for c in text if c >= " " or c == "\n")


def _xml(text: str) -> str:
    return escape(_printable(text))


def _attr(text: str) -> str:
    return _xml(text).replace('"', "&quot;")


def to_svg(graph: Graph) -> str:
    """A standalone SVG: boxes in layers top to bottom, edges as curves with arrowheads; nothing external."""
    texts = {node.id: lines(graph, node) for node in graph.nodes}
    sizes = {nid: (max(len(t) for t in ts) * CHAR_W + 2 * PAD, len(ts) * LINE_H + PAD) for nid, ts in texts.items()}
    placed = layout(sizes, [(e.src, e.dst) for e in graph.edges])
    w, h = round(placed.width), round(placed.height)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
           'font-family="monospace" font-size="12">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
           'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#4d5b6a"/></marker></defs>']
    for edge in graph.edges:
        points = placed.routes[(edge.src, edge.dst)]
        path = f"M{points[0][0]:.1f},{points[0][1]:.1f}"
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            bend = (y1 - y0) / 2
            path += f" C{x0:.1f},{y0 + bend:.1f} {x1:.1f},{y1 - bend:.1f} {x1:.1f},{y1:.1f}"
        out.append(f'<path class="edge" data-src="{_attr(edge.src)}" data-dst="{_attr(edge.dst)}" d="{path}" '
                   'fill="none" stroke="#4d5b6a" stroke-width="1.2" marker-end="url(#arrow)"/>')
        label = _edge_label(graph, edge)
        if label:
            x0, y0 = points[0]  # beside the edge where it leaves its source, vertically
            out.append(f'<text class="edge-label" x="{x0 + 6:.1f}" y="{y0 + 16:.1f}" '
                       f'font-size="10" fill="#4d5b6a">{_xml(label)}</text>')
    for node in graph.nodes:
        box = placed.boxes[node.id]
        cx = box.x + box.w / 2
        tip = f"{node.id}: {node.tasks} task{'s' if node.tasks != 1 else ''}"
        spans = "".join(f'<tspan x="{cx:.1f}" y="{box.y + PAD / 2 + LINE_H * (i + 0.75):.1f}">{_xml(t)}</tspan>'
                        for i, t in enumerate(texts[node.id]))
        out.append(f'<g class="node" data-id="{_attr(node.id)}" data-kind="{node.kind}"><title>{_xml(tip)}</title>'
                   f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{box.h:.1f}" rx="6" '
                   f'fill="{_fill(node)}" stroke="#4d5b6a"/>'
                   f'<text text-anchor="middle" fill="#1d2733">{spans}</text></g>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def draw(plan: Plan, fmt: str, measured: Mapping[str, Measure] | None = None) -> str:
    """The plan's group graph as `dot` or `svg` text, with measures per task when given."""
    graph = group(plan)
    if measured:
        graph = annotate(graph, measured)
    if fmt == "dot":
        return to_dot(graph)
    if fmt == "svg":
        return to_svg(graph)
    raise ValueError(f"unknown plan format {fmt!r} (expected dot or svg)")
