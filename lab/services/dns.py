"""The DNS service: an authoritative server and an iterative, caching resolver.

One ``DnsService`` per node, all on the supervisor's asyncio loop. It answers real DNS
clients (dig, nslookup, host, MTAs) over UDP and TCP on every address of its node:

* authoritative for the zones in its config (AA, NXDOMAIN/NODATA with the SOA,
  referrals with glue for delegated children, CNAME chains, additional addresses);
* in mode ``recursive``/``split``, a real iterative resolver from ``root_hints`` with a
  cache (:class:`DnsCache`) whose TTLs count down, for clients in ``recursion_from``.

Zone files are written to ``/etc/bind/db.<zone>`` in the node and re-read when their
mtime changes, so a trainee can fix (or break) a zone by editing it; a file that does
not load leaves the old data serving and a BIND-style line in ``/var/log/named.log``.
"""
from __future__ import annotations

import asyncio
import math
import random
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from dnslib import CLASS, EDNS0, NS, QTYPE, RR, A, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from lab.errors import LabError
from lab.model.dns import DnsConfig
from lab.services.base import NodeContext, Service, SocketFactory
from lab.services.zonefile import (
    Lookup,
    ZoneData,
    ZoneError,
    load_zone,
    parse_records,
    render_zone,
    zone_file_name,
)

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
ROOT = DNSLabel(".")

SERVER_TIMEOUT = 0.8  # one upstream server
RESOLVE_TIMEOUT = 3.0  # one whole resolution
TCP_IDLE = 10.0  # a TCP client that says nothing for this long is dropped
MAX_INFLIGHT = 256  # concurrent queries being answered; more are dropped
MAX_TCP_CLIENTS = 64
EDNS_SIZE = 1232


# --- cache -------------------------------------------------------------------------------


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


# --- resolver ----------------------------------------------------------------------------


@dataclass
class Resolution:
    rcode: int
    answer: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)


def _in_bailiwick(name: DNSLabel, zone: DNSLabel) -> bool:
    return True if not zone.label else name.matchSuffix(zone)


