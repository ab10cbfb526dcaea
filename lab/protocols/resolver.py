"""The DNS service's iterative resolver: root hints, referrals, glue, lame servers.

It asks upstream servers over sockets made in the node's namespace and keeps what it
learns in a :class:`~lab.protocols.dnscache.DnsCache` shared with the service.
"""
from __future__ import annotations

import asyncio
import errno
import random
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dnslib import (
    AAAA,
    EDNS0,
    NS,
    QTYPE,
    RCODE,
    RR,
    A,
    DNSHeader,
    DNSLabel,
    DNSQuestion,
    DNSRecord,
)

from lab.protocols.dnscache import NOERROR, NXDOMAIN, SERVFAIL, DnsCache, Step
from lab.protocols.dnswire import EDNS_SIZE
from lab.protocols.node import SocketFactory

ROOT = DNSLabel(".")

SERVER_TIMEOUT = 0.8  # one upstream server
RESOLVE_TIMEOUT = 3.0  # one whole resolution
HINT_TTL = 518400  # what root hints files give the root servers (6 days)


@dataclass
class Resolution:
    rcode: int
    answer: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)


def _in_bailiwick(name: DNSLabel, zone: DNSLabel) -> bool:
    return True if not zone.label else name.matchSuffix(zone)


def _name(name: DNSLabel) -> str:
    """A name as BIND logs it: no final dot, the root as ``.``."""
    return str(name).rstrip(".") or "."


def _question(qname: DNSLabel, qtype: int) -> str:
    return f"{_name(qname)}/{QTYPE.get(qtype)}/IN"


_FAILURES = {errno.ENETUNREACH: "network unreachable", errno.EHOSTUNREACH: "host unreachable",
             errno.ECONNREFUSED: "connection refused"}


def _failure(e: BaseException) -> str:
    """What BIND logs for a query that got no answer."""
    if isinstance(e, TimeoutError):
        return "timed out"
    return _FAILURES.get(getattr(e, "errno", None), "unexpected error")
def answered(answers: list[RR], qname: DNSLabel, qtype: int) -> Step | None:
    """The step an answer section gives for ``qname``: its records of ``qtype``, else its
    CNAME to follow; None when it has neither."""
    direct = [rr for rr in answers
              if rr.rname == qname and (rr.rtype == qtype or qtype == QTYPE.ANY)]
    if direct:
        return Step("answer", direct)
    cname = [rr for rr in answers if rr.rname == qname and rr.rtype == QTYPE.CNAME]
    return Step("cname", cname[:1]) if cname else None


def address_family(address: str) -> int:
    """The socket family for an address literal."""
    return socket.AF_INET6 if ":" in address else socket.AF_INET


