"""What `lab status` shows of a node, read live from inside it."""
from __future__ import annotations

import json
from typing import Any


def node_status(node: Any) -> dict[str, Any]:
    """Interfaces with their state and IPv4 addresses, and the routing table."""
    addrs = json.loads(node.cmd("ip -j addr show") or "[]")
    routes = json.loads(node.cmd("ip -j -4 route show") or "[]")
    interfaces = []
    for link in addrs:
        if link["ifname"] == "lo":
            continue
        interfaces.append({
            "name": link["ifname"],
            "state": link.get("operstate", "UNKNOWN"),
            "addresses": [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                          if a.get("family") == "inet"],
        })
    table = []
    for r in routes:
        entry = r["dst"]
        if "gateway" in r:
            entry += f" via {r['gateway']}"
        table.append(entry + f" dev {r['dev']}")
    return {"interfaces": interfaces, "routes": table}
