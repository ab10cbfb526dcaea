"""What the firewall's SMTP proxy does inside one SMTP session (its smtpd hooks).

The proxy answers the sender itself, with the lab's SMTP engine, and checks every step
with the mail server behind it before it answers, as a real SMTP proxy (or Postfix's
before-queue ``smtpd_proxy_filter``) does: at MAIL it opens a session to the first
reachable target and passes the MAIL command on, each RCPT gets the server's own answer
(so one unknown recipient is refused alone, and the sender never retries the others),
and the message goes on with the proxy's Received line on top. The null sender
(``MAIL FROM:<>``, RFC 5321 4.5.5) passes as it is.
"""
from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab.protocols.fwlog import log_error
from lab.protocols.mbox import received_header
from lab.protocols.nftrules import PROXY_MARK
from lab.protocols.smtpclient import Reply, SmtpClient, SmtpError, TlsPolicy
from lab.protocols.smtpd import Session, SmtpdHooks

if TYPE_CHECKING:
    from lab.services.proxy import SmtpProxy

NO_SERVER = "451 4.4.1 Error: no mail server reachable"


@dataclass(frozen=True)
class Route:
    """Where one proxied session goes: the direction and the servers to try in turn."""

    direction: str  # inbound-through | inbound-to | outbound
    targets: tuple[tuple[str, int], ...]


class ProxyHooks(SmtpdHooks):
    """The proxy's side of each session; per-session state lives in ``session.context``
    (``route``: a Route; ``upstream``: the open SmtpClient)."""

    def __init__(self, proxy: SmtpProxy) -> None:
        self.proxy = proxy

    @property
    def hostname(self) -> str:  # type: ignore[override]
        return self.proxy.config.proxy.hostname

    def size_limit(self, session: Session) -> int:
        """What the servers behind this session accept (see ``SmtpProxy.size_limit``)."""
        return self.proxy.size_limit(session.context["route"])

    def tls_context(self) -> ssl.SSLContext | None:
        return self.proxy.server_tls

    async def mail(self, session: Session, sender: str) -> str:
        route: Route = session.context["route"]
        allowed = self.proxy.config.proxy.outbound_senders
        domain = sender.rpartition("@")[2].lower().rstrip(".")
        if route.direction == "outbound" and allowed and sender and domain not in allowed:
            return f"554 5.7.1 <{sender}>: Sender address rejected: Access denied"
        upstream = await self._open(session, route)
        if upstream is None:
            return NO_SERVER
        session.context["upstream"] = upstream
        reply = await upstream.mail(sender)
        if reply.code != 250:
            await self._close(session)
        return str(reply)

    async def rcpt(self, session: Session, address: str) -> str:
        route: Route = session.context["route"]
        domains = self.proxy.config.proxy.domains
        domain = address.rpartition("@")[2].strip().rstrip(".").lower()
        if route.direction != "outbound" and domains and domain not in domains:
            return f"554 5.7.1 <{address}>: Relay access denied"
        upstream: SmtpClient | None = session.context.get("upstream")
        if upstream is None:
            return NO_SERVER
        return str(await self._step(session, upstream.rcpt(address)))

    async def data(self, session: Session, content: bytes) -> str:
        upstream: SmtpClient | None = session.context.get("upstream")
        if upstream is None:
            return NO_SERVER
        reply = await self._step(session, upstream.command("DATA"))
        if reply.code != 354:
            return str(reply)
        proto = ("ESMTPS" if session.tls else "ESMTP") if session.proto == "ESMTP" else "SMTP"
        clock = self.proxy.node.clock
        header = received_header(session.helo or "unknown", session.client_ip, self.hostname,
                                 f"{int(clock.time() * 1000) & 0xFFFFFFFFFF:010X}", proto,
                                 list(session.rcpts), clock.now(),
                                 software="netguard smtp proxy")
        return str(await self._step(session, upstream.body(header.encode() + content)))

    async def reset(self, session: Session) -> None:
        await self._close(session)

    # ---- the session to the server behind ---------------------------------------------

    async def _step(self, session: Session, command):
        try:
            return await command
        except (ConnectionError, OSError, ssl.SSLError, TimeoutError) as e:
            await self._close(session)
            log_error(self.proxy.node, "smtp-proxy", f"relay session lost: {e or 'timed out'}")
            return Reply(451, "4.4.2 Error: lost connection with mail server")

    async def _open(self, session: Session, route: Route) -> SmtpClient | None:
        for target in route.targets:
            sock = self.proxy.node.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, PROXY_MARK)
            tls = TlsPolicy("may", self.proxy.client_tls, self.proxy.trust_file, target[0])
            try:
                return await SmtpClient.open(sock, target, helo_name=self.hostname,
                                             peer=f"{target[0]}[{target[0]}]", tls=tls,
                                             connect_timeout=self.proxy.connect_timeout)
            except (SmtpError, ConnectionError, OSError, TimeoutError) as e:
                log_error(self.proxy.node, "smtp-proxy", f"relay to {target[0]}:{target[1]} "
                          f"failed: {getattr(e, 'detail', None) or e or 'timed out'}")
        log_error(self.proxy.node, "smtp-proxy", f"session from {session.client_ip}: no mail "
                  f"server reachable ({NO_SERVER[:3]})")
        return None

    async def _close(self, session: Session) -> None:
        upstream: SmtpClient | None = session.context.pop("upstream", None)
        if upstream is not None:
            await upstream.quit()
            await upstream.close()
