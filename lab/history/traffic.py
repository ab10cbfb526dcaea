"""The lab's background mail: a small company's traffic, from `lab up` until it stops.

Four flows, each played by the topology's roles (lab/model/roles.py), never by names:

- inbound: an outside sender's user writes to a user of the mail domain (submitted to the
  sender's mail server from the outside client, as a mail program would);
- outbound: staff write to the sender's domain (submitted to the mail server from the
  internal client);
- internal: staff write to each other;
- alert: the firewall raises an ordinary alert.

The messages go through the real servers (SMTP sessions, DNS lookups, the firewall), so
every trace they leave is the one the lab's state really causes. One task per lab sleeps
until the next message is due (a Poisson process at ``RATES`` per hour): nothing runs
between messages. A replay (lab/history/replay.py) gives it a plan for the window first.
"""
from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab.history.messages import alert_text, business_mail, people
from lab.protocols.smtpclient import SmtpError, send_message

if TYPE_CHECKING:
    from lab.model.roles import Roles
    from lab.services.host import ServiceHost

RATES = {"inbound": 6.0, "outbound": 4.0, "internal": 3.0, "alert": 1.0}  # per hour
MAX_PLANNED = 60  # messages in one replayed window at most: longer windows are quieter
RECENT = 300.0  # seconds: every flow sends once in the window's last minutes (not in the
SETTLE = 60.0  # very last one: its first attempt ends before the ticket is printed) ...
EARLY = 0.25  # ... and once in its first quarter, so its traces span the window
CONNECT_TIMEOUT = 30.0
SESSION_TIMEOUT = 120.0


@dataclass(frozen=True)
class Route:
    """How one flow's messages are written: which node submits them to which server,
    from which addresses to which."""

    client: str
    server: tuple[str, int]
    helo: str
    senders: tuple[str, ...]
    rcpts: tuple[str, ...]


def _submission(host: ServiceHost, client: str | None, server_node: str,
                server_address: str) -> tuple[str, tuple[str, int], str]:
    """(client node, server, HELO name): the client if the server relays for it, else the
    server's own node over loopback (a local mail program)."""
    mta = host.get(server_node, "smtp")
    if client is not None:
        address = str(host.topo.nodes[client].interfaces[0].address.ip)
        if mta.trusted(address):
            return client, (server_address, 25), f"[{address}]"
    return server_node, ("127.0.0.1", 25), "localhost"


def routes(host: ServiceHost, roles: Roles) -> dict[str, Route | None]:
    """Each flow's route in this topology (None where a role it needs is missing)."""
    out: dict[str, Route | None] = dict.fromkeys(RATES)
    staff = tuple(f"{u}@{roles.mail_domain}" for u in people(roles.mailboxes))
    outside = tuple(f"{u}@{roles.sender_domain}" for u in people(roles.sender_mailboxes))
    everyone = tuple(f"{u}@{roles.mail_domain}" for u in roles.mailboxes)
    if roles.sender and roles.sender_address and staff and outside:
        client, server, helo = _submission(host, roles.outside_client, roles.sender,
                                           roles.sender_address)
        out["inbound"] = Route(client, server, helo, outside, everyone)
    if roles.mail_server and roles.mail_private and staff:
        client, server, helo = _submission(host, roles.internal_client, roles.mail_server,
                                           roles.mail_private)
        if outside:
            out["outbound"] = Route(client, server, helo, staff, outside)
        if len(everyone) > 1:
            out["internal"] = Route(client, server, helo, staff, everyone)
    if roles.firewall and "alerts" in host.topo.nodes[roles.firewall].services:
        out["alert"] = Route(roles.firewall, ("", 0), "", (), ())
    return out


