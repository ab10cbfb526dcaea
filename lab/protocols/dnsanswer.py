"""How a DNS server answers one request, in BIND 9.18's order.

The checks BIND makes before a lookup (EDNS version, class, opcode, one question, meta
types), then a zone transfer, an authoritative answer from the deepest zone served
(DS from the parent side), or recursion through the resolver for clients that may
recurse; a non-recursive request the cache cannot answer gets a referral to the deepest
zone cut the cache knows.
"""
from __future__ import annotations

import asyncio

from dnslib import QTYPE, RR, A, DNSLabel, DNSQuestion, DNSRecord

from lab.model.dns import DnsConfig
from lab.protocols.dnscache import FORMERR, NOTIMP, REFUSED, SERVFAIL
from lab.protocols.dnswire import (
    BADVERS,
    Drop,
    FormErr,
    Query,
    error_reply,
    opt_record,
    parse_query,
    render,
    reply_header,
)
from lab.protocols.dnsxfr import transfer
from lab.protocols.dnszones import ZoneSet
from lab.protocols.resolver import HINT_TTL, Resolver
from lab.protocols.zonedata import Lookup
from lab.protocols.zonefile import zone_origin


class Answerer:
    """Answers requests for one DNS server: its config, its zones, its resolver (if any)."""

    def __init__(self, config: DnsConfig, zone_set: ZoneSet, resolver: Resolver | None) -> None:
        self.config = config
        self.zone_set = zone_set
        self.resolver = resolver

    async def respond(self, data: bytes, client: str, tcp: bool = False) -> list[bytes]:
        """Every wire reply to one request (several for a zone transfer; none to drop it)."""
        try:
            query = parse_query(data)
        except Drop:
            return []
        except FormErr as e:
            return [e.reply()]
        try:
            return await self._respond(query, client, tcp)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one bad query must not take the server down
            return [error_reply(query.ident, query.flags, query.questions[:1], SERVFAIL,
                                query.edns)]

    async def _respond(self, query: Query, client: str, tcp: bool) -> list[bytes]:
        edns = query.edns
        if edns is not None and edns.version > 0:  # RFC 6891 6.1.3, before anything else
            return [error_reply(query.ident, query.flags, query.questions, BADVERS, edns)]
        rcode = _class_error(query)
        if rcode is not None:
            return [error_reply(query.ident, query.flags, query.questions, rcode, edns)]
        can_recurse = self.resolver is not None and self.config.recursion_allowed(client)
        rcode = _request_error(query)
        if rcode is not None:
            return [error_reply(query.ident, query.flags, query.questions, rcode, edns,
                                ra=can_recurse and query.opcode == 0)]
        question = query.questions[0]
        if question.qtype in (QTYPE.AXFR, QTYPE.IXFR):
            return self._transfer(query, client, tcp, can_recurse)
        reply = DNSRecord(reply_header(query.ident, query.flags), questions=query.questions)
        reply.header.ra = int(can_recurse)
        await self._fill(reply, question, client, query.rd, can_recurse)
        opt = opt_record(edns, reply.header.rcode) if edns is not None else None
        return [render(reply, 65535 if tcp else query.udp_limit(), opt)]

    def _transfer(self, query: Query, client: str, tcp: bool, ra: bool) -> list[bytes]:
        self.zone_set.reload()
        qname = query.questions[0].qname
        zone = self.zone_set.apex(qname)
        config = next((z for n, z in self.config.zones.items() if zone_origin(n) == qname), None)
        allowed = config is not None and config.transfer_allowed(client)
        result = transfer(query, zone, allowed, tcp, ra, client)
        self.zone_set.log(result.log)
        return result.messages

    async def _fill(self, reply: DNSRecord, question: DNSQuestion, client: str, rd: bool,
                    can_recurse: bool) -> None:
        qname, qtype = question.qname, question.qtype
        self.zone_set.reload()
        zone = self.zone_set.zone_for(qname, parent_side=qtype == QTYPE.DS)
        if zone is None and qtype == QTYPE.DS and not (can_recurse and rd):
            zone = self.zone_set.apex(qname)  # the child only: its NODATA (RFC 4035 3.1.4.1)
        if zone is not None:
            result = zone.lookup(qname, qtype)
            if result.referral and qtype == QTYPE.DS and not (can_recurse and rd):
                child = self.zone_set.apex(qname)
                result = child.lookup(qname, qtype) if child is not None else result
            if can_recurse and rd and (result.referral or result.continue_with is not None):
                # a delegated child or a CNAME leaving our zones: finish it by recursion
                target = qname if result.referral else result.continue_with
                resolved = await self.resolver.resolve(target, qtype)  # type: ignore[union-attr]
                prefix = [] if result.referral else result.answer
                self._put(reply, Lookup(rcode=resolved.rcode, aa=False,
                                        answer=prefix + resolved.answer,
                                        authority=resolved.authority))
                return
            self._put(reply, result)
            return
        if not can_recurse:
            reply.header.rcode = REFUSED
            return
        assert self.resolver is not None
        if rd:
            resolved = await self.resolver.resolve(qname, qtype)
        else:  # no recursion wanted: what the cache knows, else a referral from the cache
            resolved = self.resolver.cached(qname, qtype)
            if resolved is None:
                self._put(reply, self._cached_referral(qname, qtype))
                return
        self._put(reply, Lookup(rcode=resolved.rcode, aa=False, answer=resolved.answer,
                                authority=resolved.authority,
                                additional=self._known_addresses(resolved.answer)))

    def _known_addresses(self, answer: list[RR]) -> list[RR]:
        """Addresses for the NS/MX targets of a recursive answer: from the cache or hints."""
        assert self.resolver is not None
        out: list[RR] = []
        targets = {rr.rdata.label: None for rr in answer if rr.rtype in (QTYPE.NS, QTYPE.MX)}
        for name in targets:
            found = (self.resolver.cache.get(name, QTYPE.A) or []) + (self.resolver.cache.get(name, QTYPE.AAAA) or [])
            if not found:
                found = [RR(name, QTYPE.A, ttl=HINT_TTL, rdata=A(address))
                         for hint, address in self.resolver.root_hints
                         if hint == name and ":" not in address]
            out += found
        return out

    def _cached_referral(self, qname: DNSLabel, qtype: int) -> Lookup:
        """A referral to the deepest zone cut the cache knows (the root hints if none)."""
        assert self.resolver is not None
        _, ns, addresses = self.resolver.cut(qname, qtype)
        return Lookup(aa=False, referral=True, authority=ns, additional=addresses)

    @staticmethod
    def _put(reply: DNSRecord, result: Lookup) -> None:
        reply.header.rcode = result.rcode
        reply.header.aa = int(result.aa)
        for rr in result.answer:
            reply.add_answer(rr)
        for rr in result.authority:
            reply.add_auth(rr)
        for rr in result.additional:
            reply.add_ar(rr)


IN, CH, HS, NONE, ANY = 1, 3, 4, 254, 255  # classes
MAILB, MAILA, TKEY, TSIG = 253, 254, 249, 250  # meta types


def _class_error(query: Query) -> int | None:
    """BIND's check of the request's class, before it picks a view: None if fine."""
    qclass = query.questions[0].qclass if query.questions else 0
    if qclass in (0, NONE, ANY):
        return NOTIMP if query.opcode != 0 and qclass == 0 else FORMERR
    if qclass in (CH, HS):
        return REFUSED  # no view serves these classes
    return NOTIMP if qclass != IN else None


def _request_error(query: Query) -> int | None:
    """BIND's checks before a lookup: the opcode, one question, no meta type as QTYPE."""
    if query.opcode != 0:
        return NOTIMP
    if len(query.questions) != 1:
        return FORMERR
    qtype = query.questions[0].qtype
    if qtype in (MAILA, MAILB):
        return NOTIMP
    if qtype in (QTYPE.OPT, TSIG, TKEY):
        return FORMERR
    return None
