"""What the repair checks share: asking the lab's own network from inside its nodes.

Each helper runs on the supervisor's loop without blocking it (the lab's DNS and SMTP
servers run on that same loop): DNS queries and SMTP sessions go through sockets made in
the asking node's namespace, commands through a thread. Each returns what it saw in a
form a ``Repair.how`` can quote.
"""
from __future__ import annotations

import asyncio
import json
import random
import re
import socket
from dataclasses import dataclass, field
from email.message import EmailMessage

from dnslib import QTYPE, RCODE, DNSHeader, DNSQuestion, DNSRecord

from lab.faults.base import LabContext, Repair
from lab.protocols.smtpclient import SmtpError, send_message

DNS_TIMEOUT = 2.0


async def run_async(lab: LabContext, node: str, argv: list[str],
                    stdin: str | None = None) -> tuple[int, str, str]:
    """``lab.run`` in a thread, so that the lab's services keep answering meanwhile."""
    return await asyncio.to_thread(lab.run, node, argv, stdin)


# --- DNS -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DnsAnswer:
    status: str  # NOERROR, NODATA, NXDOMAIN, SERVFAIL, REFUSED, ..., timeout
    answers: tuple[str, ...] = ()  # the data of the answer's records of the asked type
    aa: bool = False
    glue: tuple[str, ...] = ()  # a referral's addresses (A records in the additional section)

    def text(self) -> str:
        return " ".join(self.answers) if self.answers else self.status


async def dns_query(lab: LabContext, client: str, server: str, name: str, rtype: str,
                    recurse: bool = True, timeout: float = DNS_TIMEOUT) -> DnsAnswer:
    """One query from ``client``'s namespace to ``server`` (UDP)."""
    qtype = getattr(QTYPE, rtype)
    request = DNSRecord(DNSHeader(id=random.randrange(65536), rd=int(recurse)),
                        q=DNSQuestion(name, qtype))
    loop = asyncio.get_running_loop()
    sock = lab.node(client).socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    try:
        await loop.sock_connect(sock, (server, 53))
        await loop.sock_sendall(sock, request.pack())
        async with asyncio.timeout(timeout):
            while True:
                reply = DNSRecord.parse(await loop.sock_recv(sock, 65535))
                if reply.header.id == request.header.id:
                    break
    except (OSError, TimeoutError):
        return DnsAnswer("timeout")
    finally:
        sock.close()
    rcode = RCODE.get(reply.header.rcode)
    data = tuple(sorted(_rdata(rr) for rr in reply.rr if rr.rtype == qtype))
    if rcode == "NOERROR" and not data:
        rcode = "NODATA"
    glue = tuple(sorted(str(rr.rdata) for rr in reply.ar if rr.rtype == QTYPE.A))
    return DnsAnswer(str(rcode), data, bool(reply.header.aa), glue)


def _rdata(rr) -> str:
    text = str(rr.rdata)
    return text.lower() if rr.rtype in (QTYPE.MX, QTYPE.NS, QTYPE.CNAME) else text


@dataclass(frozen=True)
class View:
    """What one server hands out: the public authoritative server (asked without
    recursion) or an outside resolver."""

    label: str
    server: str
    recurse: bool
    answer: DnsAnswer


@dataclass
class DnsViews:
    """One question asked of the public authoritative server and of every outside
    resolver: what each hands out."""

    name: str
    rtype: str
    views: list[View] = field(default_factory=list)

    def all(self, ok) -> bool:
        return all(ok(v.answer) for v in self.views)

    def describe(self) -> str:
        return "; ".join(f"{v.label}: {v.answer.text()}" for v in self.views)


async def public_views(lab: LabContext, name: str, rtype: str) -> DnsViews:
    """``name``/``rtype`` as the public authoritative server publishes it and as each
    outside resolver hands it out, asked from the outside client."""
    roles = lab.roles
    client = roles.need("outside_client")
    asks = [(f"{roles.need('public_dns')} (authoritative)", roles.need("public_dns_address"),
             False)]
    asks += [(node, node_address(lab, node), True) for node in roles.public_resolvers]
    answers = await asyncio.gather(*(dns_query(lab, client, addr, name, rtype, recurse)
                                     for _, addr, recurse in asks))
    return DnsViews(name, rtype, [View(*ask, a) for ask, a in zip(asks, answers)])


def node_address(lab: LabContext, node: str) -> str:
    """The node's first address (a server's, where a single-homed node listens)."""
    return str(lab.topo.nodes[node].interfaces[0].address.ip)