async def _recv_exact(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await loop.sock_recv(sock, n - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


class Resolver:
    """An iterative resolver: root hints -> referrals (glue, or glueless NS resolved) -> answer.

    Every upstream query goes out on a socket from ``socket_factory`` (the node's
    namespace) to ``port``. A server that does not answer within ``server_timeout`` or
    answers lamely (REFUSED/SERVFAIL, or a non-authoritative non-referral) is skipped;
    when every server of a zone fails the answer is SERVFAIL. A whole resolution is
    bounded by ``total_timeout``, referral count and glueless-lookup depth.

    ``log`` gets what BIND's lame-servers category logs about upstream servers: a
    server that times out, is unreachable, answers with an error code or lamely
    (``timed out resolving 'example.net/MX/IN': 203.0.113.53#53``).
    """

    def __init__(
        self,
        root_hints: Sequence[tuple[str, str]],
        socket_factory: SocketFactory,
        port: int = 53,
        cache: DnsCache | None = None,
        server_timeout: float = SERVER_TIMEOUT,
        total_timeout: float = RESOLVE_TIMEOUT,
        max_depth: int = 6,
        max_referrals: int = 16,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.root_hints = [(DNSLabel(n), str(a)) for n, a in root_hints]
        self.socket_factory = socket_factory
        self.port = port
        self.cache = cache if cache is not None else DnsCache()
        self.server_timeout = server_timeout
        self.total_timeout = total_timeout
        self.max_depth = max_depth
        self.max_referrals = max_referrals
        self.log = log or (lambda _message: None)

    async def resolve(self, qname: DNSLabel | str, qtype: int | str) -> Resolution:
        """Resolve one question; SERVFAIL if it cannot be done within the bounds."""
        name = DNSLabel(qname)
        rtype = getattr(QTYPE, qtype) if isinstance(qtype, str) else qtype
        try:
            async with asyncio.timeout(self.total_timeout):
                return await self._resolve(name, rtype, 0, frozenset())
        except TimeoutError:
            return Resolution(SERVFAIL)

    def cached(self, qname: DNSLabel, qtype: int) -> Resolution | None:
        """Answer from the cache only (CNAMEs followed); None when the cache cannot."""
        answers: list[RR] = []
        name = qname
        for _ in range(8):
            step = self.cache.lookup(name, qtype)
            if step is None:
                return None
            if step.kind == "cname":
                answers += step.records
                name = step.records[0].rdata.label
                continue
            if step.kind == "answer":
                return Resolution(NOERROR, answers + step.records)
            return Resolution(step.rcode, answers, [step.soa] if step.soa else [])
        return None

    async def _resolve(self, qname: DNSLabel, qtype: int, depth: int,
                       busy: frozenset) -> Resolution:
        answers: list[RR] = []
        name = qname
        seen: set[DNSLabel] = set()
        for _ in range(10):
            if name in seen:  # CNAME loop
                return Resolution(SERVFAIL, answers)
            seen.add(name)
            step = self.cache.lookup(name, qtype)
            if step is None:
                step = await self._iterate(name, qtype, depth, busy | {(name, qtype)})
            if step.kind == "answer":
                return Resolution(NOERROR, answers + step.records)
            if step.kind == "cname":
                answers += step.records
                name = step.records[0].rdata.label
                continue
            if step.kind == "negative":
                return Resolution(step.rcode, answers, [step.soa] if step.soa else [])
            return Resolution(SERVFAIL, answers)
        return Resolution(SERVFAIL, answers)

    def cut(self, name: DNSLabel, qtype: int) -> tuple[DNSLabel, list[RR], list[RR]]:
        """The deepest zone cut the cache knows for ``name``: (zone, its NS records, the
        addresses cached for them); the root hints when the cache knows none. For DS the
        search starts at the parent (the DS of a zone lives on the parent's side)."""
        labels = name.label
        start = 1 if qtype == QTYPE.DS and labels else 0
        for i in range(start, len(labels) + 1):
            ancestor = DNSLabel(labels[i:])
            ns = self.cache.get(ancestor, QTYPE.NS)
            if ns:
                addresses = [rr for target in dict.fromkeys(r.rdata.label for r in ns)
                             for rtype in (QTYPE.A, QTYPE.AAAA)
                             for rr in self.cache.get(target, rtype) or []]
                return ancestor, ns, addresses
        ns = [RR(ROOT, QTYPE.NS, ttl=HINT_TTL, rdata=NS(n))
              for n in dict.fromkeys(n for n, _ in self.root_hints)]
        addresses = [RR(n, QTYPE.AAAA if ":" in a else QTYPE.A, ttl=HINT_TTL,
                        rdata=AAAA(a) if ":" in a else A(a)) for n, a in self.root_hints]
        return ROOT, ns, addresses

    def _closest(self, name: DNSLabel, qtype: int
                 ) -> tuple[DNSLabel, list[tuple[DNSLabel, list[str]]]]:
        """Where iteration starts: the deepest cut known, with each server's IPv4 addresses."""
        zone, ns, addresses = self.cut(name, qtype)
        servers = [(target, [str(a.rdata) for a in addresses
                             if a.rname == target and a.rtype == QTYPE.A])
                   for target in dict.fromkeys(r.rdata.label for r in ns)]
        return zone, servers

    async def _iterate(self, qname: DNSLabel, qtype: int, depth: int, busy: frozenset) -> Step:
        zone, servers = self._closest(qname, qtype)
        for _ in range(self.max_referrals):
            step = await self._ask(zone, servers, qname, qtype, depth, busy)
            if step.kind != "referral":
                return step
            zone, servers = step.zone, step.servers
        return Step("fail")

    async def _ask(self, zone: DNSLabel, servers: list[tuple[DNSLabel, list[str]]],
                   qname: DNSLabel, qtype: int, depth: int, busy: frozenset) -> Step:
        silent: list[str] = []
        step = await self._ask_each(zone, servers, qname, qtype, depth, busy, silent)
        for addr in silent:  # a lost packet is not a dead server: one more try each
            response = await self.query(addr, qname, qtype)
            if response is not None:
                step = self._classify(response, zone, qname, qtype, addr)
                if step.kind != "lame":
                    return step
        return step

    async def _ask_each(self, zone: DNSLabel, servers: list[tuple[DNSLabel, list[str]]],
                        qname: DNSLabel, qtype: int, depth: int, busy: frozenset,
                        silent: list[str]) -> Step:
        tried: set[str] = set()
        for nsname, addrs in servers:
            if not addrs:  # glueless: find the server's address first
                if depth >= self.max_depth or (nsname, QTYPE.A) in busy:
                    continue
                found = await self._resolve(nsname, QTYPE.A, depth + 1, busy)
                addrs = [str(rr.rdata) for rr in found.answer
                         if rr.rtype == QTYPE.A and rr.rname == found.answer[-1].rname]
            for addr in addrs:
                if addr in tried:
                    continue
                tried.add(addr)
                response = await self.query(addr, qname, qtype)
                if response is None:
                    silent.append(addr)
                    continue
                step = self._classify(response, zone, qname, qtype, addr)
                if step.kind != "lame":
                    return step
        return Step("fail")

    def _classify(self, response: DNSRecord, zone: DNSLabel, qname: DNSLabel,
                  qtype: int, addr: str) -> Step:
        step = self._judge(response, zone, qname, qtype)
        if step.kind == "lame":
            rcode = response.header.rcode
            if rcode not in (NOERROR, NXDOMAIN):
                self.log(f"{RCODE.get(rcode)} unexpected RCODE resolving "
                         f"'{_question(qname, qtype)}': {addr}#{self.port}")
            else:
                self.log(f"lame server resolving '{_name(qname)}' (in '{_name(zone)}'?): "
                         f"{addr}#{self.port}")
        return step

    def _judge(self, response: DNSRecord, zone: DNSLabel, qname: DNSLabel,
               qtype: int) -> Step:
        header = response.header
        if header.rcode not in (NOERROR, NXDOMAIN):
            return Step("lame")
        answers = [rr for rr in response.rr
                   if rr.rtype != QTYPE.OPT and _in_bailiwick(rr.rname, zone)]
        soa = next((rr for rr in response.auth
                    if rr.rtype == QTYPE.SOA and _in_bailiwick(rr.rname, zone)), None)
        if header.aa:
            self.cache.put(answers)
            # addresses of the NS/MX targets in the answer, as the server offered them
            targets = {rr.rdata.label for rr in answers if rr.rtype in (QTYPE.NS, QTYPE.MX)}
            self.cache.put([rr for rr in response.ar
                            if rr.rtype in (QTYPE.A, QTYPE.AAAA) and rr.rname in targets
                            and _in_bailiwick(rr.rname, zone)
                            and self.cache.get(rr.rname, rr.rtype) is None])
            found = answered(answers, qname, qtype)
            if found is not None:
                return found
            if header.rcode == NXDOMAIN or not response.rr:
                return self.negative(qname, qtype, soa, header.rcode)
            return Step("lame")
        if header.rcode == NOERROR and not response.rr:
            ns = [rr for rr in response.auth if rr.rtype == QTYPE.NS]
            if ns:
                child = ns[0].rname
                closer = len(child.label) > len(zone.label) and _in_bailiwick(child, zone)
                if closer and all(rr.rname == child for rr in ns) and qname.matchSuffix(child):
                    targets = {rr.rdata.label for rr in ns}
                    glue = [rr for rr in response.ar if rr.rtype == QTYPE.A
                            and rr.rname in targets and _in_bailiwick(rr.rname, zone)]
                    self.cache.put(ns)
                    self.cache.put(glue, glue=True)
                    servers = [(rr.rdata.label,
                                [str(g.rdata) for g in glue if g.rname == rr.rdata.label])
                               for rr in ns]
                    return Step("referral", zone=child, servers=servers)
        return Step("lame")

    def negative(self, qname: DNSLabel, qtype: int, soa: RR | None, rcode: int) -> Step:
        """A negative answer, cached (NXDOMAIN for every type, NODATA for ``qtype``)."""
        if rcode == NXDOMAIN:
            self.cache.put_negative(qname, None, soa, NXDOMAIN)
            return Step("negative", rcode=NXDOMAIN, soa=soa)
        self.cache.put_negative(qname, qtype, soa, NOERROR)
        return Step("negative", rcode=NOERROR, soa=soa)

    async def query(self, address: str, qname: DNSLabel, qtype: int,
                    recurse: bool = False) -> DNSRecord | None:
        """One query to one server, non-recursive unless ``recurse`` (a forwarder's); UDP,
        then TCP if truncated; None if no answer came."""
        request = DNSRecord(DNSHeader(id=random.randrange(65536), rd=int(recurse)),
                            q=DNSQuestion(qname, qtype))
        request.add_ar(EDNS0(udp_len=EDNS_SIZE))
        packet = request.pack()
        loop = asyncio.get_running_loop()
        sock = self.socket_factory(address_family(address), socket.SOCK_DGRAM, 0)
        response = None
        try:
            await loop.sock_connect(sock, (address, self.port))
            await loop.sock_sendall(sock, packet)
            deadline = loop.time() + self.server_timeout
            while response is None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                raw = await asyncio.wait_for(loop.sock_recv(sock, 65535), remaining)
                response = self._match(raw, request)
        except (OSError, TimeoutError) as e:
            self.log(f"{_failure(e)} resolving '{_question(qname, qtype)}': "
                     f"{address}#{self.port}")
            return None
        finally:
            sock.close()
        if response.header.tc:
            return await self._query_tcp(address, packet, request)
        return response

    async def _query_tcp(self, address: str, packet: bytes,
                         request: DNSRecord) -> DNSRecord | None:
        loop = asyncio.get_running_loop()
        sock = self.socket_factory(address_family(address), socket.SOCK_STREAM, 0)
        try:
            async with asyncio.timeout(self.server_timeout * 2):
                await loop.sock_connect(sock, (address, self.port))
                await loop.sock_sendall(sock, struct.pack("!H", len(packet)) + packet)
                (length,) = struct.unpack("!H", await _recv_exact(loop, sock, 2))
                return self._match(await _recv_exact(loop, sock, length), request)
        except (OSError, TimeoutError, ConnectionError):
            return None
        finally:
            sock.close()

    @staticmethod
    def _match(raw: bytes, request: DNSRecord) -> DNSRecord | None:
        try:
            response = DNSRecord.parse(raw)
        except Exception:  # noqa: BLE001 - anything unparseable is just not our answer
            return None
        if response.header.id != request.header.id or not response.header.qr:
            return None
        if response.questions and response.questions[0] != request.questions[0]:
            return None
        return response
