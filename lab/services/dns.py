"""The DNS service: an authoritative server and an iterative, caching resolver.

One ``DnsService`` per node, all on the supervisor's asyncio loop. It answers real DNS
clients (dig, nslookup, host, MTAs) over UDP and TCP on every address of its node, the
way BIND 9.18 answers them:

* requests are read as strictly as BIND reads them, with FORMERR for what it rejects,
  BADVERS for an EDNS version it does not speak, the DO bit copied, and UDP replies that
  fit the requestor's buffer and this server's advertised 1232 bytes
  (:mod:`lab.services.dnswire`);
* authoritative for the zones in its config (AA, NXDOMAIN/NODATA with the SOA,
  referrals with glue for delegated children, CNAME chains, wildcards, DS from the
  parent side, additional addresses; :mod:`lab.services.zonedata`), and zone transfers
  to the clients a zone allows (:mod:`lab.services.dnsxfr`);
* in mode ``recursive``/``split``, a real iterative resolver from ``root_hints``
  (:mod:`lab.services.resolver`) with a cache (:mod:`lab.services.dnscache`) whose
  TTLs count down, for clients in ``recursion_from``.

TCP connections are limited per client (:mod:`lab.services.dnstcp`). Zone files are
served from the node and re-read when they change (:mod:`lab.services.dnszones`). The
cache and resolver names are re-exported here for code that imports them from this module.
"""
from __future__ import annotations

import asyncio
import random
import socket

from dnslib import QTYPE, RR, A, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from lab.errors import LabError
from lab.model.dns import DnsConfig
from lab.services.base import NodeContext, Service
from lab.services.dnscache import (
    FORMERR,
    NOERROR,
    NOTIMP,
    NXDOMAIN,
    REFUSED,
    SERVFAIL,
    DnsCache,
    Step,
)
from lab.services.dnstcp import MAX_TCP_CLIENTS, MAX_TCP_PER_CLIENT, TCP_IDLE, TcpClients
from lab.services.dnswire import (
    BADVERS,
    EDNS_SIZE,
    Drop,
    FormErr,
    Query,
    error_reply,
    opt_record,
    parse_query,
    render,
    reply_header,
)
from lab.services.dnsxfr import transfer
from lab.services.dnszones import ZoneSet, ZoneSlot
from lab.services.resolver import (
    RESOLVE_TIMEOUT,
    ROOT,
    SERVER_TIMEOUT,
    Resolution,
    Resolver,
    address_family,
)
from lab.services.zonedata import Lookup, ZoneData
from lab.services.zonefile import render_zone, zone_origin

__all__ = [
    "EDNS_SIZE", "FORMERR", "MAX_INFLIGHT", "MAX_TCP_CLIENTS", "MAX_TCP_PER_CLIENT",
    "NOERROR", "NOTIMP", "NXDOMAIN", "REFUSED", "RESOLVE_TIMEOUT", "ROOT", "SERVER_TIMEOUT",
    "SERVFAIL", "TCP_IDLE", "DnsCache", "DnsService", "Resolution", "Resolver", "Step",
    "ZoneSlot",
]

