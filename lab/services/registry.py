"""Service kinds by name: how a node's role config becomes running services.

Each factory takes the node's runtime handles and its validated config and returns the
services to run for it, in start order. The config models live in lab/model/services.py
under the same names (a test checks the two agree).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.model.services import parse_service
from lab.model.topology import Node, Topology
from lab.protocols.nftrules import FirewallAddresses
from lab.protocols.tlsca import LabCa
from lab.protocols.tlsnames import node_tls, server_names
from lab.services.alerts import AlertMailer
from lab.services.base import NodeContext, Service
from lab.services.dns import DnsService
from lab.services.firewall import FirewallService
from lab.services.mta import MtaService
from lab.services.proxy import SmtpProxy

Runner = Callable[[list[str], str | None], tuple[int, str, str]]


@dataclass
class NodeRuntime:
    """What a factory may use: the node as services see it, its topology entry, and a
    way to run commands inside it."""

    ctx: NodeContext
    node: Node
    run: Runner
    ca: LabCa | None = None  # the lab's certificate authority (servers' certificates)
    mail_sizes: dict[str, int] = field(default_factory=dict)  # see mail_size_limits


def mail_size_limits(topo: Topology) -> dict[str, int]:
    """Every address of a node running a mail server -> its message_size_limit (what a
    proxy in front of that server offers as SIZE)."""
    out: dict[str, int] = {}
    for node in topo.nodes.values():
        if "smtp" in node.services:
            limit = parse_service("smtp", node.services["smtp"]).message_size_limit
            out.update({str(address): limit for address in node.addresses()})
    return out


def _dns(rt: NodeRuntime, config: Any) -> list[Service]:
    return [DnsService(rt.ctx, config)]


def _smtp(rt: NodeRuntime, config: Any) -> list[Service]:
    return [MtaService(rt.ctx, config, tls=node_tls(rt.ca, rt.ctx.root, server_names(rt.node)))]


def _firewall(rt: NodeRuntime, config: Any) -> list[Service]:
    ext_if, ext = rt.node.interface_on(config.external)
    int_if, internal = rt.node.interface_on(config.internal)
    behind = [str(internal.address)]
    dmz_if = None
    if config.dmz is not None:
        dmz_if, dmz = rt.node.interface_on(config.dmz)
        behind.append(str(dmz.address))
    addresses = FirewallAddresses(external=[str(ext.address)], internal=behind)
    return [
        FirewallService(rt.ctx, config, rt.run, ext_if, int_if, addresses, dmz_if),
        SmtpProxy(rt.ctx, config, external_address=str(ext.address.ip),
                  tls=node_tls(rt.ca, rt.ctx.root, server_names(rt.node)),
                  mail_sizes=rt.mail_sizes),
    ]


def _alerts(rt: NodeRuntime, config: Any) -> list[Service]:
    return [AlertMailer(rt.ctx, config)]


FACTORIES: dict[str, Callable[[NodeRuntime, Any], list[Service]]] = {
    "firewall": _firewall,  # first: the others' traffic crosses it
    "dns": _dns,
    "smtp": _smtp,
    "alerts": _alerts,
}