# --- TCP, SMTP, ICMP ----------------------------------------------------------------------


async def tcp_connect(lab: LabContext, client: str, host: str, port: int,
                      timeout: float = 2.0) -> str:
    """connected, refused, timeout or unreachable: a TCP handshake from ``client``."""
    loop = asyncio.get_running_loop()
    sock = lab.node(client).socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout)
        return "connected"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    except OSError:
        return "unreachable"
    finally:
        sock.close()


async def tcp_passes(lab: LabContext, client: str, host: str, port: int,
                     who: str = "") -> Repair:
    """Repaired if a TCP handshake from ``client`` to ``host``:``port`` is answered, either
    way (accepted, or refused by the host itself): nothing in between drops it any more."""
    result = await tcp_connect(lab, client, host, port)
    return Repair(result in ("connected", "refused"),
                  f"a TCP connection from {who or client} to {host} port {port}: {result}")


async def smtp_accepts(lab: LabContext, client: str, host: str, mail_from: str, rcpt: str,
                       timeout: float = 6.0) -> tuple[bool, str]:
    """Send a short message from ``client`` through ``host``:25; (accepted, what was said)."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = mail_from, rcpt, "test"
    msg.set_content("test\n")
    try:
        result = await send_message(lab.node(client).socket(), (host, 25), mail_from, [rcpt],
                                    msg.as_bytes(), helo_name=f"{client}.test",
                                    connect_timeout=min(3.0, timeout), timeout=timeout)
    except SmtpError as e:
        return False, f"{e.stage}: {e.detail}"
    if result.reply is None:
        return False, "; ".join(f"RCPT {r}: {reply}" for r, reply in result.refused.items())
    return True, str(result.reply)


async def smtp_repair(lab: LabContext, client: str, host: str, mail_from: str, rcpt: str,
                      what: str) -> Repair:
    """A repair check by one message (``smtp_accepts``): repaired if it is accepted; ``how``
    is ``what`` (which message, between which nodes) and what the server said."""
    ok, said = await smtp_accepts(lab, client, host, mail_from, rcpt)
    return Repair(ok, f"{what}: {'accepted, ' if ok else ''}{said}")


async def outbound_repaired(lab: LabContext) -> Repair:
    """Mail from the company leaves again: the mail server's SMTP session to its next hop
    accepts a message from the mail domain to the outside sender. The next hop is the
    smarthost where the mail server has one (the firewall may let it reach nothing else),
    else the sender's mail server."""
    roles = lab.roles
    client = roles.need("mail_server")
    server = roles.smarthost_address or roles.need("sender_address")
    sender = f"{roles.need('mailbox')}@{roles.need('mail_domain')}"
    rcpt = f"{roles.need('sender_mailbox')}@{roles.need('sender_domain')}"
    return await smtp_repair(lab, client, server, sender, rcpt,
                             f"a message from {sender} to {rcpt}, {client} to {server}:25")


_LOSS = re.compile(r"(\d+) packets transmitted, (\d+) received")


async def ping(lab: LabContext, client: str, host: str, count: int = 3,
               interval: float = 0.2) -> tuple[int, int]:
    """(sent, received) of ``count`` pings from ``client`` (one second's wait each)."""
    _rc, out, _err = await run_async(lab, client, ["ping", "-n", "-q", "-c", str(count),
                                                   "-i", str(interval), "-W", "1", host])
    m = _LOSS.search(out)
    return (int(m.group(1)), int(m.group(2))) if m else (count, 0)


# --- the live ruleset -----------------------------------------------------------------------


async def nft_rules(lab: LabContext, node: str) -> list[dict]:
    """Every rule of the node's live ruleset (``nft -j``), each with its table's family
    and name and its chain's hook and type (what a trainee's own rules look like too)."""
    rc, out, _err = await run_async(lab, node, ["nft", "-j", "list", "ruleset"])
    if rc != 0:
        return []
    items = json.loads(out or "{}").get("nftables", [])
    chains = {(c["family"], c["table"], c["name"]): c for c in
              (i["chain"] for i in items if "chain" in i)}
    rules = []
    for item in (i["rule"] for i in items if "rule" in i):
        chain = chains.get((item["family"], item["table"], item["chain"]), {})
        rules.append({**item, "hook": chain.get("hook"), "type": chain.get("type"),
                      "prio": chain.get("prio", 0)})
    return sorted(rules, key=lambda r: (r["prio"] if isinstance(r["prio"], int) else 0))
