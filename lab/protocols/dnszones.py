"""The zones a DNS service is authoritative for, each served from its file in the node.

Zone files live at ``/etc/bind/db.<zone>`` in the node and are re-read when their mtime
or size changes, so a trainee can fix (or break) a zone by editing it; a file that does
not load leaves the old data serving and a BIND-style line in ``/var/log/named.log``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dnslib import DNSLabel

from lab.errors import LabError
from lab.protocols.masterfile import collect_includes, included_paths, safe_include
from lab.protocols.node import NodeContext
from lab.protocols.zonedata import ZoneData, load_zone
from lab.protocols.zonefile import ZoneError, zone_file_name

NAMED_LOG = "/var/log/named.log"
ZONE_DIR = "/etc/bind"

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def bind_time(now: datetime | None = None) -> str:
    """BIND's log timestamp: ``25-Nov-2024 16:50:01.123``."""
    now = now or datetime.now()
    return (f"{now.day:02d}-{_MONTHS[now.month - 1]}-{now.year} "
            f"{now:%H:%M:%S}.{now.microsecond // 1000:03d}")


def file_stamp(path: Path) -> tuple[int, int] | None:
    """What tells a changed file: (mtime in ns, size), or None if it cannot be read."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


@dataclass
class ZoneSlot:
    """One zone: its file (in the node and on the host), the data serving, the stamps of
    its file and of the files it includes."""

    name: str
    node_path: str
    path: Path
    data: ZoneData
    stamp: tuple | None

    _includes: tuple[tuple[int, int] | None, list[str]] = (None, [])

    def current_stamp(self) -> tuple:
        """The stamps of the master file and of every file it includes now (the list of
        includes is read again only when the master file changed: this runs per query)."""
        main = file_stamp(self.path)
        if main is None or self._includes[0] != main:
            try:
                found = [p for p in included_paths(self.path.read_text()) if safe_include(p)]
            except (OSError, UnicodeDecodeError):
                found = []
            self._includes = (main, found)
        return (main, *(file_stamp(self.path.parent / p) for p in self._includes[1]))

    @property
    def log_name(self) -> str:
        return f"{str(self.data.origin).rstrip('.') or '.'}/IN"


class ZoneSet:
    """A node's authoritative zones by name (``slots``), loaded and reloaded from files."""

    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.slots: dict[str, ZoneSlot] = {}
        self.on_change: list[Callable[[ZoneSlot], None]] = []  # after a zone file reloads

    def log(self, message: str) -> None:
        path = self.node.path(NAMED_LOG)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as f:
                f.write(f"{bind_time(self.node.clock.now())} {message}\n")
        except OSError:
            pass  # a log we cannot write must not take DNS down

    def install(self, name: str, text: str, includes: dict[str, str] | None = None) -> None:
        """Write the zone file (and the files it includes, beside it) the first time; a
        restart loads the files as they are now (with a trainee's edits or a fault's
        changes), like a real name server."""
        node_path = f"{ZONE_DIR}/{zone_file_name(name)}"
        path = self.node.path(node_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for rel, body in (includes or {}).items():
            target = path.parent / rel
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(body)
        if path.exists():
            text = path.read_text()
        else:
            path.write_text(text)
        try:
            data = self._load(name, path, text)
        except ZoneError as e:
            raise LabError(f"dns on {self.node.name}: zone {name}: {e}") from None
        slot = ZoneSlot(name, node_path, path, data, None)
        slot.stamp = slot.current_stamp()
        self.slots[name] = slot
        self.log(f"zone {slot.log_name}: loaded serial {data.serial}")

    def reload(self) -> None:
        """Re-read every zone file whose mtime or size changed; keep old data if it is bad."""
        for slot in self.slots.values():
            stamp = slot.current_stamp()
            if stamp == slot.stamp:
                continue
            slot.stamp = stamp
            try:
                text = slot.path.read_text()
                data = self._load(slot.name, slot.path, text, slot.path.name)
            except OSError as e:
                reason = f"{e.strerror or e}"
            except UnicodeDecodeError:
                reason = "file is not text"
            except ZoneError as e:
                reason = str(e)
            else:
                slot.data = data
                self.log(f"zone {slot.log_name}: loaded serial {data.serial}")
                for changed in self.on_change:
                    changed(slot)
                continue
            self.log(f"zone {slot.log_name}: loading from master file {slot.node_path} "
                     f"failed: {reason}")

    @staticmethod
    def _load(name: str, path: Path, text: str, filename: str = "") -> ZoneData:
        """The zone from its master file, with the files it includes read beside it."""
        includes = collect_includes(text, lambda rel: (path.parent / rel).read_text(),
                                    filename)
        return load_zone(name, text, filename=filename, includes=includes)

    def zone_for(self, qname: DNSLabel, parent_side: bool = False) -> ZoneData | None:
        """The deepest zone that contains ``qname``, or None. With ``parent_side`` (a DS
        query, RFC 4035 3.1.4.1) a zone whose apex is ``qname`` does not count, unless
        ``qname`` is the root."""
        best: ZoneData | None = None
        skip_apex = parent_side and bool(qname.label)
        for slot in self.slots.values():
            data = slot.data
            if skip_apex and data.origin == qname:
                continue
            if data.contains(qname) and (best is None
                                         or len(data.origin.label) > len(best.origin.label)):
                best = data
        return best

    def apex(self, qname: DNSLabel) -> ZoneData | None:
        """The zone whose apex is ``qname``, or None."""
        return next((s.data for s in self.slots.values() if s.data.origin == qname), None)
