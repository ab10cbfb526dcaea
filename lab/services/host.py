"""All services of one lab, run on the supervisor's asyncio loop."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lab.errors import LabError
from lab.model.services import parse_service
from lab.model.topology import Topology
from lab.protocols.clock import LabClock
from lab.protocols.tlsca import LabCa
from lab.services.base import NodeContext, Service
from lab.services.netns import node_runner, socket_factory
from lab.services.registry import FACTORIES, NodeRuntime, mail_size_limits

if TYPE_CHECKING:
    from lab.engine.layout import NodeFiles

HEALTH_TIMEOUT = 5.0


class ServiceHost:
    def __init__(self, topo: Topology, files: dict[str, NodeFiles], pids: dict[str, int],
                 ca: LabCa | None = None, clock: LabClock | None = None) -> None:
        self.topo = topo
        self.clock = clock or LabClock()  # one per lab: every node's services read it
        self.services: dict[str, list[Service]] = {}
        self.contexts: dict[str, NodeContext] = {}
        sizes = mail_size_limits(topo)
        for name, node in topo.nodes.items():
            addresses = [str(a) for a in node.addresses()] + ["127.0.0.1"]
            ctx = NodeContext(name, files[name].root, addresses,
                              socket_factory(f"/proc/{pids[name]}/ns/net"), self.clock)
            self.contexts[name] = ctx
            if not node.services:
                continue
            rt = NodeRuntime(ctx, node, node_runner(pids[name]), ca, sizes)
            found: list[Service] = []
            for kind in FACTORIES:  # registry order is start order
                if kind in node.services:
                    found += FACTORIES[kind](rt, parse_service(kind, node.services[kind]))
            self.services[name] = found

    def get(self, node: str, kind: str) -> Service:
        for svc in self.services.get(node, []):
            if svc.kind == kind:
                return svc
        raise LabError(f"no {kind} service on node {node}")

    def all(self) -> list[tuple[str, Service]]:
        return [(node, s) for node, group in self.services.items() for s in group]

    def slow_closes(self) -> list[Callable[[], None]]:
        """Every service's (Service.slow_closes): the lab is going down."""
        return [close for _, svc in self.all() for close in svc.slow_closes()]

    async def start(self) -> None:
        """Start the firewall first, then everything else at once; wait until healthy."""
        ordered = [ns for ns in self.all() if ns[1].kind == "firewall"]
        rest = [ns for ns in self.all() if ns[1].kind != "firewall"]
        for node, svc in ordered:
            await _start(node, svc)
        await asyncio.gather(*(_start(node, svc) for node, svc in rest))
        await self.wait_healthy()

    async def wait_healthy(self, timeout: float = HEALTH_TIMEOUT) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        pending = self.all()
        while pending:
            results = await asyncio.gather(*(svc.healthy() for _, svc in pending))
            pending = [ns for ns, ok in zip(pending, results) if not ok]
            if not pending:
                return
            if asyncio.get_running_loop().time() > deadline:
                names = ", ".join(f"{svc.kind} on {node}" for node, svc in pending)
                raise LabError(f"services not healthy after {timeout:.0f} s: {names}")
            await asyncio.sleep(0.05)

    async def health(self) -> dict[str, list[dict[str, Any]]]:
        pairs = self.all()
        results = await asyncio.gather(*(svc.healthy() for _, svc in pairs),
                                       return_exceptions=True)
        out: dict[str, list[dict[str, Any]]] = {}
        for (node, svc), ok in zip(pairs, results):
            out.setdefault(node, []).append({"kind": svc.kind, "healthy": ok is True})
        return out


async def _start(node: str, svc: Service) -> None:
    try:
        await svc.start()
    except LabError as e:
        raise LabError(f"{svc.kind} on {node}: {e.message}", e.hint) from e
    except OSError as e:
        raise LabError(f"{svc.kind} on {node} failed to start: {e}") from e
