"""A layered layout for small directed graphs (a model's lineage): where each node stands and how each edge runs.

The lineage is drawn right to left: an edge points from what was made to what it was made from (model -> run
-> dataset -> stage -> ...), so the model stands at the right and the sources at the left. The layout is a
small Sugiyama pass: cycles broken (the graph comes from a ledger anyone may append to, so a loop must not
hang the renderer), longest-path layering, a waypoint in every layer an edge crosses, barycentre sweeps
keeping the ordering with the fewest crossings, then coordinates pulled towards each node's neighbours.
Graphviz would need its binary on every machine that renders a report; a lineage has tens of nodes, for
which this is enough. :mod:`openledger_cli.lineage_svg` draws the result.

>>> placed = layout([LayoutNode("m", "model", "iris v1"), LayoutNode("r", "run", "train")],
...                 [LayoutEdge("m", "r", "trained by")])
>>> [node.layer for node in placed.nodes]
[1, 0]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

__all__ = ["Layout", "LayoutEdge", "LayoutNode", "PlacedEdge", "PlacedNode", "curve_y", "layout", "shown_label"]

_Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class LayoutNode:
    """A node to place: its id, kind and label (which size it) and whether a record attests it."""

    id: str
    kind: str
    label: str
    recorded: bool = True


@dataclass(frozen=True, slots=True)
class LayoutEdge:
    """An edge to route: ``source`` is related to ``target`` by ``relation`` (written on the edge)."""

    source: str
    target: str
    relation: str

_MAX_LABEL = 40  # characters shown in a node; the full label is in its <title>
_CHAR = 7.3  # px per character of the 12px monospace label font (DejaVu Sans Mono is 7.2)
_NODE_H = 46.0
_PAD_X = 18.0
_MIN_W = 96.0
_COLUMN_GAP = 90.0  # room between layers for the edge labels
_ROW_GAP = 26.0
_WAYPOINT_H = 12.0
_MARGIN = 16.0
_SWEEPS = 8


@dataclass(frozen=True, slots=True)
class PlacedNode:
    """A node with its centre (``x``, ``y``) and size; ``layer`` 0 is the leftmost column."""

    id: str
    kind: str
    label: str
    recorded: bool
    layer: int
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class PlacedEdge:
    """An edge from ``source`` to ``target`` through ``points`` (first on the source's border, last on the
    target's; a ``loop`` goes from a node's top back to it); ``label_at`` is where its relation is written."""

    source: str
    target: str
    relation: str
    points: tuple[tuple[float, float], ...]
    label_at: tuple[float, float]
    loop: bool = False


@dataclass(frozen=True, slots=True)
class Layout:
    nodes: tuple[PlacedNode, ...]
    edges: tuple[PlacedEdge, ...]
    width: float
    height: float


def shown_label(label: str) -> str:
    """A node label as drawn: cut at a width the node can hold (the full label goes in its tooltip)."""
    return label if len(label) <= _MAX_LABEL else label[: _MAX_LABEL - 1] + "…"


def _node_width(kind: str, label: str) -> float:
    return max(_MIN_W, _CHAR * max(len(shown_label(label)), len(kind) + 12) + 2 * _PAD_X)


def _break_cycles(ids: list[str], succ: Mapping[str, list[str]]) -> set[tuple[str, str]]:
    """The back edges of a depth-first search in input order (iterative: a lineage can be a long chain)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 finished
    back: set[tuple[str, str]] = set()
    for root in ids:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(succ[root]))]
        while stack:
            node, children = stack[-1]
            for child in children:
                if state.get(child) == 1:
                    back.add((node, child))
                elif child not in state:
                    state[child] = 1
                    stack.append((child, iter(succ[child])))
                    break
            else:
                state[node] = 2
                stack.pop()
    return back


