"""End-to-end probes: does mail really get through? The same three for every lab, each
played by the topology's roles (lab/model/roles.py):

- inbound: the outside sender's MTA sends to the test mailbox of the mail domain (MX
  lookup through the internet resolver, the firewall, the mail server) and the message
  must land in the mail server's mailbox;
- outbound: the internal client submits to the mail server for the sender's domain, the
  mail server delivers through the firewall's NAT, and it must land in the sender's mailbox;
- alert: the firewall raises an alert that must reach its recipient's mailbox.

Each probe sends a message with a fresh token and polls the target mailbox, without
cancelling the senders: a message that cannot be delivered stays queued, as real mail
would. Runs on the supervisor's loop, using the services the lab runs.
"""
from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from email.message import EmailMessage

from lab.errors import LabError
from lab.model.roles import Roles, derive_roles
from lab.protocols import mailq
from lab.protocols.smtpclient import SmtpError, send_message
from lab.services.host import ServiceHost

DEFAULT_TIMEOUT = 2.0  # a healthy path delivers in ~0.2 s


@dataclass
class ProbeResult:
    name: str
    passed: bool
    detail: str
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


_pending: set[asyncio.Task] = set()


def _background(coro) -> asyncio.Future:
    """Let a delivery run on after the probe has its verdict (the mailbox decides)."""
    task = asyncio.ensure_future(coro)
    _pending.add(task)
    task.add_done_callback(_pending.discard)
    return task


def _message(sender: str, rcpt: str, token: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = rcpt
    msg["Subject"] = f"lab probe {token}"
    msg.set_content(f"probe token {token}\n")
    return msg.as_bytes()


async def _submit(host: ServiceHost, client: str, server: tuple[str, int], sender: str,
                  rcpt: str, token: str) -> None:
    ctx = host.contexts[client]
    await send_message(ctx.socket(), server, sender, [rcpt], _message(sender, rcpt, token),
                       helo_name=f"{client}.probe", connect_timeout=3, timeout=5)


GRACE = 0.3  # after the sender's attempt ended: time for a relay to hand the message on


async def _landed(host: ServiceHost, node: str, mailbox: str, token: str, timeout: float,
                  attempt: asyncio.Future) -> bool:
    """Poll the mailbox until the token is there, the timeout runs out, or the sender's
    delivery attempt has ended (plus a grace) without it: then it failed, no need to wait."""
    path = host.contexts[node].path(f"/var/mail/{mailbox}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if token in path.read_text(errors="replace"):
                return True
        except FileNotFoundError:
            pass
        if attempt.done():
            deadline = min(deadline, time.monotonic() + GRACE)
        await asyncio.sleep(0.02)
    return False


async def _mail_probe(host: ServiceHost, name: str, client: str, server: tuple[str, int],
                      sender: str, rcpt: str, relay: str, target: str, timeout: float
                      ) -> ProbeResult:
    started = time.monotonic()
    token = secrets.token_hex(6)
    try:
        await _submit(host, client, server, sender, rcpt, token)
    except (TimeoutError, SmtpError, OSError) as e:
        return ProbeResult(name, False, f"submission to {server[0]} failed: {e}",
                           time.monotonic() - started)
    relay_mta = host.get(relay, "smtp")
    attempt = _background(relay_mta.flush())
    mailbox = rcpt.split("@")[0]
    ok = await _landed(host, target, mailbox, token, timeout, attempt)
    detail = (f"delivered to {target}:/var/mail/{mailbox}" if ok else
              f"not in {target}:/var/mail/{mailbox}; {_last_error(host, relay_mta, token)}")
    return ProbeResult(name, ok, detail, time.monotonic() - started)


def _last_error(host: ServiceHost, first, token: str) -> str:
    """Where the probe message waits and why: the first hop's queue, else the queue of
    any mail server along the way (an inbound relay, a backup MX, a smarthost) holding
    it."""
    mtas = [first] + [svc for _node, svc in host.all() if svc.kind == "smtp" and svc is not first]
    for mta in mtas:
        for entry in mta.queue():
            if mta is not first and not _holds(mta, entry, token):
                continue
            for rcpt, reason in entry.reasons.items():
                return f"{mta.node.name} queue: {rcpt}: {reason}"
            if mta is not first:
                return f"waiting in {mta.node.name}'s queue (a delivery attempt under way)"
    return f"nothing in {first.node.name}'s queue"


def _holds(mta, entry, token: str) -> bool:
    try:
        _entry, message = mailq.read_entry(mta.queue_manager.spool / entry.queue / entry.queue_id)
    except (OSError, ValueError):
        return False
    return token.encode() in message


def _roles(host: ServiceHost) -> Roles:
    return derive_roles(host.topo)


async def inbound(host: ServiceHost, timeout: float = DEFAULT_TIMEOUT) -> ProbeResult:
    r = _roles(host)
    sender, server = r.need("sender"), r.need("mail_server")
    return await _mail_probe(host, "inbound", sender, ("127.0.0.1", 25),
                             f"probe@{r.need('sender_domain')}",
                             f"{r.need('mailbox')}@{r.need('mail_domain')}", sender, server,
                             timeout)


async def outbound(host: ServiceHost, timeout: float = DEFAULT_TIMEOUT) -> ProbeResult:
    r = _roles(host)
    server = r.need("mail_server")
    return await _mail_probe(host, "outbound", r.need("internal_client"),
                             (r.need("mail_private"), 25), f"probe@{r.need('mail_domain')}",
                             f"{r.need('sender_mailbox')}@{r.need('sender_domain')}", server,
                             r.need("sender"), timeout)


async def alert(host: ServiceHost, timeout: float = DEFAULT_TIMEOUT) -> ProbeResult:
    started = time.monotonic()
    r = _roles(host)
    token = secrets.token_hex(6)
    fw, server = r.need("firewall"), r.need("mail_server")
    mailbox = r.need("alert_recipient").rpartition("@")[0]
    mailer = host.get(fw, "alerts")
    mailer.raise_alert(f"lab probe {token}", f"probe token {token}\n")
    attempt = _background(mailer.flush())
    ok = await _landed(host, server, mailbox, token, timeout, attempt)
    detail = (f"delivered to {server}:/var/mail/{mailbox}" if ok else
              f"not in {server}:/var/mail/{mailbox}; alert still spooled on {fw}")
    return ProbeResult("alert", ok, detail, time.monotonic() - started)


PROBES: dict[str, Callable[..., Awaitable[ProbeResult]]] = {
    "inbound": inbound,
    "outbound": outbound,
    "alert": alert,
}


async def run_probes(host: ServiceHost, names: list[str] | None = None,
                     timeout: float = DEFAULT_TIMEOUT) -> list[ProbeResult]:
    names = names or list(PROBES)
    unknown = [n for n in names if n not in PROBES]
    if unknown:
        raise LabError(f"unknown probe {', '.join(unknown)}", hint="probes: " + ", ".join(PROBES))
    return list(await asyncio.gather(*(_guarded(n, host, timeout) for n in names)))


async def _guarded(name: str, host: ServiceHost, timeout: float) -> ProbeResult:
    try:
        return await PROBES[name](host, timeout)
    except LabError as e:
        return ProbeResult(name, False, e.message, 0.0)
