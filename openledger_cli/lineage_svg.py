"""The lineage graph of a model report as an inline SVG, laid out in layers and drawn right to left.

    svg = lineage_svg(report["graph"])  # '<svg class="lineage" ...>...</svg>', every label escaped

As in the Markdown report's Mermaid ``flowchart RL``, an edge points from what was made to what it was made
from (model -> run -> dataset -> stage -> ...), so the model stands at the right and the sources at the left.
The layout is a small Sugiyama pass: cycles broken (the graph comes from a ledger anyone may append to, so a
loop must not hang the renderer), longest-path layering, a waypoint in every layer an edge crosses, barycentre
sweeps keeping the ordering with the fewest crossings, then coordinates pulled towards each node's
neighbours. Graphviz would need its binary on every machine that renders a report; a lineage has tens of
nodes, for which this is enough.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

__all__ = ["KIND_STYLES", "Layout", "PlacedEdge", "PlacedNode", "layout", "lineage_svg"]

# fill, stroke per kind; the legend under the graph reads the same table
KIND_STYLES: dict[str, tuple[str, str]] = {
    "model": ("#dbeafe", "#1d4ed8"), "run": ("#dcfce7", "#15803d"), "stage": ("#fef3c7", "#b45309"),
    "dataset": ("#ede9fe", "#6d28d9"), "commit": ("#f1f5f9", "#475569"),
}
_OTHER = ("#ffffff", "#6b7280")
_Point = tuple[float, float]
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


def _shown(label: str) -> str:
    return label if len(label) <= _MAX_LABEL else label[: _MAX_LABEL - 1] + "…"


def _node_width(kind: str, label: str) -> float:
    return max(_MIN_W, _CHAR * max(len(_shown(label)), len(kind) + 12) + 2 * _PAD_X)


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
        candidate = (at_x, _curve_y(*stretch, at_x))
        if fraction == 0.5:
            spot = candidate
        if all(abs(candidate[1] - ty) >= 12 or abs(candidate[0] - tx) >= half + th for tx, ty, th in taken):
            spot = candidate
            break
    taken.append((spot[0], spot[1], half))
    return spot


def layout(nodes: Sequence[Mapping[str, Any]], edges: Sequence[Mapping[str, Any]]) -> Layout:
    """Place the report's graph nodes and route its edges (edges to nodes not in the graph are left out)."""
    spec = {str(n["id"]): n for n in nodes}
    ids = list(spec)
    drawn = [(str(e["from"]), str(e["to"]), str(e["relation"])) for e in edges
             if str(e["from"]) in spec and str(e["to"]) in spec]
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
                 {n: _node_width(str(spec[n]["kind"]), str(spec[n]["label"])) if n in spec else 0.0 for n in layer},
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
    placed_nodes = tuple(PlacedNode(node, str(spec[node]["kind"]), str(spec[node]["label"]),
                                    bool(spec[node].get("recorded", True)), layer[node], grid.x[node],
                                    grid.y[node], grid.width[node], grid.height[node]) for node in ids)
    return Layout(placed_nodes, tuple(placed_edges), *grid.size)


def _curve_y(start: tuple[float, float], end: tuple[float, float], at_x: float) -> float:
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