def _layers(ids: list[str], arcs: list[tuple[str, str]]) -> dict[str, int]:
    """Longest path to a sink: what nothing else was made from sits in layer 0, at the left."""
    uppers: dict[str, list[str]] = defaultdict(list)
    waiting = dict.fromkeys(ids, 0)  # lower nodes not layered yet
    for upper, lower in arcs:
        uppers[lower].append(upper)
        waiting[upper] += 1
    layer = dict.fromkeys(ids, 0)
    ready = [node for node in ids if waiting[node] == 0]
    while ready:  # Kahn's order from the sinks up; the arcs are acyclic once back edges are turned round
        node = ready.pop()
        for upper in uppers[node]:
            layer[upper] = max(layer[upper], layer[node] + 1)
            waiting[upper] -= 1
            if waiting[upper] == 0:
                ready.append(upper)
    return layer


def _crossings(order: Mapping[int, list[str]], segments: Sequence[tuple[str, str]],
               layer: Mapping[str, int]) -> int:
    position = {node: i for nodes in order.values() for i, node in enumerate(nodes)}
    by_layer: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for upper, lower in segments:
        by_layer[layer[lower]].append((position[upper], position[lower]))
    total = 0
    for pairs in by_layer.values():
        for i, (a_up, a_low) in enumerate(pairs):
            for b_up, b_low in pairs[i + 1:]:
                if (a_up - b_up) * (a_low - b_low) < 0:
                    total += 1
    return total


def _order(order: dict[int, list[str]], segments: Sequence[tuple[str, str]],
           layer: Mapping[str, int]) -> dict[int, list[str]]:
    """Barycentre sweeps, right to left then left to right; the ordering with the fewest crossings wins."""
    uppers: dict[str, list[str]] = defaultdict(list)
    lowers: dict[str, list[str]] = defaultdict(list)
    for upper, lower in segments:
        uppers[lower].append(upper)
        lowers[upper].append(lower)
    top = max(order, default=0)
    best = {k: list(v) for k, v in order.items()}
    best_count = _crossings(best, segments, layer)
    current = {k: list(v) for k, v in order.items()}
    for sweep in range(_SWEEPS):
        downwards = sweep % 2 == 0
        sequence = range(top - 1, -1, -1) if downwards else range(1, top + 1)
        for k in sequence:
            fixed = current.get(k + 1 if downwards else k - 1, [])
            position = {node: i for i, node in enumerate(fixed)}
            neighbours = uppers if downwards else lowers

            def barycentre(node: str, index: int, position: dict[str, int] = position,
                           neighbours: dict[str, list[str]] = neighbours) -> tuple[float, int]:
                placed = [position[n] for n in neighbours[node] if n in position]
                return (sum(placed) / len(placed) if placed else float(index), index)

            nodes = current.get(k, [])
            current[k] = [node for _, node in sorted((barycentre(n, i), n) for i, n in enumerate(nodes))]
        count = _crossings(current, segments, layer)
        if count < best_count:
            best, best_count = {k: list(v) for k, v in current.items()}, count
    return best


def _spread(wanted: list[float], gaps: list[float]) -> list[float]:
    """Positions as close to ``wanted`` as the minimum gaps allow: the mean of a push-down and a push-up pass
    (each keeps every gap, so their mean does too)."""
    down = list(wanted)
    for i in range(1, len(down)):
        down[i] = max(down[i], down[i - 1] + gaps[i - 1])
    up = list(wanted)
    for i in range(len(up) - 2, -1, -1):
        up[i] = min(up[i], up[i + 1] - gaps[i])
    return [(a + b) / 2 for a, b in zip(down, up, strict=True)]


@dataclass
class _Grid:
    """The layout while it is made: layers, order within them, sizes and positions of nodes and waypoints."""

    layer: dict[str, int]
    order: dict[int, list[str]]
    width: dict[str, float]
    height: dict[str, float]
    x: dict[str, float] = field(default_factory=dict)
    y: dict[str, float] = field(default_factory=dict)
    column_left: dict[int, float] = field(default_factory=dict)
    size: tuple[float, float] = (0.0, 0.0)


