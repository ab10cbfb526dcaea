"""Which node an address or a host name stands for, read from a topology.

Method credit counts a node as examined when a command addressed it (``dig @addr``,
``telnet mail.example.net 25``), so scoring needs to know whose address that is. The map
is built from the topology the lab runs (not the reference one): every interface address
and alias, the static NAT (a public address leads to the firewall that owns it and to
the private host behind it), the A records of every zone the topology serves, the
nodes' ``hosts:`` entries, and names made relative to the nodes' search domains.
"""
from __future__ import annotations

from dnslib import QTYPE

from lab.model.services import parse_service
from lab.model.topology import Topology
from lab.protocols.zonefile import ZoneError, parse_record, zone_origin

AddressMap = dict[str, list[str]]


def address_map(topo: Topology) -> AddressMap:
    """address or name (lower case, no trailing dot) -> the nodes it leads to, sorted."""
    owners: dict[str, set[str]] = {}
    for name, node in topo.nodes.items():
        owners.setdefault(name.lower(), set()).add(name)
        for addr in node.addresses():
            owners.setdefault(str(addr), set()).add(name)
    for node in topo.nodes.values():
        fw = node.services.get("firewall")
        if fw is not None:
            for entry in parse_service("firewall", fw).static_nat:
                owners.setdefault(entry.public, set()).update(owners.get(entry.private, set()))
    names = _names(topo)
    suffixes = {"." + d.strip(".").lower() for node in topo.nodes.values() for d in node.search}
    relative: dict[str, dict[str, set[str]]] = {}  # short name -> search suffix -> nodes
    for host, addrs in names.items():
        leads = set().union(*(owners.get(a, set()) for a in addrs))
        if leads:
            owners.setdefault(host, set()).update(leads)
            for suffix in suffixes:
                if host.endswith(suffix):
                    relative.setdefault(host[: -len(suffix)], {})[suffix] = leads
    for short, by_suffix in relative.items():
        if len(by_suffix) == 1 and short not in owners:  # "mail" is ambiguous: left out
            owners[short] = next(iter(by_suffix.values()))
    return {key: sorted(nodes) for key, nodes in sorted(owners.items()) if nodes}


def _names(topo: Topology) -> dict[str, set[str]]:
    """Every host name the topology knows an IPv4 address for."""
    out: dict[str, set[str]] = {}
    for node in topo.nodes.values():
        for host, addr in node.hosts.items():
            out.setdefault(host.strip(".").lower(), set()).add(str(addr))
        dns = node.services.get("dns")
        if dns is None:
            continue
        config = parse_service("dns", dns)
        for zone, data in config.zones.items():
            for text in data.records:
                try:
                    rr = parse_record(text, zone_origin(zone))
                except ZoneError:
                    continue
                if rr.rtype == QTYPE.A:
                    out.setdefault(str(rr.rname).strip(".").lower(), set()).add(str(rr.rdata))
        for hint in config.root_hints:
            out.setdefault(hint.name.strip(".").lower(), set()).add(str(hint.address))
    return out


def nodes_addressed(word: str, addresses: AddressMap) -> list[str]:
    """The nodes a command-line word names: ``10.1.0.25``, ``@203.0.113.53``,
    ``mail.example.net.``, ``10.1.0.25:25``, ``--server=mail.example.net``."""
    found: list[str] = []
    for candidate in _candidates(word):
        for node in addresses.get(candidate, []):
            if node not in found:
                found.append(node)
    return found


def _candidates(word: str) -> list[str]:
    w = word.strip().lower()
    w = w.split("=", 1)[1] if w.startswith("-") and "=" in w else w
    w = w.removeprefix("@")
    if "://" in w:
        w = w.split("://", 1)[1].split("/", 1)[0]
    out = [w.rstrip(".")]
    if w.count(":") == 1:  # host:port
        out.append(w.split(":", 1)[0].rstrip("."))
    return out
