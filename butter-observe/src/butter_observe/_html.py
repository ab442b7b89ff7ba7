"""The overlay graph as one self-contained HTML page: inline SVG, inline CSS, a few lines of inline script.

It opens offline (nothing is fetched). Nodes are placed by a Fruchterman–Reingold layout computed here
(deterministic for a given graph), coloured by host-quality class (legend), sized by the items they keep;
hovering shows a node's figures; choosing a group in the list highlights the nodes that keep that item.
"""

from __future__ import annotations

import html
import math
import random

import networkx as nx

__all__ = ["STYLE", "legend", "render_html", "render_svg", "spring_layout"]

WIDTH, HEIGHT, MARGIN = 960, 720, 40  # pixels
COLOURS = {  # the 8 diversity classes
    "highUptimeHighStorageHighKH": "#1b9e77", "highUptimeHighStorageLowKH": "#66a61e",
    "highUptimeLowStorageHighKH": "#7570b3", "highUptimeLowStorageLowKH": "#a6761d",
    "lowUptimeHighStorageHighKH": "#e7298a", "lowUptimeHighStorageLowKH": "#e6ab02",
    "lowUptimeLowStorageHighKH": "#d95f02", "lowUptimeLowStorageLowKH": "#666666",
}

SCRIPT = """
const pick = document.getElementById('group');
pick.addEventListener('change', () => {
  const cid = pick.value;
  document.querySelectorAll('svg .node').forEach(n => {
    const member = cid !== '' && (n.dataset.groups || '').split(' ').includes(cid);
    n.classList.toggle('member', member);
    n.classList.toggle('faded', cid !== '' && !member);
  });
});
"""
STYLE = """
body { font: 14px system-ui, sans-serif; margin: 1em; }
svg { border: 1px solid #ccc; background: #fcfcfc; }
.edge { stroke: #999; stroke-opacity: .35; }
.node { stroke: #222; stroke-width: 1; }
.node.unseen { stroke-dasharray: 2 2; fill-opacity: .5; }
.node.member { stroke: #d00; stroke-width: 4; }
.node.faded { opacity: .2; }
.legend span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; vertical-align: middle; }
"""


def spring_layout(graph: nx.Graph, *, iterations: int = 120, seed: int = 1) -> dict[str, tuple[float, float]]:
    """Positions in the unit square for every node (Fruchterman–Reingold on the undirected graph)."""
    nodes = sorted(graph.nodes)
    rng = random.Random(seed)
    pos = {n: [rng.random(), rng.random()] for n in nodes}
    if len(nodes) < 2:
        return {n: (0.5, 0.5) for n in nodes}
    k = math.sqrt(1.0 / len(nodes))
    edges = {tuple(sorted(e)) for e in graph.edges if e[0] != e[1]}
    temperature = 0.1
    for _ in range(iterations):
        move = {n: [0.0, 0.0] for n in nodes}
        for i, a in enumerate(nodes):
            for b in nodes[i + 1:]:
                dx, dy = pos[a][0] - pos[b][0], pos[a][1] - pos[b][1]
                dist = max(math.hypot(dx, dy), 1e-4)
                force = k * k / dist
                move[a][0] += dx / dist * force
                move[a][1] += dy / dist * force
                move[b][0] -= dx / dist * force
                move[b][1] -= dy / dist * force
        for a, b in edges:
            dx, dy = pos[a][0] - pos[b][0], pos[a][1] - pos[b][1]
            dist = max(math.hypot(dx, dy), 1e-4)
            force = dist * dist / k
            move[a][0] -= dx / dist * force
            move[a][1] -= dy / dist * force
            move[b][0] += dx / dist * force
            move[b][1] += dy / dist * force
        for n in nodes:
            dx, dy = move[n]
            length = max(math.hypot(dx, dy), 1e-9)
            step = min(length, temperature)
            pos[n][0] += dx / length * step
            pos[n][1] += dy / length * step
        temperature *= 0.97
    xs, ys = [p[0] for p in pos.values()], [p[1] for p in pos.values()]
    span_x, span_y = max(max(xs) - min(xs), 1e-9), max(max(ys) - min(ys), 1e-9)
    return {n: ((p[0] - min(xs)) / span_x, (p[1] - min(ys)) / span_y) for n, p in pos.items()}


def render_svg(graph: nx.DiGraph) -> str:
    """The picture of ``graph`` (as built by :func:`~butter_observe._graph.overlay_graph`) as an inline
    ``<svg>`` element: a line per link, a circle (class ``node``, plus ``unseen`` for a node only named by
    others) per node with its figures as a tooltip and its groups in ``data-groups``."""
    pos = spring_layout(graph)

    def xy(node: str) -> tuple[float, float]:
        x, y = pos[node]
        return MARGIN + x * (WIDTH - 2 * MARGIN), MARGIN + y * (HEIGHT - 2 * MARGIN)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}">']
    for a, b in sorted(graph.edges):
        (x1, y1), (x2, y2) = xy(a), xy(b)
        parts.append(f'<line class="edge" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}"/>')
    for node, d in sorted(graph.nodes(data=True)):
        x, y = xy(node)
        radius = 6 + 3 * math.sqrt(d.get("items", 0))
        kind = d.get("quality_class", "")
        tip = (f"{node}\n{d.get('address', '')}\nclass {kind}\nuptime {d.get('uptime', 0):.0f} s, "
               f"{d.get('items', 0)} items kept, {d.get('storage', 0)} bytes free\nknows {d.get('known_hosts', 0)}, "
               f"known by {d.get('known_by', 0)}" + ("" if d.get("seen") else "\n(named by others only)"))
        parts.append(
            f'<circle class="node{"" if d.get("seen") else " unseen"}" cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" '
            f'fill="{COLOURS.get(kind, "#999")}" data-id="{html.escape(node)}" '
            f'data-groups="{html.escape(d.get("groups", ""))}"><title>{html.escape(tip)}</title></circle>'
        )
    parts.append("</svg>")
    return "".join(parts)


def legend() -> str:
    """The colour legend of the 8 host-quality classes, as a ``<p class="legend">``."""
    keys = "".join(f'<span style="background:{colour}"></span>{html.escape(name)}' for name, colour in COLOURS.items())
    return f'<p class="legend">{keys}</p>'


def render_html(graph: nx.DiGraph, *, title: str = "Butter overlay") -> str:
    """The page for ``graph`` (as built by :func:`~butter_observe._graph.overlay_graph`)."""
    groups: dict[str, int] = {}
    for _, d in graph.nodes(data=True):
        for cid in d.get("groups", "").split():
            groups[cid] = groups.get(cid, 0) + 1
    options = "".join(
        f'<option value="{html.escape(cid)}">{html.escape(cid[:16])}… ({count} nodes)</option>'
        for cid, count in sorted(groups.items())
    )
    summary = (f"{graph.number_of_nodes()} nodes, {graph.number_of_edges()} known-host links, "
               f"{len(groups)} groups")
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f'<p id="summary" data-nodes="{graph.number_of_nodes()}">{summary}</p>'
        f'<p><label>Highlight a group: <select id="group"><option value="">(none)</option>{options}</select>'
        f'</label></p>{legend()}{render_svg(graph)}'
        f"<script>{SCRIPT}</script></body></html>"
    )
