"""A node's DNS role, as written under ``services: dns:`` in a topology file.

Records are validated one by one (so an error points at the list entry and quotes the
record), then each zone as a whole (SOA and NS at the apex, names inside the zone).
"""
from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from lab.protocols.masterfile import load_records
from lab.protocols.zonedata import ZoneData
from lab.protocols.zonefile import ZoneError, parse_record, render_zone, zone_origin

# relative names in a record are checked against a placeholder origin here; the zone
# itself is checked against its real origin in DnsConfig
_PLACEHOLDER_ORIGIN = "zone.invalid."


def _check_record(text: str) -> str:
    try:
        parse_record(text, _PLACEHOLDER_ORIGIN, 0)
    except ZoneError as e:
        raise ValueError(str(e)) from None
    return text


Record = Annotated[str, AfterValidator(_check_record)]


def _check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ValueError("empty domain name")
    if name != ".":
        parts = name.rstrip(".").split(".")
        if any(not p for p in parts):
            raise ValueError(f"bad domain name {name!r} (empty label)")
        if any(len(p) > 63 for p in parts) or len(name.rstrip(".")) > 253:
            raise ValueError(f"bad domain name {name!r} (too long)")
        if any(ch.isspace() or ch in ';()"' for ch in name):
            raise ValueError(f"bad domain name {name!r}")
    return name


DomainName = Annotated[str, AfterValidator(_check_name)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _as_networks(value: object) -> object:
    """A list of networks from strings: "10.1.0.0/24", or "10.1.0.5" for 10.1.0.5/32.
    A bad entry is named in a plain message (not pydantic's union of two types)."""
    if not isinstance(value, list):
        return value
    out = []
    for item in value:
        try:
            out.append(ip_network(item) if isinstance(item, str) else item)
        except ValueError:
            raise ValueError(f"{item!r} is not a network (like 10.9.0.0/16) or an "
                             "address") from None
    return out


def _client_in(client: str, networks: list[IPv4Network | IPv6Network]) -> bool:
    try:
        addr = ip_address(client.split("%", 1)[0])
    except ValueError:
        return False
    if getattr(addr, "ipv4_mapped", None):
        addr = addr.ipv4_mapped
    return any(addr.version == net.version and addr in net for net in networks)


Networks = Annotated[list[IPv4Network | IPv6Network], BeforeValidator(_as_networks)]


class Zone(_Strict):
    """One zone: the default TTL and its data, either ``records`` in master-file syntax
    (relative to the zone) or a BIND master file, ``zone_file``, next to the topology file.

    ``zone_file`` is read when the topology is loaded: ``master`` is its text and
    ``includes`` the files it ``$INCLUDE``s (path as written -> text); both may also be
    given inline instead of ``zone_file``. In a node the master file is
    ``/etc/bind/db.<zone>`` and the included files sit beside it, as written.

    ``allow_transfer``: networks whose clients may transfer the zone (AXFR/IXFR over
    TCP); empty (the default), nobody may, and a transfer is REFUSED.
    """

    ttl: int = Field(default=300, ge=0, le=2**31 - 1)
    records: list[Record] = []
    zone_file: str | None = Field(default=None, min_length=1, max_length=255)
    master: str | None = None
    includes: dict[str, str] = {}
    allow_transfer: Networks = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_source(self) -> Zone:
        if self.records and (self.master is not None or self.zone_file is not None):
            raise ValueError("a zone has either records or a zone_file, not both")
        if not self.records and self.master is None:
            raise ValueError("a zone needs records (at least one) or a zone_file")
        return self

    def transfer_allowed(self, client: str) -> bool:
        """May this client address transfer the zone?"""
        return _client_in(client, self.allow_transfer)

    def load(self, name: str) -> list:
        """The zone's records, checked (a ZoneError names the record, and the file and
        line of a master file)."""
        if self.master is not None:
            return load_records(name, self.master, self.includes, self.ttl,
                                self.zone_file or "master")
        origin = zone_origin(name)
        return [parse_record(text, origin, self.ttl) for text in self.records]

    def text(self, name: str) -> str:
        """The master file a name server in a node starts from."""
        if self.master is not None:
            return self.master
        return render_zone(name, self.ttl, self.records)


class RootHint(_Strict):
    """Where iteration starts: a root server's name and address."""

    name: DomainName
    address: IPv4Address | IPv6Address


class DnsConfig(_Strict):
    """A node's DNS role.

    ``recursion_from``: networks whose clients may ask for recursion. Left out: any
    client may; an empty list: nobody may. ``forwarders`` (BIND's ``forwarders``): the
    servers a recursing node sends its clients' questions to, with recursion desired,
    instead of iterating from the root itself; ``forward: only`` never iterates (no
    forwarder answering means SERVFAIL), ``first`` (BIND's default) iterates from
    ``root_hints`` when no forwarder answers.
    """

    mode: Literal["authoritative", "recursive", "split"] = "authoritative"
    zones: dict[DomainName, Zone] = Field(default_factory=dict)
    root_hints: list[RootHint] = Field(default_factory=list)
    recursion_from: Networks | None = None
    forwarders: list[IPv4Address] = Field(default_factory=list, max_length=8)
    forward: Literal["only", "first"] = "first"

    @model_validator(mode="after")
    def _consistent(self) -> DnsConfig:
        if self.mode == "authoritative" and not self.zones:
            raise ValueError("mode authoritative needs at least one zone")
        if self.mode == "authoritative" and self.forwarders:
            raise ValueError("forwarders are only meaningful for mode recursive or split")
        iterates = not (self.forwarders and self.forward == "only")
        if self.mode in ("recursive", "split") and iterates and not self.root_hints:
            raise ValueError(f"mode {self.mode} needs root_hints (where iteration starts), "
                             "unless it forwards only (forwarders, forward: only)")
        if self.mode == "recursive" and self.zones:
            raise ValueError("mode recursive serves no zones; use mode split to serve "
                             "zones and recurse for everything else")
        if self.mode == "authoritative" and self.recursion_from is not None:
            raise ValueError("recursion_from is only meaningful for mode recursive or split")
        seen: dict[str, str] = {}
        for name, zone in self.zones.items():
            key = str(zone_origin(name)).lower()
            if key in seen:
                raise ValueError(f"zone {name!r} is listed twice (also as {seen[key]!r})")
            seen[key] = name
            try:
                ZoneData(name, zone.load(name))
            except ZoneError as e:
                raise ValueError(f"zones.{name}: {e}") from None
        return self

    def recursion_allowed(self, client: str) -> bool:
        """May this client address ask this server for recursion?"""
        if self.mode == "authoritative":
            return False
        if self.recursion_from is None:
            return True
        return _client_in(client, self.recursion_from)
