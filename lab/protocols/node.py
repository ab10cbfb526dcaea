"""One node as the protocol code and the services see it: where its files are, its
addresses, and how to make a socket inside its network namespace."""
from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab.protocols.clock import LabClock

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
    node sees it to the host path a service must open. ``clock`` is the lab's clock: the
    time every log line, queue file and mailbox stamp records (one per lab, shared by its
    nodes; see lab/protocols/clock.py).
    """

    name: str
    root: Path
    addresses: list[str] = field(default_factory=list)
    socket_factory: SocketFactory = _host_socket
    clock: LabClock = field(default_factory=LabClock)

    def path(self, node_path: str) -> Path:
        return self.root / node_path.lstrip("/")

    def socket(
        self, family: int = socket.AF_INET, type_: int = socket.SOCK_STREAM, proto: int = 0
    ) -> socket.socket:
        """A non-blocking, unbound socket in this node's network namespace."""
        return self.socket_factory(family, type_, proto)
