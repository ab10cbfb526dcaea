"""A resolver that forwards, as BIND does with ``forwarders { ...; };``.

Questions it cannot answer from its cache go, recursion desired, to each forwarder in
turn; what comes back is cached like anything learnt. With ``forward only`` a question no
forwarder answers is SERVFAIL; with ``forward first`` (BIND's default) the resolver then
iterates from its root hints itself.
"""
from __future__ import annotations

from collections.abc import Sequence

from dnslib import QTYPE, DNSLabel, DNSRecord

from lab.protocols.dnscache import NOERROR, NXDOMAIN, Step
from lab.protocols.resolver import Resolver, answered


class Forwarder(Resolver):
    """A :class:`Resolver` whose iteration starts by asking its forwarders."""

    def __init__(self, forwarders: Sequence[str], root_hints: Sequence[tuple[str, str]],
                 *args, only: bool = True, **kwargs) -> None:
        super().__init__(root_hints, *args, **kwargs)
        self.forwarders = [str(a) for a in forwarders]
        self.only = only

    async def _iterate(self, qname: DNSLabel, qtype: int, depth: int, busy: frozenset) -> Step:
        step = await self._forward(qname, qtype)
        if step.kind != "fail" or self.only or not self.root_hints:
            return step
        return await super()._iterate(qname, qtype, depth, busy)

    async def _forward(self, qname: DNSLabel, qtype: int) -> Step:
        for address in self.forwarders:
            response = await self.query(address, qname, qtype, recurse=True)
            if response is None:
                continue
            step = self._classify_forwarded(response, qname, qtype)
            if step.kind != "lame":
                return step
        return Step("fail")

    def _classify_forwarded(self, response: DNSRecord, qname: DNSLabel, qtype: int) -> Step:
        """A forwarder's (non-authoritative) answer, cached and turned into a step; a
        forwarder that fails (SERVFAIL, REFUSED) counts as not answering."""
        rcode = response.header.rcode
        if rcode not in (NOERROR, NXDOMAIN):
            return Step("lame")
        answers = [rr for rr in response.rr if rr.rtype != QTYPE.OPT]
        soa = next((rr for rr in response.auth if rr.rtype == QTYPE.SOA), None)
        self.cache.put(answers)
        found = answered(answers, qname, qtype)
        return found if found is not None else self.negative(qname, qtype, soa, rcode)