def _family(address: str) -> int:
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
    ) -> None:
        self.root_hints = [(DNSLabel(n), str(a)) for n, a in root_hints]
        self.socket_factory = socket_factory
        self.port = port
        self.cache = cache if cache is not None else DnsCache()
        self.server_timeout = server_timeout
        self.total_timeout = total_timeout
        self.max_depth = max_depth
        self.max_referrals = max_referrals

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

    def _closest(self, name: DNSLabel) -> tuple[DNSLabel, list[tuple[DNSLabel, list[str]]]]:
        """The deepest zone cut we know servers for (from the cache), else the root hints."""
        labels = name.label
        for i in range(len(labels) + 1):
            ancestor = DNSLabel(labels[i:])
            ns = self.cache.get(ancestor, QTYPE.NS)
            if ns:
                servers = []
                for rr in ns:
                    addrs = self.cache.get(rr.rdata.label, QTYPE.A) or []
                    servers.append((rr.rdata.label, [str(a.rdata) for a in addrs]))
                return ancestor, servers
        hints: dict[DNSLabel, list[str]] = {}
        for n, a in self.root_hints:
            hints.setdefault(n, []).append(a)
        return ROOT, list(hints.items())

    async def _iterate(self, qname: DNSLabel, qtype: int, depth: int, busy: frozenset) -> Step:
        zone, servers = self._closest(qname)
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
                step = self._classify(response, zone, qname, qtype)
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
                step = self._classify(response, zone, qname, qtype)
                if step.kind != "lame":
                    return step
        return Step("fail")

    def _classify(self, response: DNSRecord, zone: DNSLabel, qname: DNSLabel,
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
            direct = [rr for rr in answers
                      if rr.rname == qname and (rr.rtype == qtype or qtype == QTYPE.ANY)]
            if direct:
                return Step("answer", direct)
            cname = [rr for rr in answers if rr.rname == qname and rr.rtype == QTYPE.CNAME]
            if cname:
                return Step("cname", cname[:1])
            if header.rcode == NXDOMAIN:
                self.cache.put_negative(qname, None, soa, NXDOMAIN)
                return Step("negative", rcode=NXDOMAIN, soa=soa)
            if not response.rr:
                self.cache.put_negative(qname, qtype, soa, NOERROR)
                return Step("negative", rcode=NOERROR, soa=soa)
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

    async def query(self, address: str, qname: DNSLabel, qtype: int) -> DNSRecord | None:
        """One non-recursive query to one server (UDP, then TCP if truncated); None if none."""
        request = DNSRecord(DNSHeader(id=random.randrange(65536), rd=0),
                            q=DNSQuestion(qname, qtype))
        request.add_ar(EDNS0(udp_len=EDNS_SIZE))
        packet = request.pack()
        loop = asyncio.get_running_loop()
        sock = self.socket_factory(_family(address), socket.SOCK_DGRAM, 0)
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
        except (OSError, TimeoutError):
            return None
        finally:
            sock.close()
        if response.header.tc:
            return await self._query_tcp(address, packet, request)
        return response

    async def _query_tcp(self, address: str, packet: bytes,
                         request: DNSRecord) -> DNSRecord | None:
        loop = asyncio.get_running_loop()
        sock = self.socket_factory(_family(address), socket.SOCK_STREAM, 0)
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


# --- the service -------------------------------------------------------------------------

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _bind_time(now: datetime | None = None) -> str:
    now = now or datetime.now()
    return (f"{now.day:02d}-{_MONTHS[now.month - 1]}-{now.year} "
            f"{now:%H:%M:%S}.{now.microsecond // 1000:03d}")


@dataclass
class _ZoneSlot:
    name: str
    node_path: str
    path: Path
    data: ZoneData
    stamp: tuple[int, int] | None

    @property
    def log_name(self) -> str:
        return f"{str(self.data.origin).rstrip('.') or '.'}/IN"


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, service: DnsService) -> None:
        self.service = service
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.service._spawn(self._serve(data, addr))

    async def _serve(self, data: bytes, addr: tuple) -> None:
        reply = await self.service.answer(data, addr[0], tcp=False)
        if reply is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP errors: nothing to do
        pass


