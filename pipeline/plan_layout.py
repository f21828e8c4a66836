"""A layered top-to-bottom layout of a small directed graph, so a plan can be drawn without outside tools.

    rank = longest path from a source ──▶ a long edge gets a point in every layer it passes
    ──▶ barycenter sweeps reorder each layer (the order with fewest crossings is kept) ──▶ coordinates

Good enough for the few dozen boxes a plan's groups make; not a general graph drawing engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

GAP_X, GAP_Y, MARGIN, DUMMY_WIDTH = 28.0, 56.0, 16.0, 12.0
SWEEPS = 6


@dataclass(frozen=True)
class Box:
    """A node's rectangle: top-left corner and size."""

    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class Layout:
    boxes: dict[str, Box]
    routes: dict[tuple[str, str], list[tuple[float, float]]]  # per edge: from src's bottom to dst's top
    width: float
    height: float


def ranks(ids: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layer of each node; a cycle (never made by a plan) is broken in input order."""
    preds: dict[str, list[str]] = {i: [] for i in ids}
    waiting = {i: 0 for i in ids}
    for src, dst in edges:
        preds[dst].append(src)
        waiting[dst] += 1
    succs: dict[str, list[str]] = {i: [] for i in ids}
    for src, dst in edges:
        succs[src].append(dst)
    order, ready = [], [i for i in ids if waiting[i] == 0]
    while ready:
        node = ready.pop(0)
        order.append(node)
        for nxt in succs[node]:
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                ready.append(nxt)
    seen = set(order)
    order += [i for i in ids if i not in seen]
    rank: dict[str, int] = {}
    for node in order:
        rank[node] = max((rank[p] + 1 for p in preds[node] if p in rank), default=0)
    return rank


def _crossings(layers: list[list[str]], links: list[tuple[str, str]]) -> int:
    """Pairs of links between the same two adjacent layers that cross."""
    where = {node: (li, i) for li, layer in enumerate(layers) for i, node in enumerate(layer)}
    by_layer: dict[int, list[tuple[int, int]]] = {}
    for src, dst in links:
        by_layer.setdefault(where[src][0], []).append((where[src][1], where[dst][1]))
    total = 0
    for pairs in by_layer.values():
        for i, (a, b) in enumerate(pairs):
            total += sum(1 for c, d in pairs[i + 1:] if (a - c) * (b - d) < 0)
    return total


def _sweep(layers: list[list[str]], neighbours: dict[str, list[str]], downward: bool) -> list[list[str]]:
    """Reorder each layer by the mean position of its neighbours in the layer before it (in sweep order)."""
    layers = [list(layer) for layer in layers]
    steps = range(1, len(layers)) if downward else range(len(layers) - 2, -1, -1)
    for li in steps:
        fixed = {node: i for i, node in enumerate(layers[li - 1 if downward else li + 1])}
        def key(item: tuple[int, str]) -> float:
            known = [fixed[n] for n in neighbours[item[1]] if n in fixed]
            return sum(known) / len(known) if known else float(item[0])
        layers[li] = [node for _, node in sorted(enumerate(layers[li]), key=key)]
    return layers


def layout(sizes: Mapping[str, tuple[float, float]], edges: Sequence[tuple[str, str]]) -> Layout:
    """Place boxes of the given (width, height), in layers top to bottom; route every edge through its layers."""
    ids = list(sizes)
    rank = ranks(ids, edges)
    layers: list[list[str]] = [[] for _ in range(max(rank.values(), default=-1) + 1)]
    for node in ids:
        layers[rank[node]].append(node)
    chains: dict[tuple[str, str], list[str]] = {}  # an edge's nodes, with a point in every layer it passes
    for k, (src, dst) in enumerate(edges):
        chain = [src]
        for layer in range(rank[src] + 1, rank[dst]):
            point = f"\0{k}:{layer}"
            layers[layer].append(point)
            chain.append(point)
        chains[(src, dst)] = [*chain, dst]
    links = [(a, b) for chain in chains.values() for a, b in zip(chain, chain[1:])
             if _layer(a, rank) + 1 == _layer(b, rank)]  # a back edge (a cycle) takes no part in ordering
    up: dict[str, list[str]] = {n: [] for layer in layers for n in layer}
    down: dict[str, list[str]] = {n: [] for layer in layers for n in layer}
    for a, b in links:
        down[a].append(b)
        up[b].append(a)
    best, fewest = layers, _crossings(layers, links)
    for _ in range(SWEEPS):
        layers = _sweep(_sweep(layers, up, True), down, False)
        count = _crossings(layers, links)
        if count < fewest:
            best, fewest = layers, count
    return _place(best, sizes, chains, up, down)


def _layer(node: str, rank: Mapping[str, int]) -> int:
    return int(node.rsplit(":", 1)[1]) if node.startswith("\0") else rank[node]


def _centres(layers: list[list[str]], width: Callable[[str], float], up: Mapping[str, list[str]],
             down: Mapping[str, list[str]]) -> dict[str, float]:
    """Horizontal centres: each layer packed in order, then pulled towards its neighbours' centres a few times
    (so chains run straight); a layer is packed from the left and from the right and the two averaged."""
    centre: dict[str, float] = {}
    for layer in layers:
        x = 0.0
        for node in layer:
            centre[node] = x + width(node) / 2
            x += width(node) + GAP_X
    for _ in range(SWEEPS):
        for neighbours, order in ((up, layers), (down, layers[::-1])):
            for layer in order:
                want = [sum(centre[n] for n in neighbours[v]) / len(neighbours[v]) if neighbours[v] else centre[v]
                        for v in layer]
                left, right, edge = [], [], float("-inf")
                for v, w in zip(layer, want):
                    edge = max(w - width(v) / 2, edge) + width(v)
                    left.append(edge - width(v) / 2)
                    edge += GAP_X
                edge = float("inf")
                for v, w in zip(layer[::-1], want[::-1]):
                    edge = min(w + width(v) / 2, edge) - width(v)
                    right.append(edge + width(v) / 2)
                    edge -= GAP_X
                for v, a, b in zip(layer, left, right[::-1]):
                    centre[v] = (a + b) / 2
    return centre


def _place(layers: list[list[str]], sizes: Mapping[str, tuple[float, float]],
           chains: dict[tuple[str, str], list[str]], up: Mapping[str, list[str]],
           down: Mapping[str, list[str]]) -> Layout:
    """Boxes at their centres, layer under layer; edge routes through their points' centres."""
    def size(node: str) -> tuple[float, float]:
        return sizes.get(node, (DUMMY_WIDTH, 0.0))

    centre = _centres(layers, lambda n: size(n)[0], up, down)
    shift = MARGIN - min((centre[n] - size(n)[0] / 2 for n in centre), default=0.0)
    boxes: dict[str, Box] = {}
    y = MARGIN
    for layer in layers:
        tallest = max((size(n)[1] for n in layer), default=0.0)
        for node in layer:
            w, h = size(node)
            boxes[node] = Box(centre[node] - w / 2 + shift, y + (tallest - h) / 2, w, h)
        y += tallest + GAP_Y
    routes = {}
    for edge, chain in chains.items():
        src, dst = boxes[chain[0]], boxes[chain[-1]]
        middle = [(b.x + b.w / 2, b.y + b.h / 2) for b in (boxes[n] for n in chain[1:-1])]
        routes[edge] = [(src.x + src.w / 2, src.y + src.h), *middle, (dst.x + dst.w / 2, dst.y)]
    real = {n: b for n, b in boxes.items() if not n.startswith("\0")}
    width = max((b.x + b.w for b in boxes.values()), default=0.0) + MARGIN
    return Layout(real, routes, max(width, 2 * MARGIN), max(y - GAP_Y + MARGIN, 2 * MARGIN))
