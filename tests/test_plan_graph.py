"""`pipeline plan --format dot|svg`: a plan's tasks grouped into one node per step (a fused chain over every
chunk, a combine tree, an exchange with its partitions, the commit), edges following the tasks' dependencies,
written as dot (checked by the `dot` program when installed) and as a standalone SVG laid out without it."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import Pipeline
from pipeline.dataset import read
from pipeline.graph_run import describe
from pipeline.io import FileSource
from pipeline.plan import Plan
from pipeline.plan_graph import CHAR_W, Edge, Graph, Measure, Node, annotate, group, lines, to_dot, to_svg
from pipeline.plan_layout import layout, ranks
from stages.analyze import aggregate
from stages.clean import drop_nulls
from stages.transform import derive
from test_cli import cli

SVG = "{http://www.w3.org/2000/svg}"


# ---- checks shared by the tests ------------------------------------------------------------------------------


def edges_from_tasks(plan: Plan, graph: Graph) -> set[Edge]:
    """What the group edges must be: every task dependency between two different groups."""
    of = graph.members
    return {Edge(of[d], of[t.key]) for t in plan for d in t.deps if of[d] != of[t.key]}


def check_grouping(plan: Plan, graph: Graph) -> None:
    assert sum(node.tasks for node in graph.nodes) == len(plan)  # every task in exactly one node
    assert set(graph.members) == set(plan.tasks)
    assert len({n.id for n in graph.nodes}) == len(graph.nodes)
    assert len(set(graph.edges)) == len(graph.edges) and set(graph.edges) == edges_from_tasks(plan, graph)
    rank = ranks([n.id for n in graph.nodes], [(e.src, e.dst) for e in graph.edges])
    assert all(rank[e.src] < rank[e.dst] for e in graph.edges)  # no cycle among groups
    assert rank["commit"] == max(rank.values())
    assert {n.id for n in graph.nodes} - {e.src for e in graph.edges} == {"commit"}  # every step leads to it


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


QUOTED = r'"((?:[^"\\]|\\.)*)"'


def check_dot(text: str, graph: Graph) -> None:
    """The dot text has the graph's nodes and edges, every string quoted; `dot` itself accepts it if present."""
    body = text.strip().splitlines()
    assert body[0] == "digraph plan {" and body[-1] == "}"
    nodes, edges = {}, set()
    for line in body[1:-1]:
        if m := re.fullmatch(rf"\s*{QUOTED}\s*->\s*{QUOTED}(\s*\[.*\])?;", line):
            edges.add(Edge(_unquote(m.group(1)), _unquote(m.group(2))))
        elif m := re.fullmatch(rf"\s*{QUOTED}\s*\[label={QUOTED}, .*\];", line):
            nodes[_unquote(m.group(1))] = _unquote(m.group(2))
        else:
            assert re.fullmatch(r"\s*(rankdir=TB|node \[.*\]|edge \[.*\]);", line), line
    assert nodes == {n.id: "\n".join(lines(graph, n)) for n in graph.nodes}
    assert edges == set(graph.edges)
    if shutil.which("dot"):
        done = subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        ET.fromstring(done.stdout.encode())


def _path_ends(d: str) -> tuple[tuple[float, float], tuple[float, float]]:
    numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", d)]
    return (numbers[0], numbers[1]), (numbers[-2], numbers[-1])


