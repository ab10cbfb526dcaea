"""What every service kind shares: the node it runs in, and the start/stop/health hooks.

All services of a lab run on one asyncio loop in the lab's supervisor. A service never
blocks the loop and never starts threads; it reaches the network only through sockets
made by ``NodeContext.socket()``, which creates them inside the node's network
namespace (see ``lab/services/netns.py``), so one process can serve every node.
"""
from __future__ import annotations

from collections.abc import Callable

from lab.protocols.node import NodeContext, SocketFactory

__all__ = ["NodeContext", "Service", "SocketFactory"]


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

    def slow_closes(self) -> list[Callable[[], None]]:
        """Take off the loop what the kernel is slow to release and return how to close
        it: the supervisor runs those beside the rest of a lab's teardown (the lab is going
        down; the service is not used again). None by default."""
        return []