def _waypoints(arcs: Sequence[tuple[str, str]], layer: dict[str, int]) -> dict[tuple[str, str], list[str]]:
    """Each arc as a chain with a waypoint in every layer it crosses (added to ``layer``), so that a long edge
    gets a slot of its own in each column and takes part in ordering."""
    chains = {}
    for upper, lower in arcs:
        between = range(layer[upper] - 1, layer[lower], -1)
        waypoints = [f"\0{upper}\0{lower}\0{k}" for k in between]
        layer.update(zip(waypoints, between, strict=True))
        chains[(upper, lower)] = [upper, *waypoints, lower]
    return chains


def _place(grid: _Grid, segments: Sequence[tuple[str, str]]) -> None:
    """Columns left to right by layer; in each, nodes stacked in order, then pulled towards the mean height of
    their neighbours (four passes each way) without changing the order or closing the gaps."""
    columns = range(max(grid.order, default=-1) + 1)
    left = _MARGIN
    for k in columns:
        nodes = grid.order.get(k, [])
        column_w = max((grid.width[n] for n in nodes), default=0.0) or _WAYPOINT_H
        grid.column_left[k] = left
        grid.x.update((node, left + column_w / 2) for node in nodes)
        left += column_w + _COLUMN_GAP
        top = 0.0
        for node in nodes:
            grid.y[node] = top + grid.height[node] / 2
            top += grid.height[node] + _ROW_GAP
    neighbours: dict[str, list[str]] = defaultdict(list)
    for a, b in segments:
        neighbours[a].append(b)
        neighbours[b].append(a)
    for _ in range(4):
        for k in [*columns, *reversed(columns)]:
            nodes = grid.order.get(k, [])
            wanted = [sum(grid.y[n] for n in neighbours[node]) / len(neighbours[node]) if neighbours[node]
                      else grid.y[node] for node in nodes]
            gaps = [(grid.height[a] + grid.height[b]) / 2 + _ROW_GAP for a, b in pairwise(nodes)]
            grid.y.update(zip(nodes, _spread(wanted, gaps), strict=True))
    shift = _MARGIN - min((grid.y[n] - grid.height[n] / 2 for n in grid.y), default=0.0)
    grid.y = {n: v + shift for n, v in grid.y.items()}
    grid.size = (max(left - _COLUMN_GAP + _MARGIN, 2 * _MARGIN),
                 max((grid.y[n] + grid.height[n] / 2 for n in grid.y), default=0.0) + _MARGIN)


def _ports(grid: _Grid, chains: Mapping[tuple[str, str], list[str]]) -> dict[tuple[tuple[str, str], int], float]:
    """Where each chain leaves its upper node and enters its lower one: edges of one node spread along its side
    in the order of the heights they go to, so that they neither cross there nor draw one over another."""
    sides: dict[tuple[str, int], list[tuple[float, tuple[str, str]]]] = defaultdict(list)
    for arc, chain in chains.items():
        sides[(chain[0], 0)].append((grid.y[chain[1]], arc))
        sides[(chain[-1], -1)].append((grid.y[chain[-2]], arc))
    ports = {}
    for (node, end), arcs in sides.items():
        arcs.sort()
        step = min(9.0, (grid.height[node] - 16) / (len(arcs) - 1)) if len(arcs) > 1 else 0.0
        for i, (_, arc) in enumerate(arcs):
            ports[(arc, end)] = grid.y[node] + (i - (len(arcs) - 1) / 2) * step
    return ports


def _label_at(grid: _Grid, stretch: tuple[_Point, _Point], layer: int, text: str,
              taken: list[tuple[float, float, float]]) -> _Point:
    """A spot for an edge's relation on its stretch across the gap left of ``layer`` (where no node stands),
    clear of the labels already placed when there is one (``taken``: centre and half width of each)."""
    gap_right = grid.column_left[layer]
    half = len(text) * 3.0 + 4
    spot = (gap_right - _COLUMN_GAP / 2, 0.0)
    for fraction in (0.5, 0.3, 0.7, 0.15, 0.85):
        at_x = gap_right - _COLUMN_GAP * fraction
        candidate = (at_x, curve_y(*stretch, at_x))
        if fraction == 0.5:
            spot = candidate
        if all(abs(candidate[1] - ty) >= 12 or abs(candidate[0] - tx) >= half + th for tx, ty, th in taken):
            spot = candidate
            break
    taken.append((spot[0], spot[1], half))
    return spot


