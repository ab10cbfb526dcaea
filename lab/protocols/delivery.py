"""Delivery agents of the MTA: ``local`` (append to a mailbox) and ``smtp`` (the next hop
of a transport entry or the relayhost, else an MX lookup; then SMTP to each address in
turn, with STARTTLS as the destination's TLS level says).

Each returns an ``Outcome`` per recipient; the queue manager (:mod:`lab.protocols.mtaqueue`)
logs it and decides what happens to the message.
"""
from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab.protocols.mbox import MailboxBusy, append_locked, mailbox_owner, mbox_entry
from lab.protocols.mxlookup import DnsError, MxHost, lookup_a, lookup_mx
from lab.protocols.smtpclient import Reply, SmtpError, TlsPolicy, send_message

if TYPE_CHECKING:
    from lab.protocols.mailq import QueueEntry
    from lab.services.mta import MtaService

MAIL_DIR = "/var/mail"


@dataclass
class Outcome:
    """What one delivery attempt did for one recipient."""

    status: str  # sent | deferred | bounced
    relay: str
    dsn: str
    detail: str
    setup: float = 0.0  # Postfix's delays "c": connection set-up
    transfer: float = 0.0  # delays "d": transmission
    tls: str = ""  # the TLS summary to log, if the session used TLS


def dsn_of(reply: Reply) -> str:
    """The enhanced status code in a reply, or one derived from its class."""
    m = re.match(r"^([245]\.\d{1,3}\.\d{1,3})\b", reply.text)
    if m:
        return m.group(1)
    return {2: "2.0.0", 4: "4.0.0"}.get(reply.code // 100, "5.0.0")


async def deliver_local(mta: MtaService, entry: QueueEntry, message: bytes,
                        rcpt: str) -> Outcome:
    user = mta.local_user(rcpt)
    assert user is not None
    loop = asyncio.get_running_loop()  # its time() is the lab's clock
    started = loop.time()
    if user not in mta.config.users:
        return Outcome("bounced", "local", "5.1.1", f"unknown user: \"{user}\"")
    path = mta.node.path(f"{MAIL_DIR}/{user}")
    data = mbox_entry(entry.sender, rcpt, message, mta.node.clock.time())
    try:
        await append_locked(path, data, owner=mailbox_owner(mta.config.users, user))
    except MailboxBusy:
        return Outcome(
            "deferred", "local", "4.2.0",
            f"cannot update mailbox {MAIL_DIR}/{user} for user {user}. "
            "unable to lock for exclusive access: Resource temporarily unavailable",
        )
    except OSError as e:
        return Outcome("deferred", "local", "4.2.0",
                       f"cannot update mailbox {MAIL_DIR}/{user} for user {user}. "
                       f"{e.strerror or e}")
    return Outcome("sent", "local", "2.0.0", "delivered to mailbox",
                   transfer=loop.time() - started)


def _is_address(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


async def mail_hosts(mta: MtaService, domain: str) -> tuple[list[MxHost], int]:
    """Where mail for ``domain`` goes and on which port, as Postfix's smtp client finds it:
    the next hop of its transport entry or of the relayhost (``[host]``: that host's
    address, no MX lookup), else the domain's MX hosts. In an MX list that names this
    server itself, only the hosts it prefers to itself are kept (a backup MX hands mail
    to the primary, never to itself or to another backup); DnsError if none is found."""
    hop = mta.config.next_hop(domain)
    port = hop.port if hop is not None and hop.port != 25 else mta.remote_port
    kw = {"port": mta.dns_port, "timeout": mta.dns_timeout}
    if hop is not None and not hop.mx:
        addrs = [hop.host] if _is_address(hop.host) else await lookup_a(mta.node, hop.host, **kw)
        return [MxHost(0, hop.host, addrs)], port
    name = hop.host if hop is not None else domain
    mxs = await lookup_mx(mta.node, name, **kw)
    own = [mx.preference for mx in mxs if set(mx.addresses) & set(mta.node.addresses)]
    if own:
        mxs = [mx for mx in mxs if mx.preference < min(own)]
    return mxs, port


async def deliver_remote(mta: MtaService, entry: QueueEntry, message: bytes, domain: str,
                         rcpts: list[str]) -> dict[str, Outcome]:
    """One attempt for ``rcpts`` of ``domain``: each mail host's address in turn until one
    answers."""
    loop = asyncio.get_running_loop()
    started = loop.time()

    def every(o: Outcome) -> dict[str, Outcome]:
        if not o.setup:  # failed before a transfer: the time went into DNS and connecting
            o.setup = loop.time() - started
        return {r: o for r in rcpts}

    try:
        mxs, port = await mail_hosts(mta, domain)
    except DnsError as e:
        if e.temporary:
            return every(Outcome("deferred", "none", "4.4.3", e.reason))
        return every(Outcome("bounced", "none", "5.4.4", e.reason))
    if not mxs:
        return every(Outcome("bounced", "none", "5.4.6",
                             f"mail for {domain} loops back to myself"))
    last = Outcome("deferred", "none", "4.4.1", f"delivery to {domain} failed")
    for mx in mxs:
        for addr in mx.addresses:
            relay = f"{mx.name}[{addr}]:{port}"
            if addr in mta.node.addresses and port == mta.port:
                return every(Outcome("bounced", relay, "5.4.6",
                                     f"mail for {domain} loops back to myself"))
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            tls = TlsPolicy(mta.config.tls_level(domain), mta.client_tls(), mta.trust_file,
                            mx.name)
            try:
                result = await send_message(
                    mta.node.socket(family, socket.SOCK_STREAM), (addr, port),
                    entry.sender, rcpts, message, helo_name=mta.config.hostname,
                    connect_timeout=mta.smtp_connect_timeout, tls=tls, peer=f"{mx.name}[{addr}]",
                )
            except SmtpError as e:
                failed = _failure(e, mx.name, addr, port, relay)
                if e.reply is None or e.stage in ("tls", "greeting") and failed.status != "bounced":
                    last = failed  # no answer, or this host will not do: try the next one
                    continue
                return every(failed)
            setup = loop.time() - started - result.transfer
            out: dict[str, Outcome] = {}
            for r in result.accepted:
                assert result.reply is not None
                out[r] = Outcome("sent", relay, dsn_of(result.reply), str(result.reply),
                                 setup, result.transfer, result.tls)
            for r, reply in result.refused.items():
                status = "deferred" if reply.temporary else "bounced"
                out[r] = Outcome(status, relay, dsn_of(reply),
                                 f"host {mx.name}[{addr}] said: {reply} "
                                 f"(in reply to RCPT TO command)", setup, result.transfer,
                                 result.tls)
            return out
    return every(last)


def _failure(e: SmtpError, name: str, addr: str, port: int, relay: str) -> Outcome:
    """The outcome of a failed session, in Postfix's words."""
    if e.stage == "tls":
        return Outcome("deferred", relay, e.dsn or dsn_of(e.reply or Reply(400, "")), e.detail)
    if e.reply is None:
        if e.stage == "connect":
            detail = f"connect to {name}[{addr}]:{port}: {e.detail}"
        else:
            detail = f"lost connection with {name}[{addr}] ({e.detail})"
        return Outcome("deferred", "none", "4.4.1", detail)
    if e.stage == "greeting" and e.reply.temporary:
        return Outcome("deferred", relay, dsn_of(e.reply),
                       f"host {name}[{addr}] refused to talk to me: {e.reply}")
    status = "deferred" if e.reply.temporary else "bounced"
    return Outcome(status, relay, dsn_of(e.reply),
                   f"host {name}[{addr}] said: {e.reply} (in reply to {e.stage} command)")