class DnsService(Service):
    """A node's DNS server (authoritative, recursive or split), on the running loop."""

    kind = "dns"

    def __init__(self, node: NodeContext, config: DnsConfig, port: int = 53,
                 upstream_port: int = 53) -> None:
        super().__init__(node)
        self.config = config
        self.port = port
        self.upstream_port = upstream_port
        self.cache = DnsCache()
        self.resolver: Resolver | None = None
        if config.mode in ("recursive", "split"):
            self.resolver = Resolver([(h.name, str(h.address)) for h in config.root_hints],
                                     node.socket, upstream_port, self.cache)
        self.zones: dict[str, _ZoneSlot] = {}
        self._transports: list[asyncio.DatagramTransport] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task] = set()
        self._tcp_clients: set[asyncio.StreamWriter] = set()

    # --- lifecycle ---

    async def start(self) -> None:
        if not self.node.addresses:
            raise LabError(f"dns on {self.node.name}: the node has no address to listen on")
        self.cache.flush()  # a (re)started resolver begins with an empty cache
        try:
            for name, zone in self.config.zones.items():
                self._install_zone(name, render_zone(name, zone.ttl, zone.records))
            loop = asyncio.get_running_loop()
            for address in self.node.addresses:
                family = _family(address)
                udp = self.node.socket(family, socket.SOCK_DGRAM, 0)
                try:
                    udp.bind((address, self.port))
                except OSError:
                    udp.close()
                    raise
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self), sock=udp)
                self._transports.append(transport)
                tcp = self.node.socket(family, socket.SOCK_STREAM, 0)
                try:
                    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    tcp.bind((address, self.port))
                except OSError:
                    tcp.close()
                    raise
                self._servers.append(
                    await asyncio.start_server(self._tcp_client, sock=tcp, backlog=64))
        except OSError as e:
            await self.stop()
            raise LabError(f"dns on {self.node.name}: cannot listen on port {self.port}: "
                           f"{e.strerror or e}") from None
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for transport in self._transports:
            transport.close()
        for server in self._servers:
            server.close()
        for writer in list(self._tcp_clients):
            writer.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for server in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 1)
            except Exception:  # noqa: BLE001, S110 - closing anyway
                pass
        self._transports.clear()
        self._servers.clear()
        self._tcp_clients.clear()

    async def healthy(self) -> bool:
        """A real query (SOA of the first zone, or the root NS) to the first address."""
        if not self._transports or not self.node.addresses:
            return False
        address = self.node.addresses[0]
        qname = next(iter(self.config.zones), ".")
        request = DNSRecord(DNSHeader(id=random.randrange(65536), rd=0),
                            q=DNSQuestion(DNSLabel(qname), QTYPE.SOA))
        loop = asyncio.get_running_loop()
        sock = self.node.socket(_family(address), socket.SOCK_DGRAM, 0)
        try:
            async with asyncio.timeout(1.0):
                await loop.sock_connect(sock, (address, self.port))
                await loop.sock_sendall(sock, request.pack())
                while True:
                    if Resolver._match(await loop.sock_recv(sock, 65535), request):
                        return True
        except (OSError, TimeoutError):
            return False
        finally:
            sock.close()

    # --- zones ---

    def _log(self, message: str) -> None:
        path = self.node.path("/var/log/named.log")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as f:
                f.write(f"{_bind_time()} {message}\n")
        except OSError:
            pass  # a log we cannot write must not take DNS down

    def _install_zone(self, name: str, text: str) -> None:
        """Write the zone file the first time; a restart loads the file as it is now
        (with a trainee's edits or a fault's changes), like a real name server."""
        node_path = f"/etc/bind/{zone_file_name(name)}"
        path = self.node.path(node_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            text = path.read_text()
        else:
            path.write_text(text)
        try:
            data = load_zone(name, text)
        except ZoneError as e:
            raise LabError(f"dns on {self.node.name}: zone {name}: {e}") from None
        slot = _ZoneSlot(name, node_path, path, data, self._stamp(path))
        self.zones[name] = slot
        self._log(f"zone {slot.log_name}: loaded serial {data.serial}")

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def reload_zones(self) -> None:
        """Re-read every zone file whose mtime or size changed; keep old data if it is bad."""
        for slot in self.zones.values():
            stamp = self._stamp(slot.path)
            if stamp == slot.stamp:
                continue
            slot.stamp = stamp
            try:
                text = slot.path.read_text()
                data = load_zone(slot.name, text, filename=slot.path.name)
            except OSError as e:
                reason = f"{e.strerror or e}"
            except UnicodeDecodeError:
                reason = "file is not text"
            except ZoneError as e:
                reason = str(e)
            else:
                slot.data = data
                self._log(f"zone {slot.log_name}: loaded serial {data.serial}")
                continue
            self._log(f"zone {slot.log_name}: loading from master file {slot.node_path} "
                      f"failed: {reason}")

    def _zone_for(self, qname: DNSLabel) -> ZoneData | None:
        best: ZoneData | None = None
        for slot in self.zones.values():
            data = slot.data
            if data.contains(qname) and (best is None
                                         or len(data.origin.label) > len(best.origin.label)):
                best = data
        return best

    # --- answering ---

    def _spawn(self, coro) -> None:
        if len(self._tasks) >= MAX_INFLIGHT:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def answer(self, data: bytes, client: str, tcp: bool = False) -> bytes | None:
        """The wire reply to one query from ``client``, or None to send nothing."""
        try:
            query = DNSRecord.parse(data)
        except Exception:  # noqa: BLE001 - any parse failure is the client's problem
            return None if tcp else self._formerr(data)
        try:
            return await self._answer(query, client, tcp)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one bad query must not take the server down
            header = query.header
            reply = DNSRecord(DNSHeader(id=header.id, qr=1, rd=header.rd, rcode=SERVFAIL),
                              questions=query.questions[:1])
            try:
                return reply.pack()
            except Exception:  # noqa: BLE001
                return None

    @staticmethod
    def _formerr(data: bytes) -> bytes | None:
        if len(data) < 12:
            return None
        ident, flags = struct.unpack("!HH", data[:4])
        if flags & 0x8000:  # a response: never answer those
            return None
        opcode = (flags >> 11) & 0xF
        header = DNSHeader(id=ident, qr=1, opcode=opcode, rd=(flags >> 8) & 1, rcode=FORMERR)
        return DNSRecord(header).pack()

    async def _answer(self, query: DNSRecord, client: str, tcp: bool) -> bytes | None:
        qh = query.header
        if qh.qr:
            return None
        reply = DNSRecord(DNSHeader(id=qh.id, qr=1, opcode=qh.opcode, rd=qh.rd, aa=0),
                          questions=query.questions[:1])
        edns = next((rr for rr in query.ar if rr.rtype == QTYPE.OPT), None)
        limit = 512 if edns is None else max(512, min(edns.edns_len, 4096))
        if qh.opcode != 0:
            reply.header.rcode = NOTIMP
        elif len(query.questions) != 1:
            reply.header.rcode = FORMERR
        else:
            await self._fill(reply, query.questions[0], client, bool(qh.rd))
        if edns is not None:
            reply.add_ar(EDNS0(udp_len=EDNS_SIZE))
        packed = reply.pack()
        if not tcp and len(packed) > limit:
            truncated = DNSRecord(DNSHeader(id=qh.id, qr=1, opcode=qh.opcode, rd=qh.rd, tc=1,
                                            aa=reply.header.aa, ra=reply.header.ra,
                                            rcode=reply.header.rcode),
                                  questions=query.questions[:1])
            if edns is not None:
                truncated.add_ar(EDNS0(udp_len=EDNS_SIZE))
            packed = truncated.pack()
        return packed

    async def _fill(self, reply: DNSRecord, question: DNSQuestion, client: str, rd: bool) -> None:
        header = reply.header
        can_recurse = self.resolver is not None and self.config.recursion_allowed(client)
        header.ra = int(can_recurse)
        if question.qclass not in (CLASS.IN, 255):
            header.rcode = REFUSED
            return
        qname, qtype = question.qname, question.qtype
        self.reload_zones()
        zone = self._zone_for(qname)
        if zone is not None:
            result = zone.lookup(qname, qtype)
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
            header.rcode = REFUSED
            return
        assert self.resolver is not None
        if rd:
            resolved = await self.resolver.resolve(qname, qtype)
        else:  # no recursion wanted: what the cache knows, else an upward referral
            resolved = self.resolver.cached(qname, qtype)
            if resolved is None:
                self._put(reply, self._root_referral())
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
            found = (self.cache.get(name, QTYPE.A) or []) + (self.cache.get(name, QTYPE.AAAA) or [])
            if not found:
                found = [RR(name, QTYPE.A, ttl=518400, rdata=A(address))
                         for hint, address in self.resolver.root_hints
                         if hint == name and ":" not in address]
            out += found
        return out

    def _root_referral(self) -> Lookup:
        assert self.resolver is not None
        ns, glue = [], []
        for name, address in self.resolver.root_hints:
            ns.append(RR(ROOT, QTYPE.NS, ttl=518400, rdata=NS(name)))
            if ":" not in address:
                glue.append(RR(name, QTYPE.A, ttl=518400, rdata=A(address)))
        return Lookup(aa=False, referral=True, authority=ns, additional=glue)

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

    # --- TCP ---

    async def _tcp_client(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        if len(self._tcp_clients) >= MAX_TCP_CLIENTS:
            writer.close()
            return
        self._tcp_clients.add(writer)
        peer = writer.get_extra_info("peername")
        client = peer[0] if peer else ""
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            for _ in range(100):
                head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE)
                (length,) = struct.unpack("!H", head)
                if length < 12:
                    break
                data = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE)
                reply = await self.answer(data, client, tcp=True)
                if reply is None:
                    break  # garbage: drop the connection
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, OSError):
            pass
        finally:
            self._tcp_clients.discard(writer)
            if task is not None:
                self._tasks.discard(task)
            writer.close()

