"""What the fault families share: editing a zone file like an admin would, ageing the
resolvers' caches, changing the firewall's config, editing a node's resolv.conf.

Every helper works from the lab's *current* state, so faults on the same service compose,
and reports whether it changed anything, so apply and revert stay idempotent. Nothing
here writes a comment, a marker or a name that could give a fault away (DESIGN.md rule 4).
"""
from __future__ import annotations

import ipaddress
import os
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator

from lab.errors import LabError
from lab.faults.base import LabContext
from lab.model.firewall import FirewallConfig
from lab.model.roles import Roles
from lab.model.services import parse_service
from lab.protocols.zonefile import zone_file_name


def _ipv4(value: str) -> str:
    return str(ipaddress.IPv4Address(value.strip()))


IPv4 = Annotated[str, AfterValidator(_ipv4)]


def baseline_service(lab: LabContext, node: str, kind: str) -> Any:
    """The service config as the topology has it (the healthy baseline)."""
    try:
        raw = lab.topo.nodes[node].services[kind]
    except KeyError:
        raise LabError(f"node {node} has no {kind} service in topology {lab.topo.name}") from None
    return parse_service(kind, raw)


# --- zone files ---------------------------------------------------------------------------


@dataclass
class ZoneLine:
    """One line of a master file; ``rtype``/``data`` are None for anything but a record."""

    text: str
    owner: str | None = None  # absolute, lower case
    rtype: str | None = None
    data: str | None = None  # the data fields joined by one blank

    @property
    def is_record(self) -> bool:
        return self.rtype is not None


def absolute(name: str, origin: str) -> str:
    name = name.strip().lower()
    origin = origin.strip().lower().rstrip(".") + "."
    if name == "@":
        return origin
    if name.endswith("."):
        return name
    return f"{name}.{origin}" if origin != "." else f"{name}."


_CLASSES = {"IN", "CH", "HS"}


def _parse_line(text: str, origin: str, previous_owner: str | None) -> tuple[ZoneLine, str | None]:
    body = text.split(";", 1)[0]
    if not body.strip() or body.lstrip().startswith("$") or "(" in body or ")" in body:
        return ZoneLine(text), previous_owner
    tokens = body.split()
    if body[:1].isspace():
        owner = previous_owner
    else:
        owner = absolute(tokens.pop(0), origin)
    for _ in range(2):
        if tokens and (tokens[0].isdigit() or tokens[0][:-1].isdigit()) or tokens and tokens[0].upper() in _CLASSES:
            tokens.pop(0)
    if not tokens or owner is None:
        return ZoneLine(text), previous_owner
    return ZoneLine(text, owner, tokens[0].upper(), " ".join(tokens[1:])), owner


