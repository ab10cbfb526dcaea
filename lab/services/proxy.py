"""The firewall's SMTP proxy, on the supervisor's asyncio loop.

- ``inbound-through``: nftables redirects SMTP arriving on the external interface to
  ``proxy.port``. The proxy reads each session's original destination (SO_ORIGINAL_DST)
  and relays to its static-NAT private address. Without a static NAT for the address:
  ``421 4.4.0 proxy: no route to mail server`` (log ``D``: the session is refused).
- ``inbound-to``: the proxy listens on the firewall's external address port 25 and relays
  to the first reachable of ``proxy.servers``; a recipient outside ``proxy.domains`` gets
  ``554 5.7.1 Relay access denied``.
- ``outbound`` (besides either mode): SMTP from the internal network to the outside is
  redirected to ``proxy.outbound_port`` and relayed to its original destination from
  the firewall's external address (the dynamic-NAT address).

Every proxied session writes one line to the connection log when it starts: ``Xr``
inbound (proxied and relayed to an inside server), ``X`` outbound, whatever happens
next; relay failures go to the error log. The SMTP itself is :mod:`lab.protocols.smtpd`
with the hooks of :mod:`lab.protocols.proxyrelay`. Sockets come only from
``node.socket()``; relay connections carry the packet mark ``PROXY_MARK`` that the
firewall's output chain lets through.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import struct

from lab.model.firewall import FirewallConfig
from lab.model.mta import MESSAGE_SIZE_LIMIT
from lab.protocols.fwlog import log_error, log_proxy
from lab.protocols.proxyrelay import ProxyHooks, Route
from lab.protocols.smtpd import Session, Smtpd
from lab.protocols.tlsca import TRUST_BUNDLE, ServerTls, client_context
from lab.services.base import NodeContext, Service

log = logging.getLogger(__name__)

SO_ORIGINAL_DST = 80
SOL_IP = 0


def original_dst(sock) -> tuple[str, int]:
    """The pre-NAT destination of a redirected TCP connection (sockaddr_in)."""
    raw = sock.getsockopt(SOL_IP, SO_ORIGINAL_DST, 16)
    port = struct.unpack_from("!H", raw, 2)[0]
    return socket.inet_ntoa(raw[4:8]), port


class _Hooks(ProxyHooks):
    """Routes each new session (and refuses it when there is nowhere to go)."""

    async def connect(self, session: Session) -> str | None:
        return self.proxy.route_session(session)

    async def disconnect(self, session: Session) -> None:
        await self.reset(session)


class SmtpProxy(Service):
    kind = "proxy"

    def __init__(
        self,
        node: NodeContext,
        config: FirewallConfig,
        external_address: str,
        connect_timeout: float = 5.0,
        tls: ServerTls | None = None,
        session_timeout: float = 300.0,
        mail_sizes: dict[str, int] | None = None,
    ) -> None:
        super().__init__(node)
        self.config = config
        self.mail_sizes = dict(mail_sizes or {})
        self.external_address = external_address
        self.connect_timeout = connect_timeout
        self.tls = tls
        self.trust_file = tls.trust_file if tls else node.path(TRUST_BUNDLE)
        self.server_tls: ssl.SSLContext | None = None
        self.client_tls: ssl.SSLContext | None = None
        self.smtpd = Smtpd(_Hooks(self), timeout=session_timeout)
        self._servers: list[asyncio.AbstractServer] = []
        self._sessions: set[asyncio.Task] = set()

    @property
    def mode(self) -> str:
        return self.config.proxy.mode

    def listen_addresses(self) -> dict[str, tuple[str, int]]:
        """direction -> where the proxy listens for it."""
        proxy = self.config.proxy
        out: dict[str, tuple[str, int]] = {}
        if proxy.mode == "inbound-through":
            out["inbound-through"] = ("0.0.0.0", proxy.port)
        elif proxy.mode == "inbound-to":
            out["inbound-to"] = (self.external_address, 25)
        if proxy.outbound:
            out["outbound"] = ("0.0.0.0", proxy.outbound_port)
        return out

    def _listener(self, address: tuple[str, int]) -> socket.socket:
        sock = self.node.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(64)
        except BaseException:
            sock.close()
            raise
        return sock

    async def start(self) -> None:
        if self._servers:
            return
        if self.tls is not None:
            self.tls.ensure()
            self.server_tls = self.tls.server_context()
        self.client_tls = client_context(self.trust_file)
        try:
            for direction, address in self.listen_addresses().items():
                handler = self._handler(direction)
                server = await asyncio.start_server(handler, sock=self._listener(address))
                self._servers.append(server)
        except OSError:
            await self.stop()
            raise

    def _handler(self, direction: str):
        async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            self._sessions.add(task)
            try:
                await self.smtpd.serve(reader, writer, {
                    "direction": direction, "socket": writer.get_extra_info("socket")})
            finally:
                self._sessions.discard(task)
                writer.close()  # cancelled by stop(): its wait_closed() waits for this

        return session

    async def stop(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)
        for server in servers:
            await server.wait_closed()

    async def reconfigure(self, config: FirewallConfig) -> bool:
        """Take the firewall's new config; restart (stop, then start in the new mode) only
        when its proxy part changed. True if the proxy was restarted."""
        if config.proxy == self.config.proxy:
            self.config = config
            return False
        await self.stop()
        self.config = config
        await self.start()
        return True

    async def healthy(self) -> bool:
        """Every listener is listening (a test connection would be a logged session)."""
        wanted = len(self.listen_addresses())
        if len(self._servers) != wanted:
            return False
        return all(s.is_serving() and all(
            k.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) for k in s.sockets)
            for s in self._servers)

    # ------------------------------------------------------------ routing

    def size_limit(self, route: Route) -> int:
        """The SIZE to offer for ``route``: the smallest message_size_limit of its mail
        servers that the lab runs (``mail_sizes``: address -> limit, from the topology),
        else Postfix's default; never a number of the proxy's own."""
        known = [self.mail_sizes[host] for host, _ in route.targets if host in self.mail_sizes]
        return min(known, default=MESSAGE_SIZE_LIMIT)

    def _through_target(self, dst: tuple[str, int]) -> tuple[str, int] | None:
        private = self.config.private_for(dst[0])
        if private is not None:
            return (private, dst[1])
        own = set(self.node.addresses) | {self.external_address}
        if dst[0] not in own and not dst[0].startswith("127."):
            return dst  # a public address routed behind the firewall
        return None

    def route_session(self, session: Session) -> str | None:
        """Decide where a new session goes, log it, and return a refusal or None."""
        direction, sock = session.context["direction"], session.context["socket"]
        peer = (session.client_ip, session.client_port)
        proxy = self.config.proxy
        if direction == "inbound-to":
            dst = (self.external_address, 25)
            targets = tuple((s, 25) for s in proxy.servers)
        else:
            try:
                dst = original_dst(sock)
            except OSError:
                dst = sock.getsockname()[:2]
            target = dst if direction == "outbound" else self._through_target(dst)
            if target is None:
                log_proxy(self.node, "D", peer, dst, direction)
                log_error(self.node, "smtp-proxy", f"no static NAT for {dst[0]}: session from "
                          f"{peer[0]} refused (421)")
                return "421 4.4.0 proxy: no route to mail server"
            targets = (target,)
        session.context["route"] = Route(direction, targets)
        if direction == "outbound":
            log_proxy(self.node, "X", peer, dst, direction, snat=self.external_address)
        else:
            log_proxy(self.node, "Xr", peer, dst, direction,
                      relay=targets[0] if targets else None)
        return None
