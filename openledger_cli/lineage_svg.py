"""The lineage graph of a model report as an inline SVG (:mod:`openledger_cli.layout` places it).

    svg = lineage_svg(report.graph)  # '<svg class="lineage" ...>...</svg>', every label escaped
"""

from __future__ import annotations

import html
from itertools import pairwise

from openledger.reports.model import GraphView
from openledger_cli.layout import LayoutEdge, LayoutNode, PlacedEdge, PlacedNode, layout, shown_label

__all__ = ["KIND_STYLES", "STYLE", "lineage_svg"]

KIND_STYLES: dict[str, tuple[str, str]] = {
    "model": ("#dbeafe", "#1d4ed8"), "run": ("#dcfce7", "#15803d"), "stage": ("#fef3c7", "#b45309"),
    "dataset": ("#ede9fe", "#6d28d9"), "commit": ("#f1f5f9", "#475569"),
}
_OTHER = ("#ffffff", "#6b7280")


def _num(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _path(edge: PlacedEdge) -> str:
    """Cubic curves through the points, level where they meet a node or waypoint (a loop: one arc over the top).
    :func:`openledger_cli.layout.curve_y` follows the same curves to keep edge labels on them."""
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


def lineage_svg(graph: GraphView, title: str = "Lineage") -> str:
    """The report's lineage graph as one ``<svg>``."""
    placed = layout([LayoutNode(n.ref.key, n.ref.kind, n.label, n.recorded) for n in graph.nodes],
                    [LayoutEdge(e.source.key, e.target.key, e.relation) for e in graph.edges])
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
                   f'<text class="label" x="{n(node.x)}" y="{n(node.y + 12)}">'
                   f"{esc(shown_label(node.label))}</text></g>")
    out.append("</svg>")
    return "\n".join(out)