def check_svg(text: str, graph: Graph) -> ET.Element:
    """Valid XML, a viewBox, one group with one box per node and one path per edge from box to box, text that
    fits its box, and nothing it refers to outside itself."""
    root = ET.fromstring(text)
    assert root.tag == f"{SVG}svg"
    width, height = (float(v) for v in root.get("viewBox").split()[2:])
    assert width > 0 and height > 0
    for element in root.iter():
        assert element.tag not in (f"{SVG}image", f"{SVG}script", f"{SVG}foreignObject", f"{SVG}use")
        for name, value in element.attrib.items():
            assert "href" not in name, (name, value)
            assert "url(" not in value or value.startswith("url(#"), value
    groups = root.findall(f".//{SVG}g[@class='node']")
    assert len(groups) == len(graph.nodes) and len(root.findall(f".//{SVG}rect")) == len(graph.nodes)
    boxes = {}
    for g in groups:
        rects = g.findall(f"{SVG}rect")
        assert len(rects) == 1
        box = [float(rects[0].get(k)) for k in ("x", "y", "width", "height")]
        assert 0 <= box[0] and box[0] + box[2] <= width and 0 <= box[1] and box[1] + box[3] <= height
        spans = [t.text or "" for t in g.iter(f"{SVG}tspan")]
        assert box[2] >= max(len(s) for s in spans) * CHAR_W
        boxes[g.get("data-id")] = box
    assert set(boxes) == {n.id for n in graph.nodes}
    for a, (ax, ay, aw, ah) in boxes.items():  # no two boxes overlap
        for b, (bx, by, bw, bh) in boxes.items():
            assert a == b or ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay, (a, b)
    paths = root.findall(f".//{SVG}path[@class='edge']")
    assert len(paths) == len(graph.edges)
    assert {Edge(p.get("data-src"), p.get("data-dst")) for p in paths} == set(graph.edges)
    for p in paths:  # from the bottom of its source's box to the top of its destination's
        (x0, y0), (x1, y1) = _path_ends(p.get("d"))
        src, dst = boxes[p.get("data-src")], boxes[p.get("data-dst")]
        assert src[0] <= x0 <= src[0] + src[2] and y0 == pytest.approx(src[1] + src[3], abs=0.1)
        assert dst[0] <= x1 <= dst[0] + dst[2] and y1 == pytest.approx(dst[1], abs=0.1)
        assert p.get("marker-end") == "url(#arrow)"
    return root


def node(graph: Graph, id: str) -> Node:
    return next(n for n in graph.nodes if n.id == id)


# ---- a linear pipeline: 12 chunks --------------------------------------------------------------------------


def test_a_fused_chain_over_twelve_chunks_is_one_node(dataset: Path):
    pipeline = (Pipeline().then(drop_nulls, columns=["delay"]).then(derive, columns={"twice": "delay * 2"})
                .then(aggregate, by=["carrier"], aggs={"n": ["id", "count"]}))
    plan = pipeline.plan(FileSource(str(dataset), chunk_rows=500))
    graph = group(plan)
    check_grouping(plan, graph)
    assert [n.id for n in graph.nodes] == ["chunk", "combine", "finalize", "commit"]
    chunks, tree = node(graph, "chunk"), node(graph, "combine")
    assert (chunks.kind, chunks.tasks) == ("chunks", 12)
    assert chunks.label == "read+drop_nulls+derive+aggregate:partial\n×12 chunks"
    assert (tree.kind, tree.tasks) == ("combine", 3)  # 12 partials → 2 combines → 1
    assert tree.label.endswith("combine tree, fan-in 8, 2 levels")
    assert graph.edges == (Edge("chunk", "combine"), Edge("combine", "finalize"), Edge("finalize", "commit"))
    check_dot(to_dot(graph), graph)
    check_svg(to_svg(graph), graph)


def test_per_chunk_writes_go_straight_to_the_commit(dataset: Path):
    plan = Pipeline().then(drop_nulls, columns=["delay"]).plan(FileSource(str(dataset), chunk_rows=500))
    graph = group(plan)
    check_grouping(plan, graph)
    assert [(n.id, n.tasks) for n in graph.nodes] == [("chunk", 12), ("commit", 1)]
    assert graph.edges == (Edge("chunk", "commit"),)


