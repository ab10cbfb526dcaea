"""What the fault families share: editing a zone file like an admin would, ageing the
resolvers' caches, changing the firewall's config, editing a node's resolv.conf.

Every helper works from the lab's *current* state, so faults on the same service compose,
and reports whether it changed anything, so apply and revert stay idempotent. Nothing
here writes a comment, a marker or a name that could give a fault away (docs/design.md, rule 4).
"""
from __future__ import annotations

import ipaddress
import os
import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator

from lab.errors import LabError
from lab.faults.base import LabContext
from lab.model.firewall import FirewallConfig
from lab.model.roles import Roles
from lab.model.services import parse_service
from lab.protocols.dnszones import ZONE_DIR
from lab.protocols.masterfile import Entry, Master, absolute, collect_includes, read_master
from lab.protocols.zonefile import ZoneError, zone_file_name


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


class ZoneFile:
    """A zone's master file in a node, and the files it ``$INCLUDE``s, edited in place as
    an admin's editor would: only the fields that change are rewritten, wherever the
    record is written (a multi-line SOA, an included file); comments and layout stay.
    See :mod:`lab.protocols.masterfile`."""

    def __init__(self, lab: LabContext, node: str, zone: str) -> None:
        self.node = node
        self.zone = zone
        self.origin = absolute("@", zone)
        self.path: Path = lab.node(node).path(f"{ZONE_DIR}/{zone_file_name(zone)}")
        try:
            text = self.path.read_text()
            includes = collect_includes(text, lambda rel: (self.path.parent / rel).read_text(),
                                        self.path.name)
            self.master: Master = read_master(zone, text, includes, self.path.name)
        except OSError as e:
            raise LabError(f"cannot read zone {zone} on {node}: {e.strerror or e}") from None
        except ZoneError as e:
            raise LabError(f"zone {zone} on {node} does not load: {e}") from None

    @property
    def changed(self) -> bool:
        return bool(self.master.changed)

    def find(self, owner: str, rtype: str) -> list[Entry]:
        return self.master.find(absolute(owner, self.origin), rtype)

    def data(self, owner: str, rtype: str) -> list[str]:
        return [e.data for e in self.find(owner, rtype)]

    def replace(self, owner: str, rtype: str, new_data: str,
                when: Callable[[str], bool] = lambda _d: True) -> bool:
        """Set the data of the matching records for which ``when(data)`` holds."""
        done = False
        for index in range(len(self.find(owner, rtype))):
            entry = self.find(owner, rtype)[index]  # positions move after each edit
            if entry.data == new_data or not when(entry.data):
                continue
            self.master.set_data(entry, new_data)
            done = True
        return done

    def remove(self, owner: str, rtype: str) -> list[str]:
        """Delete the matching records; returns their data."""
        gone = []
        while self.find(owner, rtype):
            entry = self.find(owner, rtype)[0]
            gone.append(entry.data)
            self.master.delete(entry)
        return gone

    def add(self, owner: str, rtype: str, data: str, after: tuple[str, str] | None = None) -> None:
        """Add a record, after the last record of ``after`` (owner, type) if that exists."""
        anchors = self.find(*after) if after is not None else []
        self.master.insert_after(anchors[-1] if anchors else None, absolute(owner, self.origin),
                                 rtype, data)

    def save(self) -> bool:
        """Write the changed files back (SOA serial bumped) so the server reloads them."""
        if not self.changed:
            return False
        self.master.bump_serial()
        for file in sorted(self.master.changed):
            path = self.path if file == "" else self.path.parent / file
            _write_in_place(path, self.master.text(file))
        self.master.changed.clear()
        return True


def _write_in_place(path: Path, text: str) -> None:
    """Write ``text`` into the same file (the node's overlay sees the same inode), with
    an mtime that moves even on a coarse clock, so the name server sees the change."""
    before = path.stat().st_mtime_ns
    with open(path, "r+") as f:
        f.write(text)
        f.truncate()
    st = path.stat()
    if st.st_mtime_ns <= before:
        os.utime(path, ns=(st.st_atime_ns, before + 1_000_000))


def baseline_master(lab: LabContext, node: str, zone: str) -> Master:
    """The zone as the topology has it (the healthy baseline), as a master file."""
    spec = baseline_service(lab, node, "dns").zones[zone]
    return read_master(zone, spec.text(zone), spec.includes)


def baseline_records(lab: LabContext, node: str, zone: str, owner: str, rtype: str) -> list[str]:
    """The data of ``owner``/``rtype`` in the topology's zone (the healthy baseline)."""
    return [e.data for e in baseline_master(lab, node, zone).find(absolute(owner, zone), rtype)]


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