def _num(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _path(edge: PlacedEdge) -> str:
    """Cubic curves through the points, level where they meet a node or waypoint (a loop: one arc over the top)."""
    points = edge.points
    (x0, y0) = points[0]
    parts = [f"M{_num(x0)},{_num(y0)}"]
    if edge.loop:
        (_, cy), (x2, y2) = points[1], points[2]
        return f"M{_num(x0)},{_num(y0)} C{_num(x0)},{_num(cy)} {_num(x2)},{_num(cy)} {_num(x2)},{_num(y2)}"
    for (xa, ya), (xb, yb) in pairwise(points):
        middle = (xa + xb) / 2
        parts.append(f"C{_num(middle)},{_num(ya)} {_num(middle)},{_num(yb)} {_num(xb)},{_num(yb)}")
    return " ".join(parts)


def _shape(node: PlacedNode) -> str:
    """The node's outline, one shape per kind as in the Mermaid graph."""
    left, right = node.x - node.width / 2, node.x + node.width / 2
    top, bottom = node.y - node.height / 2, node.y + node.height / 2
    w, h, n = node.width, node.height, _num
    if node.kind == "model":  # a framed box, Mermaid's [[subroutine]]
        return (f'<rect class="shape" x="{n(left)}" y="{n(top)}" width="{n(w)}" height="{n(h)}" rx="3"/>'
                f'<rect class="shape inner" x="{n(left + 4)}" y="{n(top + 4)}" width="{n(w - 8)}" height="{n(h - 8)}"'
                ' rx="2"/>')
    if node.kind == "run":  # a stadium
        return f'<rect class="shape" x="{n(left)}" y="{n(top)}" width="{n(w)}" height="{n(h)}" rx="{n(h / 2)}"/>'
    if node.kind == "stage":  # a parallelogram
        slant = 10.0
        corners = [(left + slant, top), (right, top), (right - slant, bottom), (left, bottom)]
        return f'<polygon class="shape" points="{" ".join(f"{n(a)},{n(b)}" for a, b in corners)}"/>'
    if node.kind == "dataset":  # a cylinder
        ry = 5.0
        return (f'<path class="shape" d="M{n(left)},{n(top + ry)} A{n(w / 2)},{n(ry)} 0 0 1 {n(right)},{n(top + ry)} '
                f'V{n(bottom - ry)} A{n(w / 2)},{n(ry)} 0 0 1 {n(left)},{n(bottom - ry)} Z"/>'
                f'<path class="shape inner" d="M{n(left)},{n(top + ry)} A{n(w / 2)},{n(ry)} 0 0 0 {n(right)},'
                f'{n(top + ry)}"/>')
    if node.kind == "commit":  # a hexagon
        cut = 12.0
        corners = [(left + cut, top), (right - cut, top), (right, node.y), (right - cut, bottom),
                   (left + cut, bottom), (left, node.y)]
        return f'<polygon class="shape" points="{" ".join(f"{n(a)},{n(b)}" for a, b in corners)}"/>'
    return f'<rect class="shape" x="{n(left)}" y="{n(top)}" width="{n(w)}" height="{n(h)}"/>'


def _kind_class(kind: str) -> str:
    return kind if kind in KIND_STYLES else "other"


STYLE = "\n".join([
    "svg.lineage{max-width:100%;height:auto;font-family:system-ui,'DejaVu Sans',sans-serif}",
    "svg.lineage .shape{stroke-width:1.5}",
    *(f"svg.lineage .kind-{kind} .shape{{fill:{fill};stroke:{stroke}}}"
      f"svg.lineage .kind-{kind} text.kind{{fill:{stroke}}}" for kind, (fill, stroke) in
      [*KIND_STYLES.items(), ("other", _OTHER)]),
    "svg.lineage .no-record .shape{fill:#fff;stroke:#b91c1c;stroke-dasharray:5 3}",
    "svg.lineage .no-record text.kind{fill:#b91c1c;font-weight:600}",
    "svg.lineage .shape.inner{fill:none}",
    "svg.lineage .node text{text-anchor:middle}",
    "svg.lineage text.label{fill:#111827;font:12px ui-monospace,'DejaVu Sans Mono',monospace}",
    "svg.lineage text.kind{font-size:10px;letter-spacing:.06em;text-transform:uppercase}",
    "svg.lineage .edge{fill:none;stroke:#64748b;stroke-width:1.3}",
    "svg.lineage .edge-label{font-size:10.5px;fill:#334155;text-anchor:middle;paint-order:stroke;"
    "stroke:#fff;stroke-width:4px;stroke-linejoin:round}",
    "svg.lineage #arrow path{fill:#64748b}",
])


def lineage_svg(graph: Mapping[str, Any], title: str = "Lineage") -> str:
    """The report's ``graph`` (nodes with kind, label, recorded; edges with relation) as one ``<svg>``."""
    placed = layout(graph["nodes"], graph["edges"])
    esc, n = html.escape, _num
    out = [f'<svg class="lineage" role="img" aria-label="{esc(title)}" viewBox="0 0 {n(placed.width)} '
           f'{n(placed.height)}" width="{n(placed.width)}" height="{n(placed.height)}">',
           f"<title>{esc(title)}</title>",
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7"'
           ' orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>']
    out.append('<g class="edges">')
    for edge in placed.edges:
        out.append(f'<path class="edge" data-from="{esc(edge.source)}" data-to="{esc(edge.target)}" '
                   f'd="{_path(edge)}" marker-end="url(#arrow)"><title>{esc(edge.relation)}</title></path>')
    for edge in placed.edges:
        lx, ly = edge.label_at
        out.append(f'<text class="edge-label" x="{n(lx)}" y="{n(ly + 3.5)}">{esc(edge.relation)}</text>')
    out.append("</g>")
    for node in placed.nodes:
        classes = f"node kind-{_kind_class(node.kind)}" + ("" if node.recorded else " no-record")
        caption = node.kind + ("" if node.recorded else " · no record")
        out.append(f'<g class="{classes}" data-id="{esc(node.id)}" data-kind="{esc(node.kind)}">'
                   f"<title>{esc(node.kind)}: {esc(node.label)}{'' if node.recorded else ' (no record)'}"
                   f"\n{esc(node.id)}</title>{_shape(node)}"
                   f'<text class="kind" x="{n(node.x)}" y="{n(node.y - 6)}">{esc(caption)}</text>'
                   f'<text class="label" x="{n(node.x)}" y="{n(node.y + 12)}">{esc(_shown(node.label))}</text></g>')
    out.append("</svg>")
    return "\n".join(out)