# ---- a graph of datasets: joins, an aggregate, two outputs ------------------------------------------------


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Orders (600 rows in 3 files, 6 chunks of 100) and customers (160 rows, 4 chunks of 40) sharing `okey`."""
    root = tmp_path_factory.mktemp("plan_graph")
    rng = np.random.default_rng(3)
    orders = pa.table({"id": np.arange(600), "okey": rng.integers(0, 50, 600), "amount": rng.integers(0, 40, 600) / 4})
    customers = pa.table({"okey": np.arange(160) % 60, "region": rng.choice(["east", "west"], 160)})
    (root / "orders").mkdir()
    for i in range(3):
        pq.write_table(orders.slice(200 * i, 200), root / "orders" / f"data-{i}.parquet", row_group_size=100)
    pq.write_table(customers, root / "customers.parquet", row_group_size=40)
    return {"orders": root / "orders", "customers": root / "customers.parquet", "root": root}


def test_a_shuffle_join_shows_both_exchanges_with_their_partitions(tables: dict[str, Path], tmp_path: Path):
    orders = read(str(tables["orders"]), chunk_rows=100, name="orders")
    customers = read(str(tables["customers"]), chunk_rows=40, name="customers")
    totals = (orders.join(customers, on="okey", strategy="shuffle")
              .aggregate(by="region", aggs={"total": ["amount", "sum"]}).named("totals"))
    plan = describe([totals.write(str(tmp_path / "t.parquet")), orders.write(str(tmp_path / "o"))])
    graph = group(plan)
    check_grouping(plan, graph)
    left, right = node(graph, "orders~1/map"), node(graph, "customers~1/map")
    assert (left.kind, left.tasks) == ("exchange", 7)  # 6 maps and their partition-size check
    assert (right.kind, right.tasks) == ("exchange", 5)
    assert left.label.splitlines()[1:] == ["×6 chunks", "exchange by hash of okey into 6 partitions"]
    assert right.label.splitlines()[1:] == ["×4 chunks", "exchange by hash of okey into 6 partitions"]
    joined = node(graph, "totals~1/chunk")
    assert joined.tasks == 6 and "×6 partitions of join orders ⋈ customers" in joined.label
    assert {e.src for e in graph.edges if e.dst == joined.id} == {left.id, right.id}
    assert node(graph, "totals~1/combine").label.endswith("fan-in 6, 1 level")
    assert node(graph, "orders.write~1/part").tasks == 6  # the second output reads orders on its own
    assert [e.dst for e in graph.edges if e.src == "orders.write~1/part"] == ["commit"]
    check_dot(to_dot(graph), graph)
    check_svg(to_svg(graph), graph)


def test_a_broadcast_join_folds_its_wait_into_the_small_side(tables: dict[str, Path], tmp_path: Path):
    orders = read(str(tables["orders"]), chunk_rows=100, name="orders")
    customers = read(str(tables["customers"]), chunk_rows=40, name="customers")
    joined = orders.join(customers, on="okey", strategy="broadcast").named("joined")
    plan = describe([joined.write(str(tmp_path / "j"))])
    graph = group(plan)
    check_grouping(plan, graph)
    assert [(n.id, n.tasks) for n in graph.nodes] == [
        ("customers.broadcast~1/part", 5), ("joined.write~1/part", 6), ("commit", 1)]
    assert "join customers" in node(graph, "joined.write~1/part").label
    assert graph.edges == (Edge("customers.broadcast~1/part", "joined.write~1/part"),
                           Edge("joined.write~1/part", "commit"))


# ---- measures, escaping, layout ----------------------------------------------------------------------------


def test_measures_per_task_are_summed_per_node_and_shown(dataset: Path):
    plan = Pipeline().then(aggregate, by=["carrier"], aggs={"n": ["id", "count"]}).plan(
        FileSource(str(dataset), chunk_rows=500))
    measured = {t.key: Measure(rows_in=10, rows_out=7, seconds=0.5) for t in plan if t.key.startswith("chunk-")}
    graph = annotate(group(plan), {**measured, "finalize": Measure(rows_out=5), "no-such-task": Measure(1, 1)})
    assert graph.measures == {"chunk": Measure(120, 84, 6.0), "finalize": Measure(rows_out=5)}
    assert lines(graph, node(graph, "chunk"))[-1] == "120 → 84 rows, 6.00 s"
    dot = to_dot(graph)
    check_dot(dot, graph)
    assert '"chunk" -> "combine" [label="84 rows"];' in dot
    root = check_svg(to_svg(graph), graph)
    assert [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "edge-label"] == ["84 rows", "5 rows"]


def test_labels_and_ids_that_need_escaping():
    nasty = 'say "hi" <b> & \\n done\x01'
    graph = Graph((Node('a"1', nasty, "step", 1), Node("b\\2", "ok\nline two", "chunks", 2),
                   Node("commit", "commit", "commit", 1)),
                  (Edge('a"1', "b\\2"), Edge("b\\2", "commit"), Edge('a"1', "commit")))
    check_dot(to_dot(graph), graph)
    root = check_svg(to_svg(graph), graph)
    spans = [t.text for t in root.iter(f"{SVG}tspan")]
    assert 'say "hi" <b> & \\n done' in spans and "line two" in spans


def test_layout_ranks_by_longest_path_and_uncrosses_edges():
    sizes = {n: (40.0, 20.0) for n in ("a1", "a2", "b1", "b2", "c")}
    edges = [("a1", "b2"), ("a2", "b1"), ("b1", "c"), ("b2", "c"), ("a1", "c")]
    placed = layout(sizes, edges)
    assert ranks(list(sizes), edges) == {"a1": 0, "a2": 0, "b1": 1, "b2": 1, "c": 2}
    boxes = placed.boxes
    assert (boxes["a1"].x < boxes["a2"].x) == (boxes["b2"].x < boxes["b1"].x)  # no crossing left
    assert len(placed.routes[("a1", "c")]) == 3  # the long edge passes a point in the middle layer
    assert ranks(["x", "y"], [("x", "y"), ("y", "x")]).keys() == {"x", "y"}  # a cycle does not hang


# ---- the command -------------------------------------------------------------------------------------------


def test_the_command_prints_svg_and_dot_and_keeps_text(dataset: Path, tables: dict[str, Path], tmp_path: Path):
    linear = tmp_path / "job.toml"
    linear.write_text(
        f'[source]\npath = "{dataset}"\nchunk_rows = 500\n'
        '[[stages]]\nname = "landed"\nuses = "stages.clean:drop_nulls"\nparams = { columns = ["delay"] }\n'
        '[[stages]]\nname = "per_carrier"\nuses = "stages.analyze:aggregate"\n'
        'params = { by = ["carrier"], aggs = { n = ["id", "count"] } }\n'
        f'[sink]\npath = "{tmp_path / "out.parquet"}"\n')
    graph = tmp_path / "graph.toml"
    graph.write_text(
        f'[inputs.orders]\npath = "{tables["orders"]}"\nchunk_rows = 100\n'
        f'[inputs.customers]\npath = "{tables["customers"]}"\nchunk_rows = 40\n'
        '[datasets.totals]\njoin = { left = "orders", right = "customers", on = "okey", strategy = "shuffle" }\n'
        '[[datasets.totals.stages]]\nname = "per_region"\nuses = "stages.analyze:aggregate"\n'
        'params = { by = ["region"], aggs = { total = ["amount", "sum"] } }\n'
        f'[outputs.totals]\nfrom = "totals"\npath = "{tmp_path / "totals.parquet"}"\n')
    svg = cli("plan", str(linear), "--format", "svg", cwd=tmp_path)
    assert svg.returncode == 0, svg.stderr
    root = ET.fromstring(svg.stdout)
    assert len(root.findall(f".//{SVG}g[@class='node']")) == 4
    assert any("×12 chunks" == t.text for t in root.iter(f"{SVG}tspan"))
    drawn = cli("plan", str(graph), "--format", "svg", cwd=tmp_path)
    assert drawn.returncode == 0, drawn.stderr
    ids = {g.get("data-id") for g in ET.fromstring(drawn.stdout).findall(f".//{SVG}g[@class='node']")}
    assert {"orders~1/map", "customers~1/map", "totals~1/chunk", "totals~1/combine", "commit"} <= ids
    dot = cli("plan", str(graph), "--format", "dot", cwd=tmp_path)
    assert dot.returncode == 0 and dot.stdout.startswith("digraph plan {"), dot.stderr
    text = cli("plan", str(linear), cwd=tmp_path)
    assert text.returncode == 0 and "reduction tree: 12 partials → 2 combines → 1 combines → finalize" in text.stdout
    assert cli("plan", str(linear), "--format", "png", cwd=tmp_path).returncode == 2
