"""A picture of a topology as SVG: segments as buses, nodes as boxes with their addresses.

The same picture serves `lab topology NAME --svg FILE` and the classroom's trainee page
(which marks the faulty nodes once an attempt is scored). Layout, for any topology:
every segment is a horizontal bus, one below the other in file order; a node on one
segment sits in a row just under its bus; a node on several segments (a router, a
firewall) gets a column of its own on the left, its box between its first two buses and a
vertical line to each of them. A dot marks every real attachment, so a line that only
passes a bus is not read as a link.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape

from lab.model.topology import Node, Topology

CHAR_W = 7.2  # px per character of the 12 px monospace font
LINE_H = 16
PAD = 8
GAP = 24  # between boxes in a row
MARGIN = 20
BUS_GAP = 30  # from a bus down to the boxes under it
ROUTER_COL = 36  # extra room around a router's column


@dataclass
class Box:
    name: str
    lines: list[str]
    x: float = 0
    y: float = 0

    @property
    def w(self) -> float:
        return max(110.0, max(len(t) for t in self.lines) * CHAR_W + 2 * PAD)

    @property
    def h(self) -> float:
        return len(self.lines) * LINE_H + 2 * PAD - 2

    @property
    def cx(self) -> float:
        return self.x + self.w / 2


def node_lines(name: str, node: Node) -> list[str]:
    """What a box shows: the name, its services, one line per interface address."""
    lines = [name]
    if node.services:
        lines.append("(" + ", ".join(node.services) + ")")
    multi = len(node.interfaces) > 1
    for i, intf in enumerate(node.interfaces):
        addrs = [str(intf.address.ip)] + [str(a.ip) for a in intf.aliases]
        prefix = f"eth{i} " if multi or intf.aliases else ""
        lines.append(prefix + ", ".join(addrs))
    return lines


def render_svg(topo: Topology, marked: frozenset[str] | set[str] = frozenset()) -> str:
    """The topology as a standalone SVG document; ``marked`` nodes are drawn as faulty."""
    segments = list(topo.segments)
    routers = [n for n, node in topo.nodes.items() if len(node.interfaces) > 1]
    leaves = {s: [n for n, node in topo.nodes.items()
                  if len(node.interfaces) == 1 and node.interfaces[0].segment == s]
              for s in segments}
    boxes = {n: Box(n, node_lines(n, node)) for n, node in topo.nodes.items()}
    row_h = max([boxes[n].h for n in topo.nodes] + [LINE_H * 3]) + BUS_GAP + 2 * PAD
    bus_y = {s: MARGIN + LINE_H + i * row_h for i, s in enumerate(segments)}

    x = MARGIN
    for r in routers:
        boxes[r].x = x + ROUTER_COL / 2
        x += boxes[r].w + ROUTER_COL
    left = x
    width = left
    for s in segments:
        cx = left
        for n in leaves[s]:
            boxes[n].x, boxes[n].y = cx, bus_y[s] + BUS_GAP
            cx += boxes[n].w + GAP
        width = max(width, cx)
    for r in routers:
        ys = sorted(bus_y[i.segment] for i in topo.nodes[r].interfaces)
        low = ys[1] if len(ys) > 1 else ys[0] + row_h
        boxes[r].y = (ys[0] + low) / 2 - boxes[r].h / 2
    height = MARGIN + LINE_H + len(segments) * row_h
    width += MARGIN

    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" class="topology" '
           f'viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}" '
           f'font-family="monospace" font-size="12">'),
           f"<title>{escape(topo.name)}</title>",
           ('<style>.bus{stroke:#456;stroke-width:3}.link{stroke:#456;stroke-width:1.5}'
           '.box{fill:#f4f7fb;stroke:#456;stroke-width:1.2}'
           '.box.faulty{fill:#fde8e8;stroke:#c0392b;stroke-width:3}'
           '.name{font-weight:bold}.seg{fill:#345;font-weight:bold}'
           '.badge{fill:#c0392b;font-weight:bold}.dot{fill:#456}</style>')]
    bus_x0 = MARGIN
    for s in segments:
        y = bus_y[s]
        out.append(f'<line class="bus" x1="{bus_x0}" y1="{y}" x2="{width - MARGIN:.0f}" y2="{y}"/>')
        label = f"{s} {topo.segments[s].subnet}"
        out.append(f'<text class="seg" x="{left:.0f}" y="{y - 6}">{escape(label)}</text>')
    for name, node in topo.nodes.items():
        out += _node_svg(boxes[name], node, bus_y, name in marked)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _node_svg(box: Box, node: Node, bus_y: dict[str, float], faulty: bool) -> list[str]:
    out = [f'<g class="node" data-node="{escape(box.name)}">']
    if node.description:
        out.append(f"<title>{escape(box.name)}: {escape(node.description)}</title>")
    for intf in node.interfaces:
        y = bus_y[intf.segment]
        end = box.y if y < box.y else box.y + box.h
        out.append(f'<line class="link" x1="{box.cx:.1f}" y1="{y}" x2="{box.cx:.1f}" '
                   f'y2="{end:.1f}"/>')
        out.append(f'<circle class="dot" cx="{box.cx:.1f}" cy="{y}" r="4"/>')
    cls = "box faulty" if faulty else "box"
    out.append(f'<rect class="{cls}" x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" '
               f'height="{box.h:.1f}" rx="5"/>')
    for i, text in enumerate(box.lines):
        cls = ' class="name"' if i == 0 else ""
        ty = box.y + PAD + 10 + i * LINE_H
        out.append(f'<text{cls} x="{box.x + PAD:.1f}" y="{ty:.1f}">{escape(text)}</text>')
    if faulty:
        out.append(f'<text class="badge" x="{box.x + box.w - PAD:.1f}" y="{box.y + PAD + 10:.1f}"'
                   f' text-anchor="end">FAULT</text>')
    out.append("</g>")
    return out