class ZoneFile:
    """A zone's master file in a node, edited in place as an admin's editor would."""

    def __init__(self, lab: LabContext, node: str, zone: str) -> None:
        self.node = node
        self.zone = zone
        self.origin = absolute("@", zone)
        self.path: Path = lab.node(node).path(f"/etc/bind/{zone_file_name(zone)}")
        try:
            text = self.path.read_text()
        except OSError as e:
            raise LabError(f"cannot read zone {zone} on {node}: {e.strerror or e}") from None
        self.lines: list[ZoneLine] = []
        owner: str | None = None
        for raw in text.splitlines():
            if raw.lstrip().startswith("$ORIGIN"):
                parts = raw.split()
                if len(parts) > 1:
                    self.origin = absolute(parts[1], ".")
            line, owner = _parse_line(raw, self.origin, owner)
            self.lines.append(line)
        self.changed = False

    def find(self, owner: str, rtype: str) -> list[ZoneLine]:
        name = absolute(owner, self.origin)
        return [ln for ln in self.lines if ln.owner == name and ln.rtype == rtype.upper()]

    def data(self, owner: str, rtype: str) -> list[str]:
        return [ln.data or "" for ln in self.find(owner, rtype)]

    def replace(self, owner: str, rtype: str, new_data: str,
                when: Callable[[str], bool] = lambda _d: True) -> bool:
        """Set the data of the matching records for which ``when(data)`` holds."""
        done = False
        for line in self.find(owner, rtype):
            if line.data == new_data or not when(line.data or ""):
                continue
            line.text = _with_data(line.text, new_data)
            line.data = new_data
            done = True
        self.changed |= done
        return done

    def remove(self, owner: str, rtype: str) -> list[str]:
        """Delete the matching records; returns their data."""
        gone = self.find(owner, rtype)
        self.lines = [ln for ln in self.lines if ln not in gone]
        self.changed |= bool(gone)
        return [ln.data or "" for ln in gone]

    def add(self, owner: str, rtype: str, data: str, after: tuple[str, str] | None = None) -> None:
        """Add a record, after the last record of ``after`` (owner, type) if that exists."""
        owners = [ln.text.split()[0] for ln in self.lines
                  if ln.is_record and not ln.text[:1].isspace()]
        width = max([len(o) for o in owners] + [len(owner)])
        text = f"{owner:<{width}} {'':<6} IN {rtype.upper():<5} {data}".rstrip()
        line = ZoneLine(text, absolute(owner, self.origin), rtype.upper(), data)
        index = len(self.lines)
        if after is not None:
            anchors = [i for i, ln in enumerate(self.lines)
                       if ln.owner == absolute(after[0], self.origin) and ln.rtype == after[1]]
            if anchors:
                index = anchors[-1] + 1
        self.lines.insert(index, line)
        self.changed = True

    def save(self) -> bool:
        """Write the file back (serial bumped) if anything changed, so the server reloads."""
        if not self.changed:
            return False
        for line in self.lines:
            if line.rtype == "SOA" and line.data:
                fields = line.data.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    fields[2] = str((int(fields[2]) + 1) % 2**32)
                    new = " ".join(fields)
                    line.text = _with_data(line.text, new)
                    line.data = new
                break
        before = self.path.stat().st_mtime_ns
        text = "\n".join(ln.text for ln in self.lines) + "\n"
        with open(self.path, "r+") as f:  # in place: the node's overlay sees the same file
            f.write(text)
            f.truncate()
        st = self.path.stat()
        if st.st_mtime_ns <= before:  # a coarse clock: make sure the server sees a change
            os.utime(self.path, ns=(st.st_atime_ns, before + 1_000_000))
        self.changed = False
        return True


def _with_data(text: str, new_data: str) -> str:
    """The record line with its data fields replaced, owner/ttl/class/type kept as written."""
    body, sep, comment = text.partition(";")
    tokens = body.split()
    keep = 0 if body[:1].isspace() else 1
    for _ in range(2):
        if len(tokens) > keep and (tokens[keep].isdigit() or tokens[keep][:-1].isdigit()
                                   or tokens[keep].upper() in _CLASSES):
            keep += 1
    keep += 1  # the type
    # keep the original spacing up to the end of the type field
    pos = 0
    for token in tokens[:keep]:
        pos = body.index(token, pos) + len(token)
    gap = pos
    while gap < len(body) and body[gap].isspace():
        gap += 1
    head = body[:gap] if gap > pos else body[:pos] + " "
    return f"{head}{new_data}" + (f" {sep}{comment}" if sep else "")


def baseline_records(lab: LabContext, node: str, zone: str, owner: str, rtype: str) -> list[str]:
    """The data of ``owner``/``rtype`` in the topology's zone (the healthy baseline)."""
    records = baseline_service(lab, node, "dns").zones[zone].records
    origin = absolute("@", zone)
    out = []
    for text in records:
        line, _ = _parse_line(text, origin, None)
        if line.owner == absolute(owner, origin) and line.rtype == rtype.upper():
            out.append(line.data or "")
    return out


def same_name(a: str, b: str, origin: str) -> bool:
    return absolute(a, origin) == absolute(b, origin)


# --- resolver caches ---------------------------------------------------------------------


def dns_services(lab: LabContext) -> list[tuple[str, Any]]:
    out = []
    for name, node in lab.topo.nodes.items():
        if "dns" in node.services:
            out.append((name, lab.service(name, "dns")))
    return out


