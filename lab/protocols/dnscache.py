"""The resolver's cache of record sets and negative answers, with TTLs that count down.

Kept apart from the resolver so the DNS service, the resolver and the faults that age
or poison a cache share one small, root-free, unit-testable piece.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dnslib import QTYPE, RR, DNSLabel

from lab.protocols.zonefile import parse_records

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5


@dataclass
class Step:
    """One resolution step: an answer, a CNAME to follow, a negative answer, a referral."""

    kind: str  # "answer" | "cname" | "negative" | "referral" | "lame" | "fail"
    records: list[RR] = field(default_factory=list)
    rcode: int = NOERROR
    soa: RR | None = None
    zone: DNSLabel | None = None
    servers: list[tuple[DNSLabel, list[str]]] = field(default_factory=list)


@dataclass
class _Entry:
    records: list[RR]  # for a negative entry: the SOA (or nothing)
    expires: float
    rcode: int = NOERROR  # negative entries: NXDOMAIN or NOERROR (NODATA)
    glue: bool = False  # learnt from a referral: used to reach servers, never as an answer


def _with_ttl(rr: RR, ttl: int) -> RR:
    return RR(rr.rname, rr.rtype, rr.rclass, ttl, rr.rdata)


class DnsCache:
    """The resolver's cache.

    Positive entries are record sets keyed by (name, type) and live for the set's TTL;
    negative entries live for min(SOA TTL, SOA minimum) (RFC 2308): NODATA is keyed by
    (name, type), NXDOMAIN by (name, None) and covers every type. Answers from the cache
    carry the remaining TTL, so a record that changed upstream keeps being served until
    its TTL runs out.

    ``seed(name, rtype, rdata, ttl)`` plants a record set as if it had been learnt from
    upstream (replacing what the cache held for that name and type, and any negative
    entry for it); ``flush()`` forgets everything. ``clock`` (seconds, monotonic) is an
    attribute so tests can move time.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_entries: int = 10000):
        self.clock = clock
        self.max_entries = max_entries
        self._positive: dict[tuple[DNSLabel, int], _Entry] = {}
        self._negative: dict[tuple[DNSLabel, int | None], _Entry] = {}

    def __len__(self) -> int:
        return len(self._positive) + len(self._negative)

    def flush(self) -> None:
        """Forget every positive and negative entry."""
        self._positive.clear()
        self._negative.clear()

    def seed(self, name: str, rtype: str, rdata: str | Sequence[str], ttl: int) -> None:
        """Plant a record set: ``seed("mail.example.net", "A", "198.51.100.7", ttl=86400)``.

        ``rdata`` is master-file data (one string per record); names in it should be
        absolute. Raises ``ZoneError`` if a record does not parse.
        """
        datas = [rdata] if isinstance(rdata, str) else list(rdata)
        owner = name if name.endswith(".") else name + "."
        text = "\n".join(f"{owner} {int(ttl)} IN {rtype} {d}" for d in datas)
        records = parse_records(text, ".", int(ttl))
        key = (records[0].rname, records[0].rtype)
        self._positive.pop(key, None)
        self._negative.pop(key, None)
        self._negative.pop((key[0], None), None)
        self._store(records, force=True)

    def expire(self, under: str, within: float) -> int:
        """Forget entries at or below ``under`` that would expire within ``within`` seconds
        anyway (as if that much time had passed); returns how many went."""
        suffix = DNSLabel(under)
        now = self.clock()
        gone = 0
        for table in (self._positive, self._negative):
            for key, entry in list(table.items()):
                if (not suffix.label or key[0].matchSuffix(suffix)) \
                        and entry.expires - now <= within:
                    del table[key]
                    gone += 1
        return gone

    def forget(self, name: str, rtype: int) -> None:
        """Forget one cached record set."""
        self._positive.pop((DNSLabel(name), rtype), None)

    def put(self, records: Sequence[RR], glue: bool = False) -> None:
        """Cache record sets (grouped by owner and type; each set lives for its lowest TTL).

        ``glue`` records (addresses from a referral) help reach name servers but are not
        served as answers (RFC 2181 5.4.1), and never replace authoritative data."""
        self._store(records, glue=glue)

    def _store(self, records: Sequence[RR], force: bool = False, glue: bool = False) -> None:
        groups: dict[tuple[DNSLabel, int], list[RR]] = {}
        for rr in records:
            if rr.rtype == QTYPE.OPT:
                continue
            groups.setdefault((rr.rname, rr.rtype), []).append(rr)
        now = self.clock()
        for key, rrs in groups.items():
            ttl = min(rr.ttl for rr in rrs)
            if ttl <= 0 and not force:
                continue
            old = self._positive.get(key)
            if glue and old is not None and not old.glue and old.expires > now:
                continue
            self._positive[key] = _Entry(rrs, now + ttl, glue=glue)
            self._negative.pop((key[0], None), None)
            self._negative.pop(key, None)
        self._trim()

    def put_negative(self, name: DNSLabel, qtype: int | None, soa: RR | None, rcode: int) -> None:
        """Cache NXDOMAIN (``qtype=None``) or NODATA for (name, qtype) for the SOA minimum."""
        if soa is None or soa.rtype != QTYPE.SOA:
            return
        ttl = min(soa.ttl, soa.rdata.times[4])
        if ttl <= 0:
            return
        self._negative[(name, qtype)] = _Entry([soa], self.clock() + ttl, rcode)
        self._trim()

    def get(self, name: DNSLabel | str, qtype: int, answers_only: bool = False
            ) -> list[RR] | None:
        """The cached record set with remaining TTLs, or None (with ``answers_only``, glue
        does not count)."""
        key = (DNSLabel(name), qtype)
        entry = self._positive.get(key)
        if entry is None or (answers_only and entry.glue):
            return None
        remaining = entry.expires - self.clock()
        if remaining <= 0:
            del self._positive[key]
            return None
        return [_with_ttl(rr, min(rr.ttl, math.ceil(remaining))) for rr in entry.records]

    def _get_negative(self, key: tuple[DNSLabel, int | None]) -> _Entry | None:
        entry = self._negative.get(key)
        if entry is not None and entry.expires <= self.clock():
            del self._negative[key]
            return None
        return entry

    def lookup(self, name: DNSLabel, qtype: int) -> Step | None:
        """What the cache knows about (name, qtype), as a resolution step, or None."""
        nx = self._get_negative((name, None))
        if nx is not None:
            return Step("negative", rcode=NXDOMAIN, soa=self._neg_soa(nx))
        if qtype == QTYPE.ANY:
            return None
        rrs = self.get(name, qtype, answers_only=True)
        if rrs:
            return Step("answer", rrs)
        if qtype != QTYPE.CNAME:
            cname = self.get(name, QTYPE.CNAME, answers_only=True)
            if cname:
                return Step("cname", cname[:1])
        nodata = self._get_negative((name, qtype))
        if nodata is not None:
            return Step("negative", rcode=NOERROR, soa=self._neg_soa(nodata))
        return None

    def _neg_soa(self, entry: _Entry) -> RR | None:
        if not entry.records:
            return None
        return _with_ttl(entry.records[0], max(0, int(entry.expires - self.clock())))

    def dump(self) -> list[str]:
        """Every live positive record in master-file form with its remaining TTL."""
        out = []
        for name, qtype in list(self._positive):
            for rr in self.get(name, qtype) or []:
                out.append(rr.toZone())
        return out

    def _trim(self) -> None:
        if len(self) <= self.max_entries:
            return
        now = self.clock()
        for table in (self._positive, self._negative):
            for key in [k for k, e in table.items() if e.expires <= now]:
                del table[key]
        if len(self) > self.max_entries:
            self.flush()