MAX_INFLIGHT = 256  # concurrent queries being answered; more are dropped


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
                 upstream_port: int = 53, tcp_idle: float = TCP_IDLE) -> None:
        super().__init__(node)
        self.config = config
        self.port = port
        self.upstream_port = upstream_port
        self.cache = DnsCache()
        self.resolver: Resolver | None = None
        if config.mode in ("recursive", "split"):
            self.resolver = Resolver([(h.name, str(h.address)) for h in config.root_hints],
                                     node.socket, upstream_port, self.cache)
        self.zone_set = ZoneSet(node)
        self._transports: list[asyncio.DatagramTransport] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task] = set()
        self.tcp = TcpClients(lambda data, client: self.respond(data, client, tcp=True),
                              idle=tcp_idle)

    # --- lifecycle ---

    async def start(self) -> None:
        if not self.node.addresses:
            raise LabError(f"dns on {self.node.name}: the node has no address to listen on")
        self.cache.flush()  # a (re)started resolver begins with an empty cache
        try:
            for name, zone in self.config.zones.items():
                self.zone_set.install(name, render_zone(name, zone.ttl, zone.records))
            loop = asyncio.get_running_loop()
            for address in self.node.addresses:
                family = address_family(address)
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
        self.tcp.close_all()
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

    async def healthy(self) -> bool:
        """A real query (SOA of the first zone, or the root NS) to the first address."""
        if not self._transports or not self.node.addresses:
            return False
        address = self.node.addresses[0]
        qname = next(iter(self.config.zones), ".")
        request = DNSRecord(DNSHeader(id=random.randrange(65536), rd=0),
                            q=DNSQuestion(DNSLabel(qname), QTYPE.SOA))
        loop = asyncio.get_running_loop()
        sock = self.node.socket(address_family(address), socket.SOCK_DGRAM, 0)
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

    @property
    def zones(self) -> dict[str, ZoneSlot]:
        """The zones served, by name (see :class:`~lab.services.dnszones.ZoneSet`)."""
        return self.zone_set.slots

    def reload_zones(self) -> None:
        """Re-read every zone file whose mtime or size changed; keep old data if it is bad."""
        self.zone_set.reload()

    def _zone_for(self, qname: DNSLabel) -> ZoneData | None:
        return self.zone_set.zone_for(qname)

    # --- answering ---

    def _spawn(self, coro) -> None:
        if len(self._tasks) >= MAX_INFLIGHT:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def answer(self, data: bytes, client: str, tcp: bool = False) -> bytes | None:
        """The (first) wire reply to one request from ``client``, or None to send nothing."""
        replies = await self.respond(data, client, tcp)
        return replies[0] if replies else None

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
        can_recurse = self.resolver is not None and self.config.recursion_allowed(client)
        rcode = _precheck(query)
        if rcode is not None:
            return [error_reply(query.ident, query.flags, query.questions, rcode, edns,
                                ra=can_recurse and rcode != REFUSED)]
        question = query.questions[0]
        if question.qtype in (QTYPE.AXFR, QTYPE.IXFR):
            return self._transfer(query, client, tcp, can_recurse)
        reply = DNSRecord(reply_header(query.ident, query.flags), questions=query.questions)
        reply.header.ra = int(can_recurse)
        await self._fill(reply, question, client, query.rd, can_recurse)
        opt = opt_record(edns, reply.header.rcode) if edns is not None else None
        return [render(reply, 65535 if tcp else query.udp_limit(), opt)]

    def _transfer(self, query: Query, client: str, tcp: bool, ra: bool) -> list[bytes]:
        self.reload_zones()
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
        self.reload_zones()
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
            found = (self.cache.get(name, QTYPE.A) or []) + (self.cache.get(name, QTYPE.AAAA) or [])
            if not found:
                found = [RR(name, QTYPE.A, ttl=518400, rdata=A(address))
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

    # --- TCP ---

    async def _tcp_client(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self.tcp.serve(reader, writer)
        finally:
            if task is not None:
                self._tasks.discard(task)


IN, CH, HS, NONE, ANY = 1, 3, 4, 254, 255  # classes
MAILB, MAILA, TKEY, TSIG = 253, 254, 249, 250  # meta types


def _precheck(query: Query) -> int | None:
    """The error rcode BIND gives before looking anything up, in BIND's order, or None:
    the question's class, the opcode, the number of questions, a meta type as QTYPE."""
    qclass = query.questions[0].qclass if query.questions else 0
    if qclass in (0, NONE, ANY):
        return NOTIMP if query.opcode != 0 and qclass == 0 else FORMERR
    if qclass in (CH, HS):
        return REFUSED  # no view serves these classes
    if qclass != IN:
        return NOTIMP
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
