"""What every service kind shares: the node it runs in, and the start/stop/health hooks.

All services of a lab run on one asyncio loop in the lab's supervisor. A service never
blocks the loop and never starts threads; it reaches the network only through sockets
made by ``NodeContext.socket()``, which creates them inside the node's network
namespace (see ``lab/services/netns.py``), so one process can serve every node.
"""
from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SocketFactory = Callable[[int, int, int], socket.socket]


def _host_socket(family: int, type_: int, proto: int = 0) -> socket.socket:
    sock = socket.socket(family, type_, proto)
    sock.setblocking(False)
    return sock


@dataclass
class NodeContext:
    """One node as a service sees it.

    ``root`` is the host directory that holds the node's private files: the node sees
    ``root/etc`` layered over /etc, and ``root/var/{mail,spool,log}`` as its own
    /var/mail, /var/spool and /var/log. ``path('/var/log/mail.log')`` maps a path as the
    node sees it to the host path a service must open.
    """

    name: str
    root: Path
    addresses: list[str] = field(default_factory=list)
    socket_factory: SocketFactory = _host_socket

    def path(self, node_path: str) -> Path:
        return self.root / node_path.lstrip("/")

    def socket(
        self, family: int = socket.AF_INET, type_: int = socket.SOCK_STREAM, proto: int = 0
    ) -> socket.socket:
        """A non-blocking, unbound socket in this node's network namespace."""
        return self.socket_factory(family, type_, proto)


class Service:
    """A service kind: a name, a start/stop pair on the running loop, and a health check."""

    kind: str = ""

    def __init__(self, node: NodeContext) -> None:
        self.node = node

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def healthy(self) -> bool:
        """True when the service answers as it should (a real query, not a flag)."""
        raise NotImplementedError
