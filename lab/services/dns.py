"""The DNS service: an authoritative server and an iterative, caching resolver.

One ``DnsService`` per node, all on the supervisor's asyncio loop. It answers real DNS
clients (dig, nslookup, host, MTAs) over UDP and TCP on every address of its node:

* authoritative for the zones in its config (AA, NXDOMAIN/NODATA with the SOA,
  referrals with glue for delegated children, CNAME chains, additional addresses);
* in mode ``recursive``/``split``, a real iterative resolver from ``root_hints``
  (:mod:`lab.services.resolver`) with a cache (:mod:`lab.services.dnscache`) whose
  TTLs count down, for clients in ``recursion_from``.

Zone files are served from the node and re-read when they change
(:mod:`lab.services.dnszones`). The cache and resolver names are re-exported here for
code that imports them from this module.
"""
from __future__ import annotations

import asyncio
import random
import socket
import struct

from dnslib import CLASS, EDNS0, NS, QTYPE, RR, A, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

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
from lab.services.dnszones import ZoneSet, ZoneSlot
from lab.services.resolver import (
    EDNS_SIZE,
    RESOLVE_TIMEOUT,
    ROOT,
    SERVER_TIMEOUT,
    Resolution,
    Resolver,
    address_family,
)
from lab.services.zonefile import Lookup, ZoneData, render_zone

__all__ = [
    "EDNS_SIZE", "FORMERR", "MAX_INFLIGHT", "MAX_TCP_CLIENTS", "NOERROR", "NOTIMP",
    "NXDOMAIN", "REFUSED", "RESOLVE_TIMEOUT", "ROOT", "SERVER_TIMEOUT", "SERVFAIL",
    "TCP_IDLE", "DnsCache", "DnsService", "Resolution", "Resolver", "Step", "ZoneSlot",
]

TCP_IDLE = 10.0  # a TCP client that says nothing for this long is dropped
MAX_INFLIGHT = 256  # concurrent queries being answered; more are dropped
MAX_TCP_CLIENTS = 64


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
        self.zone_set = ZoneSet(node)
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

