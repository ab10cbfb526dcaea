"""A loaded zone and its authoritative lookups, as BIND answers from a plain unsigned zone.

Answers, CNAME chains, referrals with glue, NODATA and NXDOMAIN with the SOA, wildcards
as RFC 4592 defines them (a ``*`` label answers for names that do not exist below its
parent, the closest encloser; an empty non-terminal is a name that exists and stops the
wildcard), and DS answered from the parent side of a zone cut (RFC 4035 3.1.4.1).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from dnslib import QTYPE, RR, DNSLabel

from lab.protocols.masterfile import load_records
from lab.protocols.zonefile import ZoneError, zone_origin

NXDOMAIN = 3
_WILD = b"*"


@dataclass
class Lookup:
    """An authoritative lookup result, ready to copy into a reply."""

    rcode: int = 0  # RCODE.NOERROR
    aa: bool = True
    answer: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)
    referral: bool = False
    # set when a CNAME chain leaves the zone: the name a resolver should continue with
    continue_with: DNSLabel | None = None


def _renamed(records: list[RR], name: DNSLabel) -> list[RR]:
    return [RR(name, rr.rtype, rr.rclass, rr.ttl, rr.rdata) for rr in records]


class ZoneData:
    """One zone's records, in file order (``records``) and by owner and type (``nodes``)."""

    def __init__(self, name: str, records: list[RR]) -> None:
        self.name = name
        self.origin = zone_origin(name)
        self.records = list(records)
        self.nodes: dict[DNSLabel, dict[int, list[RR]]] = {}
        for rr in records:
            self.nodes.setdefault(rr.rname, {}).setdefault(rr.rtype, []).append(rr)
        self._validate(records)
        self.soa: RR = self.nodes[self.origin][QTYPE.SOA][0]
        # every name that exists, including empty non-terminals
        self.existing: set[DNSLabel] = set()
        for owner in self.nodes:
            labels = owner.label
            for i in range(len(labels) - len(self.origin.label) + 1):
                self.existing.add(DNSLabel(labels[i:]))
        self.cuts = {n for n, types in self.nodes.items()
                     if n != self.origin and QTYPE.NS in types}

    @property
    def serial(self) -> int:
        return self.soa.rdata.times[0]

    def _validate(self, records: list[RR]) -> None:
        where = f"zone {self.origin}"
        for rr in records:
            if not self.contains(rr.rname):
                shown = " ".join(rr.toZone().split())
                raise ZoneError(f"{where}: record '{shown}' is outside the zone")
        apex = self.nodes.get(self.origin, {})
        soas = apex.get(QTYPE.SOA, [])
        if len(soas) != 1:
            raise ZoneError(f"{where}: has {len(soas)} SOA records at the apex (needs exactly 1)")
        for owner, types in self.nodes.items():
            if owner != self.origin and QTYPE.SOA in types:
                raise ZoneError(f"{where}: SOA record for {owner} is not at the zone apex")
        if QTYPE.NS not in apex:
            raise ZoneError(f"{where}: has no NS records at the apex")
        for owner, types in self.nodes.items():
            if QTYPE.CNAME in types and (len(types) > 1 or len(types[QTYPE.CNAME]) > 1):
                raise ZoneError(f"{where}: {owner} has a CNAME and other data")

    def contains(self, name: DNSLabel) -> bool:
        return name.matchSuffix(self.origin) if self.origin.label else True

    def rrset(self, name: DNSLabel, rtype: int) -> list[RR]:
        return list(self.nodes.get(name, {}).get(rtype, []))

    def _negative_soa(self) -> RR:
        soa = self.soa
        ttl = min(soa.ttl, soa.rdata.times[4])
        return RR(soa.rname, QTYPE.SOA, soa.rclass, ttl, soa.rdata)

    def _addresses(self, names: list[DNSLabel]) -> list[RR]:
        out: list[RR] = []
        for name in names:
            if self.contains(name):
                types, _ = self._node(name)
                if types:
                    out += types.get(QTYPE.A, []) + types.get(QTYPE.AAAA, [])
        return out

    def _cut_for(self, qname: DNSLabel, qtype: int) -> DNSLabel | None:
        """The highest delegation point at or above qname, if any; for DS the cut at qname
        itself does not count (its DS lives on this, the parent, side)."""
        labels = qname.label
        for i in range(len(labels) - len(self.origin.label) - 1, -1, -1):
            candidate = DNSLabel(labels[i:])
            if candidate in self.cuts and not (i == 0 and qtype == QTYPE.DS):
                return candidate
        return None

    def _node(self, name: DNSLabel) -> tuple[dict[int, list[RR]] | None, bool]:
        """(the records at ``name``, synthesised from a wildcard if it matches; whether the
        name exists at all). An empty non-terminal exists and has no records."""
        types = self.nodes.get(name)
        if types is not None:
            return types, True
        if name in self.existing:
            return None, True
        source = self._wildcard_for(name)
        if source is None:
            return None, False
        wild = self.nodes.get(source)
        if wild is None:  # the wildcard is itself an empty non-terminal
            return None, True
        return {rtype: _renamed(rrs, name) for rtype, rrs in wild.items()}, True

    def _wildcard_for(self, name: DNSLabel) -> DNSLabel | None:
        """``*.<closest encloser>`` if that exists (RFC 4592 3.3.1), for a name that does not."""
        labels = name.label
        for i in range(1, len(labels) - len(self.origin.label) + 1):
            encloser = DNSLabel(labels[i:])
            if encloser in self.existing:
                source = DNSLabel((_WILD, *encloser.label))
                return source if source in self.existing else None
        return None

    def _referral(self, cut: DNSLabel) -> Lookup:
        ns = self.rrset(cut, QTYPE.NS)
        return Lookup(aa=False, referral=True, authority=ns,
                      additional=self._addresses([r.rdata.label for r in ns]))

    def lookup(self, qname: DNSLabel, qtype: int) -> Lookup:
        result = Lookup()
        seen: set[DNSLabel] = set()
        name = qname
        while True:
            cut = self._cut_for(name, qtype)
            if cut is not None:
                if result.answer:  # CNAME into a delegated child: let a resolver finish it
                    result.continue_with = name
                    return result
                return self._referral(cut)
            types, exists = self._node(name)
            if types is None:
                result.rcode = 0 if exists else NXDOMAIN  # empty non-terminal: NODATA
                result.authority = [self._negative_soa()]
                return result
            if qtype == QTYPE.ANY:
                found = [rr for rrs in types.values() for rr in rrs]
            else:
                found = list(types.get(qtype, []))
            if found:
                result.answer += found
                targets = [r.rdata.label for r in found if r.rtype in (QTYPE.MX, QTYPE.NS)]
                targets += [r.rdata.target for r in found if r.rtype == QTYPE.SRV]
                result.additional = self._addresses(targets)
                return result
            cname = types.get(QTYPE.CNAME)
            if not cname:
                result.authority = [self._negative_soa()]  # NODATA
                return result
            result.answer += cname
            target = cname[0].rdata.label
            if target in seen or len(seen) > 8:
                return result
            seen.add(name)
            if not self.contains(target):
                result.continue_with = target
                return result
            name = target


def load_zone(name: str, text: str, default_ttl: int = 0, filename: str = "",
              includes: dict[str, str] | None = None) -> ZoneData:
    """Parse a whole master file for zone ``name`` (and the files it ``$INCLUDE``s, path
    as written -> text); ZoneError with the reason if it is bad.

    With ``filename``, a record error reads like BIND's: ``db.example.net:7: record ...``.
    """
    records = load_records(name, text, includes, default_ttl, filename)
    if not records:
        raise ZoneError(f"zone {zone_origin(name)}: no records")
    return ZoneData(name, records)