def age_caches(lab: LabContext, under: str, seconds: float,
               nodes: Iterable[str] | None = None) -> int:
    """Let ``seconds`` pass for every resolver's cached data at or below ``under``.

    A changed zone only shows once the old data has left the caches; a fault is meant
    to have happened a while ago. Entries with more time left than ``seconds`` (a
    record planted with a long TTL) stay. Returns how many entries went.
    """
    gone = 0
    only = set(nodes) if nodes is not None else None
    for node, svc in dns_services(lab):
        if svc.resolver is None or (only is not None and node not in only):
            continue
        gone += svc.cache.expire(under, seconds + 1)
    return gone


def forget_cached(lab: LabContext, node: str, name: str, rtype: int,
                  values: Iterable[str]) -> bool:
    """Drop ``name``/``rtype`` from ``node``'s resolver cache if it holds one of ``values``."""
    cache = lab.service(node, "dns").cache
    records = cache.get(name, rtype)
    if not records or not {str(rr.rdata) for rr in records} & set(values):
        return False
    cache.forget(name, rtype)
    return True


# --- the firewall ------------------------------------------------------------------------


def firewall_config(lab: LabContext) -> FirewallConfig:
    return lab.service(lab.roles.need("firewall"), "firewall").config


def baseline_firewall(lab: LabContext) -> FirewallConfig:
    return baseline_service(lab, lab.roles.need("firewall"), "firewall")


async def set_firewall(lab: LabContext, new: FirewallConfig) -> bool:
    """Load ``new`` (rules and NAT atomically) and give the SMTP proxy the same config,
    restarting it when its part changed. False if there was nothing to change."""
    node = lab.roles.need("firewall")
    fw = lab.service(node, "firewall")
    proxy = lab.service(node, "proxy")
    changed = False
    if new != fw.config:
        fw.load(new)
        changed = True
    if await proxy.reconfigure(new):
        changed = True
    return changed


def restore_item(current: list, baseline: list, item: Any, key: Callable[[Any], Any]) -> list:
    """``current`` with ``item`` put back where the baseline had it, relative to the items
    that are still there (other faults may have removed some)."""
    keys = [key(x) for x in current]
    if key(item) in keys:
        return list(current)
    base_keys = [key(x) for x in baseline]
    index = 0
    if key(item) in base_keys:
        for prev in reversed(base_keys[:base_keys.index(key(item))]):
            if prev in keys:
                index = keys.index(prev) + 1
                break
    return current[:index] + [item] + current[index:]


# --- a node's resolv.conf -----------------------------------------------------------------


def read_nameservers(lab: LabContext, node: str) -> tuple[Path, list[str], list[str]]:
    path = lab.node(node).path("/etc/resolv.conf")
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        lines = []
    servers = [ln.split()[1] for ln in lines
               if len(ln.split()) >= 2 and ln.split()[0] == "nameserver"]
    return path, lines, servers


def write_nameservers(lab: LabContext, node: str, servers: list[str]) -> bool:
    """Replace the node's nameserver lines by ``servers`` (where the first one was)."""
    path, lines, current = read_nameservers(lab, node)
    if current == servers:
        return False
    out: list[str] = []
    placed = False
    for ln in lines:
        parts = ln.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            if not placed:
                out += [f"nameserver {s}" for s in servers]
                placed = True
            continue
        out.append(ln)
    if not placed:
        out += [f"nameserver {s}" for s in servers]
    text = "\n".join(out) + "\n"
    with open(path, "r+" if path.exists() else "w") as f:  # in place, as an editor saves
        f.write(text)
        f.truncate()
    return True


def run_ok(lab: LabContext, node: str, argv: list[str], stdin: str | None = None) -> str:
    rc, out, err = lab.run(node, argv, stdin)
    if rc != 0:
        raise LabError(f"{node}: {' '.join(argv)} failed: {err.strip() or out.strip()}")
    return out


# --- drawing -------------------------------------------------------------------------------


def unused_address(rng: random.Random, roles: Roles, subnet: str) -> str:
    """An address of ``subnet`` (a segment's) that no node uses: where nothing answers."""
    net = ipaddress.IPv4Network(subnet)
    used = set(roles.used_addresses)
    free = [str(a) for a in net.hosts() if str(a) not in used]
    if not free:
        raise LabError(f"no unused address left in {subnet}")
    return rng.choice(free)