def plan(rng: random.Random, flows: list[str], window: float,
         lead: float = 0.0) -> list[tuple[float, str]]:
    """The messages of a replay: (seconds from its start, flow), in order, over ``lead``
    seconds of ordinary traffic and then the ``window`` of the trouble. A Poisson process
    at ``RATES`` (scaled down to ``MAX_PLANNED`` messages for long replays), plus for each
    flow one message in the lead, one early in the window and one in its last minutes,
    so that every flow's traces span the window."""
    span = lead + window
    if not flows or span <= 0:
        return []
    rate = sum(RATES[f] for f in flows) / 3600
    scale = min(1.0, MAX_PLANNED / (rate * span))
    events: list[tuple[float, str]] = []
    at = rng.expovariate(rate * scale)
    while at < span:
        events.append((at, _pick(rng, flows)))
        at += rng.expovariate(rate * scale)
    recent = min(RECENT, window * EARLY)
    for flow in flows:
        if lead > 0:
            events.append((rng.uniform(0, lead), flow))
        if window > 0:
            events.append((lead + rng.uniform(0, window * EARLY), flow))
            events.append((span - rng.uniform(min(SETTLE, recent / 2), recent), flow))
    return sorted(events)


def _pick(rng: random.Random, flows: list[str]) -> str:
    return rng.choices(flows, weights=[RATES[f] for f in flows])[0]


class Traffic:
    """The background mail of one lab: one task, asleep until its next message."""

    def __init__(self, host: ServiceHost, roles: Roles, rate_scale: float = 1.0) -> None:
        self.host = host
        self.roles = roles
        self.rate_scale = rate_scale  # the steady rates x this (benchmarks)
        self.routes = routes(host, roles)
        self.flows = [f for f, r in self.routes.items() if r is not None]
        self.sent = 0  # messages handed to a server (or alerts raised)
        self._task: asyncio.Task | None = None
        self._sending: set[asyncio.Task] = set()

    def start(self, seed: str, window: float = 0.0, lead: float = 0.0) -> None:
        """(Re)start the flows from ``seed``: the plan of a replay (``lead`` seconds, then
        the ``window``) first, then the steady rate."""
        if self._task is not None:
            self._task.cancel()
        rng = random.Random(seed)
        self._task = asyncio.get_running_loop().create_task(
            self._run(rng, plan(rng, self.flows, window, lead)))

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._sending) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None

    async def _run(self, rng: random.Random, events: list[tuple[float, str]]) -> None:
        if not self.flows:
            return
        loop = asyncio.get_running_loop()
        start = loop.time()
        for at, flow in events:
            await asyncio.sleep(max(0.0, start + at - loop.time()))
            self._send(rng, flow)
        rate = sum(RATES[f] for f in self.flows) / 3600 * self.rate_scale
        while rate > 0:
            await asyncio.sleep(rng.expovariate(rate))
            self._send(rng, _pick(rng, self.flows))

    def _send(self, rng: random.Random, flow: str) -> None:
        """Compose now (the generator's draws stay in order), deliver in the background."""
        route = self.routes[flow]
        assert route is not None
        if flow == "alert":
            lan = self.roles.internal_client_address or self.roles.fw_private or "127.0.0.1"
            subject, body = alert_text(rng, lan)
            self.host.get(route.client, "alerts").raise_alert(subject, body)
            self.sent += 1
            return
        sender = rng.choice(route.senders)
        rcpt = rng.choice([r for r in route.rcpts if r != sender] or list(route.rcpts))
        message = business_mail(rng, sender, rcpt, self.host.clock.now())
        task = asyncio.get_running_loop().create_task(self._submit(route, sender, rcpt,
                                                                   message))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _submit(self, route: Route, sender: str, rcpt: str, message: bytes) -> None:
        """One mail program's submission; what goes wrong is the servers' to log."""
        sock = self.host.contexts[route.client].socket()
        try:
            await send_message(sock, route.server, sender, [rcpt], message,
                               helo_name=route.helo, connect_timeout=CONNECT_TIMEOUT,
                               timeout=SESSION_TIMEOUT)
            self.sent += 1
        except (SmtpError, OSError, TimeoutError):
            pass
