"""The DNS service: an authoritative server and an iterative, caching resolver.

One ``DnsService`` per node, all on the supervisor's asyncio loop. It answers real DNS
clients (dig, nslookup, host, MTAs) over UDP and TCP on every address of its node, the
way BIND 9.18 answers them:

* requests are read as strictly as BIND reads them, with FORMERR for what it rejects,
  BADVERS for an EDNS version it does not speak, the DO bit copied, and UDP replies that
  fit the requestor's buffer and this server's advertised 1232 bytes
  (:mod:`lab.protocols.dnswire`);
* authoritative for the zones in its config (AA, NXDOMAIN/NODATA with the SOA,
  referrals with glue for delegated children, CNAME chains, wildcards, DS from the
  parent side, additional addresses; :mod:`lab.protocols.zonedata`), and zone transfers
  to the clients a zone allows (:mod:`lab.protocols.dnsxfr`);
* in mode ``recursive``/``split``, a real iterative resolver from ``root_hints``
  (:mod:`lab.protocols.resolver`) with a cache (:mod:`lab.protocols.dnscache`) whose
  TTLs count down, for clients in ``recursion_from``; with ``forwarders``, one that
  forwards (:mod:`lab.protocols.forwarder`, BIND's ``forward only`` / ``first``).

TCP connections are limited per client (:mod:`lab.protocols.dnstcp`). Zone files are
served from the node and re-read when they change (:mod:`lab.protocols.dnszones`). The
cache and resolver names are re-exported here for code that imports them from this module.
"""
from __future__ import annotations

import asyncio
import random
import socket

from dnslib import QTYPE, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from lab.errors import LabError
from lab.model.dns import DnsConfig
from lab.protocols.dnsanswer import Answerer
from lab.protocols.dnscache import (
    FORMERR,
    NOERROR,
    NOTIMP,
    NXDOMAIN,
    REFUSED,
    SERVFAIL,
    DnsCache,
    Step,
)
from lab.protocols.dnstcp import MAX_TCP_CLIENTS, MAX_TCP_PER_CLIENT, TCP_IDLE, TcpClients
from lab.protocols.dnswire import EDNS_SIZE
from lab.protocols.dnszones import ZoneSet, ZoneSlot
from lab.protocols.forwarder import Forwarder
from lab.protocols.resolver import (
    RESOLVE_TIMEOUT,
    ROOT,
    SERVER_TIMEOUT,
    Resolution,
    Resolver,
    address_family,
)
from lab.services.base import NodeContext, Service

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
        self.cache = DnsCache(clock=node.clock.monotonic)
        self.zone_set = ZoneSet(node)
        self.resolver: Resolver | None = None
        hints = [(h.name, str(h.address)) for h in config.root_hints]
        if config.mode in ("recursive", "split") and config.forwarders:
            self.resolver = Forwarder([str(a) for a in config.forwarders], hints, node.socket,
                                      upstream_port, self.cache, only=config.forward == "only",
                                      log=self.zone_set.log)
        elif config.mode in ("recursive", "split"):
            self.resolver = Resolver(hints, node.socket, upstream_port, self.cache,
                                     log=self.zone_set.log)
        self.answerer = Answerer(config, self.zone_set, self.resolver)
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
                self.zone_set.install(name, zone.text(name), zone.includes)
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

    def set_forwarders(self, forwarders: list[str]) -> bool:
        """Forward to ``forwarders`` from now on (an edited ``forwarders`` statement and
        ``rndc reconfig``: the cache stays). False if nothing changed; a LabError if this
        server does not forward."""
        if not isinstance(self.resolver, Forwarder):
            raise LabError(f"dns on {self.node.name} does not forward")
        if self.resolver.forwarders == list(forwarders):
            return False
        self.resolver.forwarders = list(forwarders)
        self.config = self.config.model_copy(update={"forwarders": list(forwarders)})
        self.answerer.config = self.config
        return True

    @property
    def forwarders(self) -> list[str]:
        """The servers this one forwards to now ([] if it does not forward)."""
        return list(self.resolver.forwarders) if isinstance(self.resolver, Forwarder) else []

    # --- zones ---

    @property
    def zones(self) -> dict[str, ZoneSlot]:
        """The zones served, by name (see :class:`~lab.protocols.dnszones.ZoneSet`)."""
        return self.zone_set.slots

    def reload_zones(self) -> None:
        """Re-read every zone file whose mtime or size changed; keep old data if it is bad."""
        self.zone_set.reload()

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
        return await self.answerer.respond(data, client, tcp)

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
