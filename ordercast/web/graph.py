"""The lifecycle drawn as an SVG graph, from the table and nothing else.

The happy path runs left to right on the top row; every other status sits on
the row below, under the middle of the statuses that lead to it. Each table
row becomes one arrow per source status, labelled with its command; arrows
with the same ends share one label. Deadlines are dashed. Each status box
holds a `count-<STATUS>` text that the ops dashboard fills in live.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from html import escape

from ordercast.lifecycle import DEADLINES, TRANSITIONS, Status
from ordercast.lifecycle.table import HAPPY_PATH

NODE_W = 150
NODE_H = 58
COLUMN_W = 245
ROW_H = 170
MARGIN = 30


@dataclass(frozen=True)
class Edge:
    """An arrow between two statuses (the same one for a loop)."""

    source: Status
    target: Status
    labels: tuple[str, ...]
    dashed: bool = False


def edges() -> list[Edge]:
    """Every arrow of the lifecycle: commands first, then deadlines."""
    labels: dict[tuple[Status, Status], list[str]] = defaultdict(list)
    for row in TRANSITIONS:
        for source in sorted(row.sources, key=_rank):
            if row.command.value not in labels[(source, row.target)]:
                labels[(source, row.target)].append(row.command.value)
    found = [Edge(s, t, tuple(names)) for (s, t), names in labels.items()]
    for deadline in DEADLINES:
        target = deadline.target or deadline.status
        label = f"{deadline.kind} timeout" if deadline.target else deadline.event
        found.append(Edge(deadline.status, target, (label,), dashed=True))
    return found


def positions() -> dict[Status, tuple[float, float]]:
    """Top-left corner of each status box."""
    placed: dict[Status, tuple[float, float]] = {
        status: (MARGIN + column * COLUMN_W, MARGIN + 20.0)
        for column, status in enumerate(HAPPY_PATH)
    }
    sources: dict[Status, list[float]] = defaultdict(list)
    for edge in edges():
        if edge.target not in HAPPY_PATH and edge.source in placed:
            sources[edge.target].append(placed[edge.source][0])
    for status in Status:
        if status not in placed:
            xs = sources.get(status) or [MARGIN]
            placed[status] = (sum(xs) / len(xs), MARGIN + 20.0 + ROW_H)
    return placed


def lifecycle_svg() -> str:
    """The graph as an inline SVG element."""
    at = positions()
    width = max(x for x, _ in at.values()) + NODE_W + MARGIN
    height = max(y for _, y in at.values()) + NODE_H + MARGIN
    parts = [
        f'<svg id="lifecycle" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        'aria-labelledby="lifecycle-title" xmlns="http://www.w3.org/2000/svg">',
        '<title id="lifecycle-title">Order lifecycle with the number of orders '
        "in each status</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>',
    ]
    parts.extend(_edge_svg(edge, at) for edge in edges())
    parts.extend(_node_svg(status, *at[status]) for status in Status)
    parts.append("</svg>")
    return "\n".join(parts)


def _node_svg(status: Status, x: float, y: float) -> str:
    kind = "final" if status.is_terminal else "open"
    if status is Status.DELIVERED:
        kind = "done"
    return (
        f'<g class="node {kind}" id="status-{status.value}">'
        f'<rect x="{x:.0f}" y="{y:.0f}" width="{NODE_W}" height="{NODE_H}" rx="10"/>'
        f'<text x="{x + NODE_W / 2:.0f}" y="{y + 22:.0f}" class="name">'
        f"{status.value}</text>"
        f'<text x="{x + NODE_W / 2:.0f}" y="{y + 46:.0f}" class="count" '
        f'id="count-{status.value}">–</text></g>'
    )


def _edge_svg(edge: Edge, at: dict[Status, tuple[float, float]]) -> str:
    label = escape(" / ".join(edge.labels))
    style = ' class="edge dashed"' if edge.dashed else ' class="edge"'
    (sx, sy), (tx, ty) = at[edge.source], at[edge.target]
    if edge.source is edge.target:
        return _loop_svg(sx, sy, label, style, below=edge.dashed)
    if sy == ty:  # along the top row
        x1, y1, x2, y2 = sx + NODE_W, sy + NODE_H / 2, tx, ty + NODE_H / 2
        lx, ly = (x1 + x2) / 2, y1 - 8
        return _line(x1, y1, x2, y2, style, label, lx, ly, "middle")
    # a deadline runs beside the command arrow between the same statuses
    shift = 36 if edge.dashed else 0
    x1, y1 = sx + NODE_W / 2 + shift, sy + NODE_H
    x2, y2 = tx + NODE_W / 2 + shift, ty
    lx, ly = x1 + (x2 - x1) * 0.3, y1 + (y2 - y1) * (0.55 if edge.dashed else 0.3)
    return _line(x1, y1, x2, y2, style, label, lx + 4, ly, "start")


def _line(
    x1: float,
    y1: float,
    x2: float,
    y2: float,
    style: str,
    label: str,
    lx: float,
    ly: float,
    anchor: str,
) -> str:
    return (
        f'<g{style}><line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" '
        'marker-end="url(#arrow)"/>'
        f'<text x="{lx:.0f}" y="{ly:.0f}" text-anchor="{anchor}">{label}</text></g>'
    )


def _loop_svg(x: float, y: float, label: str, style: str, below: bool) -> str:
    """A loop over (or, for a deadline, under) the box at (x, y)."""
    left, right = x + NODE_W * 0.3, x + NODE_W * 0.7
    edge_y = y + NODE_H if below else y
    bulge = 34 if below else -34
    text_y = edge_y + bulge + (14 if below else -4)
    return (
        f'<g{style}><path d="M{left:.0f},{edge_y:.0f} C{left:.0f},'
        f"{edge_y + bulge:.0f} {right:.0f},{edge_y + bulge:.0f} {right:.0f},"
        f'{edge_y:.0f}" fill="none" marker-end="url(#arrow)"/>'
        f'<text x="{x + NODE_W / 2:.0f}" y="{text_y:.0f}" text-anchor="middle">'
        f"{label}</text></g>"
    )


def _rank(status: Status) -> int:
    return list(Status).index(status)
