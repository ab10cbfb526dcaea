"""The firewall's SMTP proxy, on the supervisor's asyncio loop.

- ``inbound-through``: nftables redirects SMTP arriving on the external interface to
  ``proxy.port``. For each session the proxy reads the original destination
  (SO_ORIGINAL_DST), maps it through the static NAT to the private address, connects
  there and relays the session byte for byte (log ``X``). Without a static NAT for the
  address: ``421 4.4.0 proxy: no route to mail server`` (log ``D``).
- ``inbound-to``: the proxy listens on the firewall's external address port 25, speaks
  SMTP (aiosmtpd's protocol) up to the end of the message and relays it to the first
  reachable of ``proxy.servers`` (log ``Xr``). A recipient outside ``proxy.domains``:
  ``554 5.7.1 Relay access denied``; no server reachable: ``451 4.4.1`` (log ``D``).

Sockets come only from ``node.socket()``; relay connections carry the packet mark
``PROXY_MARK`` that the firewall's output chain lets through.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import struct

from aiosmtpd.smtp import SMTP, Envelope, Session

from lab.model.firewall import FirewallConfig
from lab.services.base import NodeContext, Service
from lab.services.fwlog import log_error, log_proxy
from lab.services.nftrules import PROXY_MARK
from lab.services.smtpclient import SmtpError, read_reply, send_message

log = logging.getLogger(__name__)

SO_ORIGINAL_DST = 80
SOL_IP = 0


def original_dst(sock) -> tuple[str, int]:
    """The pre-NAT destination of a redirected TCP connection (sockaddr_in)."""
    raw = sock.getsockopt(SOL_IP, SO_ORIGINAL_DST, 16)
    port = struct.unpack_from("!H", raw, 2)[0]
    return socket.inet_ntoa(raw[4:8]), port


class SmtpRelayError(Exception):
    """The mail server refused the relayed message."""


async def smtp_send(
    node: NodeContext,
    server: tuple[str, int],
    mail_from: str,
    rcpt_tos: list[str],
    data: bytes,
    helo: str,
    timeout: float = 10.0,
    mark: int | None = PROXY_MARK,
) -> str:
    """Relay one message to ``server`` from a socket in ``node`` carrying the proxy's mark
    (the ruleset lets the proxy's own connections through); returns the final reply.

    Raises OSError / TimeoutError when the server is unreachable and SmtpRelayError when
    it refuses the message or a recipient.
    """
    sock = node.socket(socket.AF_INET, socket.SOCK_STREAM)
    if mark is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
    try:
        result = await send_message(sock, server, mail_from, rcpt_tos, data, helo_name=helo,
                                    connect_timeout=timeout, timeout=timeout)
    except SmtpError as e:
        if e.reply is None and e.stage == "connect":
            raise OSError(e.detail) from None
        raise SmtpRelayError(str(e)) from None
    if result.reply is None or result.refused:
        refused = ", ".join(f"{r}: {reply}" for r, reply in result.refused.items())
        raise SmtpRelayError(f"recipients refused: {refused}")
    return str(result.reply)


class _RelayHandler:
    """aiosmtpd handler for inbound-to: check recipients, relay at end of DATA."""

    def __init__(self, proxy: SmtpProxy) -> None:
        self.proxy = proxy

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        domains = self.proxy.config.proxy.domains
        domain = address.rpartition("@")[2].strip().rstrip(".").lower()
        if domains and domain not in domains:
            return "554 5.7.1 Relay access denied"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return await self.proxy.relay_message(session.peer, envelope)


class SmtpProxy(Service):
    kind = "proxy"

    def __init__(
        self,
        node: NodeContext,
        config: FirewallConfig,
        external_address: str,
        connect_timeout: float = 5.0,
        hostname: str | None = None,
    ) -> None:
        super().__init__(node)
        self.config = config
        self.external_address = external_address
        self.connect_timeout = connect_timeout
        self.hostname = hostname or node.name
        self._server: asyncio.AbstractServer | None = None
        self._sessions: set[asyncio.Task] = set()

    @property
    def mode(self) -> str:
        return self.config.proxy.mode

    @property
    def listen_address(self) -> tuple[str, int] | None:
        if self.mode == "inbound-through":
            return ("0.0.0.0", self.config.proxy.port)
        if self.mode == "inbound-to":
            return (self.external_address, 25)
        return None

    def _listener(self) -> socket.socket:
        sock = self.node.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(self.listen_address)
            sock.listen(64)
        except BaseException:
            sock.close()
            raise
        return sock

    async def start(self) -> None:
        if self._server is not None or self.mode == "none":
            return
        loop = asyncio.get_running_loop()
        sock = self._listener()
        if self.mode == "inbound-through":
            self._server = await asyncio.start_server(self._through_session, sock=sock)
        else:
            handler = _RelayHandler(self)
            self._server = await loop.create_server(
                lambda: SMTP(handler, hostname=self.hostname, ident="netguard smtp proxy"),
                sock=sock,
            )

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)
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
        if self.mode == "none":
            return True
        if self._server is None or not self._server.is_serving():
            return False
        if self.mode == "inbound-through":
            # a test connection would be a (logged) session of its own: check the socket
            return all(s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                       for s in self._server.sockets)
        loop = asyncio.get_running_loop()
        sock = self.node.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (self.external_address, 25)), 2)
            reader, writer = await asyncio.open_connection(sock=sock)
            try:
                reply = await asyncio.wait_for(read_reply(reader), 2)
                writer.write(b"QUIT\r\n")
                await writer.drain()
                return reply.code == 220
            finally:
                writer.close()
        except (TimeoutError, OSError):
            sock.close()
            return False

    # ------------------------------------------------------------ inbound-through

    def _target(self, dst: tuple[str, int]) -> tuple[str, int] | None:
        private = self.config.private_for(dst[0])
        if private is not None:
            return (private, dst[1])
        own = set(self.node.addresses) | {self.external_address}
        if dst[0] not in own and not dst[0].startswith("127."):
            return dst  # a public address routed behind the firewall
        return None

    async def _through_session(self, reader: asyncio.StreamReader,
                               writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._sessions.add(task)
        try:
            await self._through(reader, writer)
        except (TimeoutError, OSError) as e:
            log.debug("%s: proxy session: %s", self.node.name, e)
        finally:
            self._sessions.discard(task)
            writer.close()

    async def _through(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")[:2]
        sock = writer.get_extra_info("socket")
        try:
            dst = original_dst(sock)
        except OSError:
            dst = writer.get_extra_info("sockname")[:2]
        target = self._target(dst)
        if target is None:
            log_proxy(self.node, "D", peer, dst, self.mode)
            log_error(self.node, "smtp-proxy", f"no static NAT for {dst[0]}: session from "
                      f"{peer[0]} refused (421)")
            writer.write(b"421 4.4.0 proxy: no route to mail server\r\n")
            await writer.drain()
            return
        loop = asyncio.get_running_loop()
        up = self.node.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            up.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, PROXY_MARK)
            await asyncio.wait_for(loop.sock_connect(up, target), self.connect_timeout)
        except (TimeoutError, OSError) as e:
            up.close()
            log_proxy(self.node, "D", peer, dst, self.mode, relay=target)
            log_error(self.node, "smtp-proxy", f"connect to mail server {target[0]}:{target[1]}"
                      f" failed: {e or 'timed out'}; session from {peer[0]} refused (421)")
            writer.write(b"421 4.4.1 proxy: mail server not responding\r\n")
            await writer.drain()
            return
        up_reader, up_writer = await asyncio.open_connection(sock=up)
        log_proxy(self.node, "X", peer, dst, self.mode, relay=target)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()

    # ------------------------------------------------------------ inbound-to

    async def relay_message(self, peer: tuple[str, int], envelope: Envelope) -> str:
        data = envelope.original_content or b""
        if isinstance(envelope.content, str) and not data:
            data = envelope.content.encode("utf-8", "surrogateescape")
        src = (peer[0], peer[1]) if peer else ("0.0.0.0", 0)
        dst = (self.external_address, 25)
        for server in self.config.proxy.servers:
            try:
                await smtp_send(self.node, (server, 25), envelope.mail_from or "",
                                list(envelope.rcpt_tos), data, self.hostname,
                                timeout=self.connect_timeout)
            except (TimeoutError, OSError, SmtpRelayError) as e:
                log_error(self.node, "smtp-proxy", f"relay to {server}:25 failed: "
                          f"{e or 'timed out'}")
                continue
            log_proxy(self.node, "Xr", src, dst, self.mode, relay=(server, 25))
            return "250 2.0.0 OK: relayed"
        log_proxy(self.node, "D", src, dst, self.mode)
        log_error(self.node, "smtp-proxy", f"message from {src[0]} not relayed: no mail "
                  f"server in the servers list accepted it (451)")
        return "451 4.4.1 proxy: no mail server reachable"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()
