"""The topology file: segments, nodes, addresses, routes and each node's role config.

Plain data: nothing here knows about Mininet. ``problems()`` holds the checks that span
several fields, so that each can still point at the field (and line) at fault.
"""
from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, ip_network
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lab.errors import LabError
from lab.model.roles import RoleNames, role_problems
from lab.model.services import service_problems
from lab.model.source import FileError, Lines, Loc, lay, read_yaml, row, sort_problems, validate
from lab.model.zonefiles import read_zone_files

NAME_PATTERN = r"^[a-z][a-z0-9-]*$"
# Lab addresses: two of RFC 5737's documentation ranges (not the first: machines here use
# it for their own uplink) and RFC 1918 private ranges. Anything else is refused.
ALLOWED_NETWORKS = [
    ip_network(n)
    for n in ("198.51.100.0/24", "203.0.113.0/24", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_allowed(value: IPv4Interface | IPv4Address | IPv4Network) -> Any:
    net = value.network if isinstance(value, IPv4Interface) else value
    if isinstance(net, IPv4Address):
        ok = any(net in allowed for allowed in ALLOWED_NETWORKS)
    else:
        ok = any(net.subnet_of(allowed) for allowed in ALLOWED_NETWORKS)
    if not ok:
        raise ValueError(
            f"{value} is outside the lab ranges (RFC 5737 198.51.100.0/24, 203.0.113.0/24 "
            "or RFC 1918 private space)"
        )
    return value


class Segment(Strict):
    subnet: IPv4Network
    description: str = ""

    _allowed = field_validator("subnet")(_check_allowed)


class Interface(Strict):
    segment: str
    address: IPv4Interface
    aliases: list[IPv4Interface] = []

    _allowed = field_validator("address")(_check_allowed)


class Route(Strict):
    to: IPv4Network
    via: IPv4Address


class Node(Strict):
    description: str = ""
    interfaces: list[Interface] = Field(min_length=1)
    gateway: IPv4Address | None = None
    routes: list[Route] = []
    forwarding: bool = False
    nameservers: list[IPv4Address] = []
    search: list[str] = []
    hosts: dict[str, IPv4Address] = {}
    services: dict[str, dict[str, Any]] = {}

    def addresses(self) -> list[IPv4Address]:
        out = []
        for intf in self.interfaces:
            out.append(intf.address.ip)
            out.extend(a.ip for a in intf.aliases)
        return out

    def interface_on(self, segment: str) -> tuple[str, Interface]:
        """The node's interface name (eth0, eth1, ...) and config on a segment."""
        for i, intf in enumerate(self.interfaces):
            if intf.segment == segment:
                return f"eth{i}", intf
        raise KeyError(segment)

    def connected(self) -> list[IPv4Network]:
        return [intf.address.network for intf in self.interfaces]


class Variant(Strict):
    description: str = ""
    nodes: dict[str, dict[str, Any]] = {}


class Topology(Strict):
    name: str = Field(pattern=NAME_PATTERN, max_length=30)
    description: str = ""
    segments: dict[str, Segment] = Field(min_length=1)
    nodes: dict[str, Node] = Field(min_length=1)
    # named sets of changes laid over the file (deep merge; lists are replaced whole),
    # e.g. the SMTP proxy's "Inbound To" mode with DNS pointing at the firewall
    variants: dict[str, Variant] = {}
    # what cannot be derived from the services (lab/model/roles.py): node names per role
    roles: RoleNames = RoleNames()

    def problems(self) -> list[tuple[Loc, str]]:
        """Checks across fields, each with the field it concerns."""
        found: list[tuple[Loc, str]] = []
        found += self._name_problems()
        seen: dict[IPv4Address, str] = {}
        for name, node in self.nodes.items():
            found += _node_problems(self, name, node, seen)
        found += role_problems(self)
        return found

    def _name_problems(self) -> list[tuple[Loc, str]]:
        found: list[tuple[Loc, str]] = []
        for seg in self.segments:
            if not re.fullmatch(NAME_PATTERN, seg) or len(seg) > 10:
                found.append((("segments", seg), ("segment names are lowercase letters, digits "
                              "and '-', at most 10 characters (they name bridges)")))
            if seg in self.nodes:
                found.append((("segments", seg), f"'{seg}' is also a node name"))
        for node in self.nodes:
            if not re.fullmatch(NAME_PATTERN, node) or len(node) > 15:
                found.append((("nodes", node), ("node names are lowercase letters, digits and "
                              "'-', at most 15 characters")))
        return found


def _node_problems(
    topo: Topology, name: str, node: Node, seen: dict[IPv4Address, str]
) -> list[tuple[Loc, str]]:
    found: list[tuple[Loc, str]] = []
    base: Loc = ("nodes", name)
    used_segments: set[str] = set()
    for i, intf in enumerate(node.interfaces):
        loc = base + ("interfaces", i)
        segment = topo.segments.get(intf.segment)
        if segment is None:
            known = ", ".join(sorted(topo.segments))
            found.append((loc + ("segment",), f"unknown segment '{intf.segment}' (known: {known})"))
            continue
        if intf.segment in used_segments:
            found.append((loc + ("segment",), f"a second interface on segment '{intf.segment}'"))
        used_segments.add(intf.segment)
        for field, addr in [("address", intf.address)] + [
            (("aliases", j), a) for j, a in enumerate(intf.aliases)
        ]:
            floc = loc + (field if isinstance(field, tuple) else (field,))
            if addr.ip not in segment.subnet:
                found.append((floc, (f"{addr.ip} is not in segment {intf.segment} "
                                     f"({segment.subnet})")))
            if addr.ip in seen:
                found.append((floc, f"{addr.ip} is already used by {seen[addr.ip]}"))
            seen.setdefault(addr.ip, name)
    found += service_problems(base + ("services",), node.services)
    fw = node.services.get("firewall")
    if isinstance(fw, dict):
        for side in ("external", "internal", "dmz"):
            value = fw.get(side)  # the firewall model reports a value that is not a name
            if isinstance(value, str) and value not in used_segments:
                found.append((base + ("services", "firewall", side),
                              f"{name} has no interface on segment '{value}'"))
    nets = node.connected()
    if node.gateway is not None and not any(node.gateway in n for n in nets):
        found.append((base + ("gateway",),
                      f"{node.gateway} is not on a segment {name} is attached to"))
    for j, route in enumerate(node.routes):
        if not any(route.via in n for n in nets):
            found.append((base + ("routes", j, "via"), f"{route.via} is not directly reachable"))
    return found


def load_topology(path: Path, variant: str | None = None,
                  overrides: Layer | dict[str, Any] | None = None) -> Topology:
    """A topology file, optionally with one of its variants and then ``overrides`` (a
    mapping laid over the file like a variant, e.g. a scenario's) applied. Errors in a
    field that a variant or the overrides set point at the line that set it."""
    if isinstance(overrides, dict):
        overrides = Layer(overrides, path, {}, ()) if overrides else None
    data, lines = read_yaml(path)
    _zone_files(path, data, lines)
    topo = validate(path, Topology, data, lines)
    if variant is None and overrides is None:
        return topo
    context = ""
    if variant is not None:
        if variant not in topo.variants:
            names = ", ".join(sorted(topo.variants)) or "none"
            raise LabError(f"{path}: no variant '{variant}'", hint=f"variants: {names}")
        data, lines = lay(data, lines, _variant_changes(data, variant), lines,
                          ("variants", variant))
        context = f"with variant '{variant}': "
    if overrides is not None:
        data, lines = lay(data, lines, overrides.data, overrides.lines, overrides.prefix,
                          overrides.path)
        context = ("with the overrides: " if overrides.path == path
                   else f"with the overrides of {overrides.path}: ")
    _zone_files(path, data, lines, context)
    return validate(path, Topology, data, lines, context)


def _zone_files(path: Path, data: Any, lines: Lines, context: str = "") -> None:
    """Read the zones' master files (``zone_file``) next to the topology file."""
    found = read_zone_files(data, path.parent)
    if found:
        raise FileError(path, sort_problems(row(lines, loc, msg, context) for loc, msg in found))


def _variant_changes(data: dict, variant: str) -> dict:
    return {k: v for k, v in data["variants"][variant].items() if k != "description"}


class Layer(NamedTuple):
    """Changes laid over a topology from another file: the data, that file's line map, and
    where the data sits in it (e.g. a scenario's ``overrides``)."""

    data: dict[str, Any]
    path: Path
    lines: Lines
    prefix: Loc


def check_topology_file(path: Path) -> Topology:
    """The topology and every one of its variants, checked: a FileError lists the problems
    of all of them at once (each variant's at the variant's own lines)."""
    topo = load_topology(path)
    problems: list = []
    for name in topo.variants:
        try:
            load_topology(path, name)
        except FileError as e:
            problems += e.problems
    if problems:
        raise FileError(path, sort_problems(problems))
    return topo