def layout(nodes: Sequence[LayoutNode], edges: Sequence[LayoutEdge]) -> Layout:
    """Place the nodes and route the edges (edges to nodes not in the graph are left out)."""
    spec = {node.id: node for node in nodes}
    ids = list(spec)
    drawn = [(e.source, e.target, e.relation) for e in edges if e.source in spec and e.target in spec]
    succ: dict[str, list[str]] = {node: [] for node in ids}
    for source, target, _ in drawn:
        if source != target and target not in succ[source]:
            succ[source].append(target)
    back = _break_cycles(ids, succ)
    # each arc is (upper, lower): upper stands in a layer to the right of lower
    arcs = list(dict.fromkeys((t, s) if (s, t) in back else (s, t) for s, t, _ in drawn if s != t))
    layer = _layers(ids, arcs)
    chains = _waypoints(arcs, layer)
    segments = [segment for chain in chains.values() for segment in pairwise(chain)]
    order: dict[int, list[str]] = defaultdict(list)
    for node in [*ids, *(w for chain in chains.values() for w in chain[1:-1])]:
        order[layer[node]].append(node)
    grid = _Grid(layer, _order(dict(order), segments, layer),
                 {n: _node_width(spec[n].kind, spec[n].label) if n in spec else 0.0 for n in layer},
                 {n: _NODE_H if n in spec else _WAYPOINT_H for n in layer})
    _place(grid, segments)
    ports = _ports(grid, chains)
    taken: list[tuple[float, float, float]] = []
    placed_edges = []
    for source, target, relation in drawn:
        if source == target:
            cx, cy, half_w, half_h = grid.x[source], grid.y[source], grid.width[source] / 2, grid.height[source] / 2
            loop = ((cx + half_w / 3, cy - half_h), (cx, cy - half_h - 28), (cx - half_w / 3, cy - half_h))
            placed_edges.append(PlacedEdge(source, target, relation, loop, (cx, cy - half_h - 30), loop=True))
            continue
        arc = (target, source) if (source, target) in back else (source, target)
        chain = chains[arc]
        points = [(grid.x[chain[0]] - grid.width[chain[0]] / 2, ports[(arc, 0)]),
                  *((grid.x[w], grid.y[w]) for w in chain[1:-1]),
                  (grid.x[chain[-1]] + grid.width[chain[-1]] / 2, ports[(arc, -1)])]
        label_at = _label_at(grid, (points[0], points[1]), layer[chain[0]], relation, taken)
        if arc != (source, target):
            points.reverse()
        placed_edges.append(PlacedEdge(source, target, relation, tuple(points), label_at))
    placed_nodes = tuple(PlacedNode(node, spec[node].kind, spec[node].label, spec[node].recorded, layer[node],
                                    grid.x[node], grid.y[node], grid.width[node], grid.height[node]) for node in ids)
    return Layout(placed_nodes, tuple(placed_edges), *grid.size)


def curve_y(start: tuple[float, float], end: tuple[float, float], at_x: float) -> float:
    """The height of the curve ``_path`` draws from ``start`` to ``end`` where it passes ``at_x`` (bisection:
    x grows monotonically along it)."""
    (x0, y0), (x1, y1) = start, end
    middle = (x0 + x1) / 2

    def point(t: float) -> tuple[float, float]:
        a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3
        return a * x0 + (b + c) * middle + d * x1, (a + b) * y0 + (c + d) * y1

    low, high = 0.0, 1.0
    for _ in range(40):
        t = (low + high) / 2
        if (point(t)[0] - at_x) * (x1 - x0) < 0:
            low = t
        else:
            high = t
    return point((low + high) / 2)[1]


# -- drawing -------------------------------------------------------------------------------------------------
