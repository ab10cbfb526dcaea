"""The SMTP service, its queue, client, MX lookup and mailq, on loopback addresses.

Two MTAs run on one asyncio loop per test: 127.0.0.25 (mail.example.net) and
127.0.0.20 (mail.example.com), with a dnslib stub DNS server (thread) that both find
through the resolv.conf in their node roots. Blocking clients (raw sockets, smtplib,
swaks) run in threads so the loop keeps serving.
"""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import smtplib
import socket
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
from dnslib import QTYPE, RCODE, RR
from dnslib.server import BaseResolver, DNSLogger, DNSServer
from pydantic import ValidationError

from lab.model.mta import MtaConfig
from lab.protocols import maillog, mailq, mbox
from lab.protocols.mxlookup import NODATA, NXDOMAIN, TIMEOUT, DnsError, lookup_mx
from lab.protocols.node import NodeContext
from lab.protocols.smtpclient import SmtpError, send_message
from lab.services.mta import MtaService

GOLDEN = Path(__file__).parent / "golden" / "mta"
NET_IP, COM_IP, DNS_IP = "127.0.0.25", "127.0.0.20", "127.0.0.53"
INSIDE, OUTSIDE = "127.0.0.100", "127.0.0.200"  # a relay client, a stranger

ZONE = f"""
example.com.          60 IN MX 10 mail.example.com.
mail.example.com.     60 IN A  {COM_IP}
example.net.          60 IN MX 10 mail.example.net.
mail.example.net.     60 IN A  {NET_IP}
implicit.example.org. 60 IN A  {COM_IP}
nomail.example.org.   60 IN TXT "no mail here"
"""


def free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


class ZoneResolver(BaseResolver):
    def __init__(self, text: str) -> None:
        self.rrs = RR.fromZone(text)

    def resolve(self, request, handler):
        reply = request.reply()
        q = request.q
        named = [rr for rr in self.rrs if rr.rname == q.qname]
        if not named:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for rr in named:
            if rr.rtype == q.qtype:
                reply.add_answer(rr)
                if rr.rtype == QTYPE.MX:
                    reply.add_ar(*[a for a in self.rrs if a.rname == rr.rdata.label])
        return reply


@pytest.fixture(scope="module")
def dns_port():
    port = free_port(DNS_IP)
    quiet = DNSLogger(logf=lambda _msg: None)
    server = DNSServer(ZoneResolver(ZONE), port=port, address=DNS_IP, logger=quiet)
    server.start_thread()
    yield port
    server.stop()
    server.server.server_close()


@pytest.fixture
def silent_dns():
    """A UDP socket that takes queries and never answers."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((DNS_IP, 0))
    yield s.getsockname()[1]
    s.close()


def make_node(root: Path, name: str, ip: str, nameserver: str = DNS_IP) -> NodeContext:
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "resolv.conf").write_text(f"# test\nnameserver {nameserver}\n")
    return NodeContext(name=name, root=root, addresses=[ip])


class World:
    """Both MTAs' nodes, ports and configs; ``service()`` makes an (unstarted) MTA."""

    def __init__(self, tmp: Path, dns_port: int) -> None:
        self.dns_port = dns_port
        self.net_port, self.com_port = free_port(NET_IP), free_port(COM_IP)
        self.net_node = make_node(tmp / "mx", "mx", NET_IP)
        self.com_node = make_node(tmp / "mx-ext", "mx-ext", COM_IP)
        self.net_cfg = {"hostname": "mail.example.net", "domains": ["example.net"],
                        "users": ["jsmith", "admin", "postmaster"],
                        "relay_networks": ["127.0.0.64/26"]}
        self.com_cfg = {"hostname": "mail.example.com", "domains": ["example.com"],
                        "users": ["bob", "jsmith", "postmaster"]}

    def net(self, **cfg) -> MtaService:
        config = MtaConfig.model_validate({**self.net_cfg, **cfg})
        return MtaService(self.net_node, config, port=self.net_port, remote_port=self.com_port,
                          dns_port=self.dns_port, loopback_relay=False, connect_timeout=2,
                          dns_timeout=0.3)

    def com(self, **cfg) -> MtaService:
        config = MtaConfig.model_validate({**self.com_cfg, **cfg})
        return MtaService(self.com_node, config, port=self.com_port, remote_port=self.net_port,
                          dns_port=self.dns_port, loopback_relay=False, connect_timeout=2,
                          dns_timeout=0.3)

    def mbox(self, node: NodeContext, user: str) -> str:
        path = node.path(f"/var/mail/{user}")
        return path.read_text() if path.exists() else ""

    def log(self, node: NodeContext) -> str:
        path = node.path("/var/log/mail.log")
        return path.read_text() if path.exists() else ""


@pytest.fixture
def world(tmp_path, dns_port) -> World:
    return World(tmp_path, dns_port)


def run(coro, timeout: float = 30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Dialog:
    """A telnet-like client: one line out, one reply in (blocking; use in a thread)."""

    def __init__(self, ip: str, port: int, source: str = INSIDE) -> None:
        self.sock = socket.socket()
        self.sock.settimeout(5)
        self.sock.bind((source, 0))
        self.sock.connect((ip, port))
        self.file = self.sock.makefile("rb")

    def reply(self) -> str:
        lines = []
        while True:
            line = self.file.readline().decode().rstrip("\r\n")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return "\n".join(lines)

    def send(self, line: str | bytes, expect_reply: bool = True) -> str | None:
        data = line if isinstance(line, bytes) else line.encode()
        self.sock.sendall(data + b"\r\n")
        return self.reply() if expect_reply else None

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def smtplib_send(port: int, sender: str, rcpts: list[str], msg: str, source: str = INSIDE):
    with smtplib.SMTP(NET_IP, port, source_address=(source, 0), timeout=10) as s:
        return s.sendmail(sender, rcpts, msg)


async def started(*services: MtaService):
    for s in services:
        await s.start()
    return services


async def stop_all(*services: MtaService) -> None:
    for s in services:
        await s.stop()


# --------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------

TELNET = [
    # (what the person types, the reply code they should see)
    ("helo mail.example.com", "250 mail.example.net"),
    ("mail from: jsmith@example.com", "250 2.1.0 Ok"),
    ("rcpt to: jsmith@example.net", "250 2.1.5 Ok"),
    ("data", "354 End data with <CR><LF>.<CR><LF>"),
    ("Subject: Test message", None),
    ("", None),
    ("Did you get this?", None),
    (".", r"250 2.0.0 Ok: queued as [0-9A-F]{10}"),
    ("quit", "221 2.0.0 Bye"),
]


def test_telnet_dialog_verbatim_ends_in_mbox(world):
    async def body():
        net, = await started(world.net())

        def dialog():
            d = Dialog(NET_IP, world.net_port)
            seen = [d.reply()]
            for line, expect in TELNET:
                seen.append(d.send(line, expect_reply=expect is not None))
            d.close()
            return seen

        seen = await asyncio.to_thread(dialog)
        await stop_all(net)
        return seen

    seen = run(body())
    assert seen[0] == "220 mail.example.net ESMTP"
    for (line, expect), got in zip(TELNET, seen[1:]):
        if expect is None:
            assert got is None
        else:
            assert re.fullmatch(expect, got), (line, got)
    mbox = world.mbox(world.net_node, "jsmith")
    assert mbox.startswith("From jsmith@example.com  ")
    assert f"Received: from mail.example.com (unknown [{INSIDE}])" in mbox
    assert "with SMTP id" in mbox
    assert "Subject: Test message\n\nDid you get this?\n" in mbox
    log = world.log(world.net_node)
    qid = re.search(r"queued as ([0-9A-F]{10})", seen[8]).group(1)
    for expected in [
        rf"mx postfix/smtpd\[(\d+)\]: connect from unknown\[{INSIDE}\]",
        rf"postfix/smtpd\[\d+\]: {qid}: client=unknown\[{INSIDE}\]",
        rf"postfix/qmgr\[\d+\]: {qid}: from=<jsmith@example.com>, size=",
        (rf"{qid}: to=<jsmith@example.net>, relay=local, delay=[\d.]+, delays=[\d.]+/[\d.]+/"
         rf"[\d.]+/[\d.]+, dsn=2.0.0, status=sent \(delivered to mailbox\)"),
        rf"postfix/qmgr\[\d+\]: {qid}: removed",
        rf"disconnect from unknown\[{INSIDE}\] helo=1 mail=1 rcpt=1 data=1 quit=1 commands=5",
    ]:
        assert re.search(expected, log), expected
    pids = dict(re.findall(r"postfix/(\w+)\[(\d+)\]", log))
    assert int(pids["smtpd"]) != os.getpid() and pids["smtpd"] != pids["qmgr"]
    assert re.search(r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d mx postfix/", log, re.MULTILINE)


def test_smtplib_delivers_and_escapes_from_lines(world):
    msg = "Subject: hi\n\nFrom the start\n>From quoted\n.leading dot\nend\n"

    async def body():
        net, = await started(world.net())
        refused = await asyncio.to_thread(
            smtplib_send, world.net_port, "bob@example.com", ["admin@example.net"], msg)
        await stop_all(net)
        return refused

    assert run(body()) == {}
    mbox = world.mbox(world.net_node, "admin")
    assert "with ESMTP id" in mbox
    assert "\n>From the start\n>>From quoted\n.leading dot\nend\n\n" in mbox


def test_unknown_user_is_rejected_with_postfix_text(world):
    async def body():
        net, = await started(world.net())
        with pytest.raises(smtplib.SMTPRecipientsRefused) as err:
            await asyncio.to_thread(smtplib_send, world.net_port, "bob@example.com",
                                    ["nobody@example.net"], "Subject: x\n\nx\n")
        await stop_all(net)
        return err.value.recipients

    code, text = run(body())["nobody@example.net"]
    assert (code, text.decode()) == (
        550, ("5.1.1 <nobody@example.net>: Recipient address rejected: "
              "User unknown in local recipient table"))
    assert (
        f"NOQUEUE: reject: RCPT from unknown[{INSIDE}]: 550 5.1.1 <nobody@example.net>: "
        "Recipient address rejected: User unknown in local recipient table; "
        "from=<bob@example.com> to=<nobody@example.net> proto=ESMTP helo=<"
    ) in world.log(world.net_node)


@pytest.mark.parametrize("source, expected", [
    (INSIDE, "250 2.1.5 Ok"),
    (OUTSIDE, "554 5.7.1 <bob@example.com>: Relay access denied"),
])
def test_relay_only_from_relay_networks(world, source, expected):
    async def body():
        net, = await started(world.net())

        def dialog():
            d = Dialog(NET_IP, world.net_port, source=source)
            d.reply()
            d.send("helo client.example.org")
            d.send("mail from:<jsmith@example.net>")
            got = d.send("rcpt to:<bob@example.com>")
            d.send("quit")
            d.close()
            return got

        got = await asyncio.to_thread(dialog)
        await stop_all(net)
        return got

    assert run(body()) == expected
    log = world.log(world.net_node)
    denied = f"NOQUEUE: reject: RCPT from unknown[{OUTSIDE}]: 554 5.7.1 <bob@example.com>: " \
             "Relay access denied; from=<jsmith@example.net> to=<bob@example.com> proto=SMTP " \
             "helo=<client.example.org>"
    assert (denied in log) == (source == OUTSIDE)


@pytest.mark.parametrize("line, expected", [
    ("xyzzy plugh", "500 5.5.2 Error: command not recognized"),
    ("HELP", "500 5.5.2 Error: command not recognized"),
    ("HELO " + "a" * 3000, "250 mail.example.net"),
    ("", "500 5.5.2 Error: bad syntax"),
])
def test_bad_input_gets_protocol_errors_and_session_goes_on(world, line, expected):
    async def body():
        net, = await started(world.net())

        def dialog():
            d = Dialog(NET_IP, world.net_port)
            d.reply()
            got = d.send(line)
            after = d.send("noop")
            d.close()
            return got, after

        got = await asyncio.to_thread(dialog)
        await stop_all(net)
        return got

    assert run(body()) == (expected, "250 2.0.0 Ok")


def test_disconnect_mid_data_delivers_nothing_then_next_client_works(world):
    async def body():
        net, = await started(world.net())

        def broken():
            d = Dialog(NET_IP, world.net_port)
            d.reply()
            for line in ["helo x.example.com", "mail from:<a@example.com>",
                         "rcpt to:<jsmith@example.net>", "data"]:
                d.send(line)
            d.send("Subject: half a message", expect_reply=False)
            d.send("this never ends", expect_reply=False)
            d.close()

        await asyncio.to_thread(broken)
        await asyncio.sleep(0.1)
        await asyncio.to_thread(smtplib_send, world.net_port, "b@example.com",
                                ["jsmith@example.net"], "Subject: whole\n\nfine\n")
        queue = net.queue()
        await stop_all(net)
        return queue

    assert run(body()) == []
    mbox = world.mbox(world.net_node, "jsmith")
    assert "Subject: whole" in mbox and "half a message" not in mbox
    assert mbox.count("\nFrom ") + mbox.startswith("From ") == 1
    assert re.search(rf"lost connection after DATA \(\d+ bytes\) from unknown\[{INSIDE}\]",
                     world.log(world.net_node))


def test_session_limit_turns_extra_clients_away(world):
    async def body():
        net, = await started(world.net(client_connection_limit=1))

        def two():
            first = Dialog(NET_IP, world.net_port, source=OUTSIDE)
            banner1 = first.reply()
            second = Dialog(NET_IP, world.net_port, source=OUTSIDE)
            banner2 = second.reply()
            second.close()
            first.send("quit")
            first.close()
            return banner1, banner2

        got = await asyncio.to_thread(two)
        await stop_all(net)
        return got

    banner1, banner2 = run(body())
    assert banner1 == "220 mail.example.net ESMTP"
    assert banner2 == f"421 4.7.0 mail.example.net Error: too many connections from {OUTSIDE}"


def test_message_size_limit(world):
    async def body():
        net, = await started(world.net(message_size_limit=2048))
        with pytest.raises(smtplib.SMTPException) as err:
            await asyncio.to_thread(smtplib_send, world.net_port, "b@example.com",
                                    ["jsmith@example.net"], "Subject: big\n\n" + "x" * 70 * 60)
        await stop_all(net)
        return err.value

    err = run(body())
    assert "5.3.4" in str(err) or "552" in str(err)
    assert world.mbox(world.net_node, "jsmith") == ""


def test_healthy_tracks_the_listener(world):
    async def body():
        net = world.net()
        await net.start()
        up = await net.healthy()
        await net.stop()
        return up, await net.healthy()

    assert run(body()) == (True, False)


@pytest.mark.skipif(not shutil.which("swaks"), reason="swaks not installed")
def test_real_swaks(world):
    async def body():
        net, = await started(world.net())
        proc = await asyncio.create_subprocess_exec(
            "swaks", "--server", NET_IP, "--port", str(world.net_port),
            "--from", "bob@example.com", "--to", "jsmith@example.net",
            "--helo", "swaks.example.com", "--header", "Subject: from swaks",
            "--body", "swaks body", "--timeout", "10",
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = await proc.communicate()
        await stop_all(net)
        return proc.returncode, out.decode()

    rc, out = run(body())
    assert rc == 0, out
    assert "250 2.0.0 Ok: queued as" in out
    mbox = world.mbox(world.net_node, "jsmith")
    assert "Subject: from swaks" in mbox and "swaks body" in mbox


# --------------------------------------------------------------------------------------
# Outbound: MX lookup, queue, retries, bounces
# --------------------------------------------------------------------------------------

def test_outbound_delivery_through_mx(world):
    async def body():
        net, com = await started(world.net(), world.com())
        await asyncio.to_thread(smtplib_send, world.net_port, "jsmith@example.net",
                                ["bob@example.com", "admin@example.net"],
                                "Subject: out\n\nto the world\n")
        await net.flush()
        await com.flush()
        queue = net.queue()
        await stop_all(net, com)
        return queue

    assert run(body()) == []
    assert "to the world" in world.mbox(world.com_node, "bob")
    assert "to the world" in world.mbox(world.net_node, "admin")
    bob = world.mbox(world.com_node, "bob")
    # the kernel picks the source address (127.0.0.1 here; the node's own in a lab)
    assert "Received: from mail.example.net (unknown [127.0.0." in bob
    log = world.log(world.net_node)
    assert re.search(
        rf"postfix/smtp\[\d+\]: [0-9A-F]{{10}}: to=<bob@example.com>, "
        rf"relay=mail.example.com\[{COM_IP}\]:{world.com_port}, delay=[\d.]+, "
        rf"delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+, dsn=2.0.0, "
        rf"status=sent \(250 2.0.0 Ok: queued as [0-9A-F]{{10}}\)", log)
    assert re.search(r"disconnect from unknown\[127\.0\.0\.\d+\] ehlo=1 mail=1 rcpt=1 data=1 "
                     r"quit=1 commands=5", world.log(world.com_node))


def test_deferred_then_delivered_after_restart_and_flush(world, capsys):
    async def body():
        net, = await started(world.net())
        await asyncio.to_thread(smtplib_send, world.net_port, "jsmith@example.net",
                                ["bob@example.com"], "Subject: later\n\nwait for it\n")
        await net.flush()
        deferred = net.queue()
        assert mailq.main(["--root", str(world.net_node.root)]) == 0
        listing = capsys.readouterr().out
        await net.stop()
        # a new instance finds the queue on disk; the remote is up now
        net2, com = await started(world.net(), world.com())
        await net2.flush()
        await com.flush()
        after = net2.queue()
        await stop_all(net2, com)
        return deferred, listing, after

    deferred, listing, after = run(body())
    assert len(deferred) == 1 and deferred[0].queue == "deferred"
    reason = f"connect to mail.example.com[{COM_IP}]:{world.com_port}: Connection refused"
    assert deferred[0].reasons == {"bob@example.com": reason}
    qid = deferred[0].queue_id
    lines = listing.splitlines()
    assert lines[0] == "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------"
    assert re.fullmatch(rf"{qid}  +\d+ \w{{3}} \w{{3}} [ \d]\d \d\d:\d\d:\d\d  jsmith@example.net",
                        lines[1])
    assert lines[2] == " " * (76 - len(reason)) + f"({reason})"
    assert lines[3] == " " * 41 + "bob@example.com"
    assert lines[4:] == ["", "-- 0 Kbytes in 1 Request."]
    log = world.log(world.net_node)
    assert f"{qid}: to=<bob@example.com>, relay=none, delay=" in log
    assert f"dsn=4.4.1, status=deferred ({reason})" in log
    assert after == []
    assert "wait for it" in world.mbox(world.com_node, "bob")
    assert f"{qid}: removed" in world.log(world.net_node)


def test_queue_runner_retries_after_the_backoff(world):
    async def body():
        net, = await started(world.net(minimal_backoff_time=0.3, queue_run_delay=0.3))
        await asyncio.to_thread(smtplib_send, world.net_port, "jsmith@example.net",
                                ["bob@example.com"], "Subject: retry\n\nby itself\n")
        await asyncio.sleep(0.2)
        waiting = [e.queue for e in net.queue()]
        com, = await started(world.com())
        for _ in range(40):  # no flush: the runner must get there within a few intervals
            if not net.queue():
                break
            await asyncio.sleep(0.1)
        left = net.queue()
        await stop_all(net, com)
        return waiting, left

    assert run(body()) == (["deferred"], [])
    assert "by itself" in world.mbox(world.com_node, "bob")


def test_expired_message_bounces_to_local_sender(world):
    async def body():
        net, = await started(world.net(bounce_after=0.3))
        await asyncio.to_thread(smtplib_send, world.net_port, "jsmith@example.net",
                                ["bob@example.com"], "Subject: doomed\n\nnever arrives\n")
        await net.flush()
        first = len(net.queue())
        await asyncio.sleep(0.4)
        await net.flush()
        queue = net.queue()
        await stop_all(net)
        return first, queue

    first, queue = run(body())
    assert (first, queue) == (1, [])
    mbox = world.mbox(world.net_node, "jsmith")
    assert mbox.startswith("From MAILER-DAEMON  ")
    assert "Subject: Undelivered Mail Returned to Sender" in mbox
    assert f"<bob@example.com>: connect to mail.example.com[{COM_IP}]" in mbox
    assert "Subject: doomed" in mbox  # the returned message
    log = world.log(world.net_node)
    assert re.search(r"[0-9A-F]{10}: from=<jsmith@example.net>, status=expired, returned to sender",
                     log)
    assert re.search(r"[0-9A-F]{10}: sender non-delivery notification: [0-9A-F]{10}", log)


@pytest.mark.parametrize("rcpt, reason", [
    ("nosuch@example.com", ("host mail.example.com[127.0.0.20] said: 550 5.1.1 "
                            "<nosuch@example.com>: Recipient address rejected: User unknown "
                            "in local recipient table (in reply to RCPT TO command)")),
    ("x@nowhere.example.org", ("Host or domain name not found. Name service error for "
                               "name=nowhere.example.org type=MX: Host not found")),
    ("x@nomail.example.org", ("Host or domain name not found. Name service error for "
                              "name=nomail.example.org type=A: Host found but no data record "
                              "of requested type")),
])
def test_permanent_failure_bounces_at_once(world, rcpt, reason):
    async def body():
        net, com = await started(world.net(), world.com())
        await asyncio.to_thread(smtplib_send, world.net_port, "jsmith@example.net", [rcpt],
                                "Subject: lost\n\nhello?\n")
        await net.flush()
        queue = net.queue()
        await stop_all(net, com)
        return queue

    assert run(body()) == []
    assert f"status=bounced ({reason})" in world.log(world.net_node)
    mbox = world.mbox(world.net_node, "jsmith")
    assert f"<{rcpt}>: {reason}" in mbox.replace("\n", " ").replace("  ", " ") or \
        f"<{rcpt}>: {reason}" in mbox


def test_implicit_mx_uses_the_domain_address(world):
    async def body():
        net, com = await started(world.net(), world.com(domains=["example.com",
                                                                  "implicit.example.org"]))
        await asyncio.to_thread(smtplib_send, world.net_port, "jsmith@example.net",
                                ["bob@implicit.example.org"], "Subject: a\n\nvia A record\n")
        await net.flush()
        await stop_all(net, com)

    run(body())
    assert "via A record" in world.mbox(world.com_node, "bob")
    assert f"relay=implicit.example.org[{COM_IP}]:{world.com_port}" in world.log(world.net_node)


def test_dns_timeout_defers(world, silent_dns):
    world.net_node.path("/etc/resolv.conf").write_text(f"nameserver {DNS_IP}\n")

    async def body():
        net = world.net()
        net.dns_port = silent_dns
        await net.start()
        await asyncio.to_thread(smtplib_send, world.net_port, "jsmith@example.net",
                                ["bob@example.com"], "Subject: dns\n\nslow\n")
        await net.flush()
        queue = net.queue()
        await stop_all(net)
        return queue

    queue = run(body())
    assert [e.queue for e in queue] == ["deferred"]
    assert queue[0].reasons["bob@example.com"] == (
        "Host or domain name not found. Name service error for name=example.com type=MX: "
        "Host not found, try again")


# --------------------------------------------------------------------------------------
# Units: MX lookup, SMTP client, config
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("domain, expected", [
    ("example.com", [(10, "mail.example.com", [COM_IP])]),
    ("implicit.example.org", [(0, "implicit.example.org", [COM_IP])]),
    ("nowhere.example.org", NXDOMAIN),
    ("nomail.example.org", NODATA),
])
def test_lookup_mx(tmp_path, dns_port, domain, expected):
    node = make_node(tmp_path, "n", "127.0.0.1")

    async def body():
        try:
            hosts = await lookup_mx(node, domain, port=dns_port, timeout=1)
        except DnsError as e:
            return e.kind
        return [(h.preference, h.name, h.addresses) for h in hosts]

    assert run(body()) == expected


def test_lookup_mx_timeout_is_temporary(tmp_path, silent_dns):
    node = make_node(tmp_path, "n", "127.0.0.1")

    async def body():
        with pytest.raises(DnsError) as err:
            await lookup_mx(node, "example.com", port=silent_dns, timeout=0.2, attempts=2)
        return err.value

    started_at = time.monotonic()
    err = run(body())
    assert (err.kind, err.temporary) == (TIMEOUT, True)
    assert time.monotonic() - started_at < 2


def test_smtpclient_connection_refused_is_temporary():
    port = free_port(COM_IP)

    async def body():
        sock = socket.socket()
        sock.setblocking(False)
        with pytest.raises(SmtpError) as err:
            await send_message(sock, (COM_IP, port), "a@example.net", ["b@example.com"],
                               b"Subject: x\n\nx\n", helo_name="t.example.net")
        return err.value

    err = run(body())
    assert (err.stage, err.detail, err.reply, err.temporary) == (
        "connect", "Connection refused", None, True)


def test_smtpclient_reports_refused_recipients(world):
    async def body():
        com, = await started(world.com())
        sock = socket.socket()
        sock.setblocking(False)
        result = await send_message(sock, (COM_IP, world.com_port), "a@example.net",
                                    ["nobody@example.com", "bob@example.com"],
                                    b"Subject: x\n\n.dot\n", helo_name="t.example.net")
        await stop_all(com)
        return result

    result = run(body())
    assert result.accepted == ["bob@example.com"]
    assert result.reply.code == 250 and result.reply.text.startswith("2.0.0 Ok: queued as ")
    assert result.refused["nobody@example.com"].code == 550
    assert "\n.dot\n" in world.mbox(world.com_node, "bob")


def test_config_forbids_unknown_fields_and_checks_values():
    ok = MtaConfig.model_validate({"hostname": "Mail.Example.NET", "domains": ["Example.net"],
                                   "users": ["jsmith"], "relay_networks": ["10.1.0.0/24"],
                                   "minimal_backoff_time": 30, "bounce_after": 600})
    assert (ok.hostname, ok.domains) == ("mail.example.net", ["example.net"])
    for bad in [{"relay": True}, {"domains": []}, {"minimal_backoff_time": 0},
                {"minimal_backoff_time": 500, "maximal_backoff_time": 400},
                {"users": ["bad user"]}, {"relay_networks": ["10.1.0.1/24"]}]:
        with pytest.raises(ValidationError):
            MtaConfig.model_validate({"hostname": "mail.example.net",
                                      "domains": ["example.net"], **bad})


# --------------------------------------------------------------------------------------
# Golden: the pure formatters
# --------------------------------------------------------------------------------------

WHEN = datetime(2025, 11, 5, 16, 50, 1)


@pytest.mark.parametrize("line, expected", [
    (maillog.syslog_line(WHEN, "mx", "smtpd", 4242, maillog.log_connect("203.0.113.20")),
     "Nov  5 16:50:01 mx postfix/smtpd[4242]: connect from unknown[203.0.113.20]"),
    (maillog.log_queued("1A2B3C4D5E", "jsmith@example.com", 312, 1),
     "1A2B3C4D5E: from=<jsmith@example.com>, size=312, nrcpt=1 (queue active)"),
    (maillog.log_delivery("1A2B3C4D5E", "jsmith@example.net", "local", 0.0123, "2.0.0", "sent",
                      "delivered to mailbox"),
     ("1A2B3C4D5E: to=<jsmith@example.net>, relay=local, delay=0.01, dsn=2.0.0, "
      "status=sent (delivered to mailbox)")),
    (maillog.log_delivery("1A2B3C4D5E", "bob@example.com", "mail.example.com[203.0.113.20]:25",
                      0.2, "2.0.0", "sent", "250 2.0.0 Ok: queued as 9F8E7D6C5B"),
     ("1A2B3C4D5E: to=<bob@example.com>, relay=mail.example.com[203.0.113.20]:25, "
      "delay=0.2, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 9F8E7D6C5B)")),
    (maillog.log_delivery("1A2B3C4D5E", "bob@example.com", "none", 35.7, "4.4.1", "deferred",
                      "connect to mail.example.com[203.0.113.20]:25: Connection refused"),
     ("1A2B3C4D5E: to=<bob@example.com>, relay=none, delay=35, dsn=4.4.1, "
      "status=deferred (connect to mail.example.com[203.0.113.20]:25: Connection refused)")),
    (maillog.log_reject("203.0.113.20", "554 5.7.1 <x@example.org>: Relay access denied",
                    "a@example.com", "x@example.org", "SMTP", "mail.example.com"),
     ("NOQUEUE: reject: RCPT from unknown[203.0.113.20]: 554 5.7.1 <x@example.org>: Relay "
      "access denied; from=<a@example.com> to=<x@example.org> proto=SMTP "
      "helo=<mail.example.com>")),
    (maillog.log_disconnect("203.0.113.20", {"quit": (1, 1), "helo": (1, 1), "rcpt": (0, 1),
                                         "mail": (1, 1), "unknown": (0, 2)}),
     ("disconnect from unknown[203.0.113.20] helo=1 mail=1 rcpt=0/1 quit=1 unknown=0/2 "
      "commands=3/6")),
    (maillog.log_lost("203.0.113.20", "DATA"), "lost connection after DATA from unknown[203.0.113.20]"),
    (maillog.log_expired("1A2B3C4D5E", "a@example.net"),
     "1A2B3C4D5E: from=<a@example.net>, status=expired, returned to sender"),
    (maillog.log_bounce("1A2B3C4D5E", "0F0F0F0F0F"),
     "1A2B3C4D5E: sender non-delivery notification: 0F0F0F0F0F"),
])
def test_log_line_golden(line, expected):
    assert line == expected


@pytest.mark.parametrize("seconds, text", [(0, "0"), (0.004, "0"), (0.0123, "0.01"),
                                           (0.2, "0.2"), (1.25, "1.2"), (12.9, "12"),
                                           (3600.5, "3600")])
def test_format_delay(seconds, text):
    assert maillog.format_delay(seconds) == text


def test_mbox_entry_golden(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        got = mbox.mbox_entry("jsmith@example.com", "jsmith@example.net",
                             b"Subject: t\r\n\r\nFrom here\r\n>From there\r\nok\r\n",
                             1764089401.0)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert got == (GOLDEN / "mbox_entry.txt").read_bytes()


def test_mailq_listing_golden(monkeypatch):
    entries = [
        mailq.QueueEntry("1A2B3C4D5E", "jsmith@example.net", ["bob@example.com"],
                         1764089401.0, 1536, queue="active"),
        mailq.QueueEntry("3F4E5D6C7B", "", ["alice@example.com", "carol@example.com",
                                            "dave@example.org"], 1764089472.0, 955,
                         queue="deferred",
                         reasons={"alice@example.com": "connect to mail.example.com"
                                  "[203.0.113.20]:25: Connection refused",
                                  "carol@example.com": "connect to mail.example.com"
                                  "[203.0.113.20]:25: Connection refused"}),
    ]
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        got = mailq.format_mailq(entries)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert got == (GOLDEN / "mailq.txt").read_text()
    assert mailq.format_mailq([]) == "Mail queue is empty\n"


def test_mailq_skips_corrupt_files(tmp_path, capsys):
    spool = mailq.spool_path(tmp_path)
    entry = mailq.QueueEntry("ABCDEF0123", "a@example.net", ["b@example.com"], 1.0, 10)
    mailq.write_entry(spool, entry, b"Subject: x\n\nx\n")
    (spool / "deferred").mkdir(exist_ok=True)
    (spool / "deferred" / "BROKEN0000").write_bytes(b"not json\n")
    assert [e.queue_id for e in mailq.list_entries(spool)] == ["ABCDEF0123"]
    assert mailq.read_entry(spool / "active" / "ABCDEF0123")[1] == b"Subject: x\n\nx\n"
    assert mailq.main(["--root", str(tmp_path)]) == 0
    assert "ABCDEF0123*" in capsys.readouterr().out


def test_error_limits_soft_slow_down_hard_ends_the_session(world):
    """Postfix: past 10 errors each reply waits smtpd_error_sleep_time; at 20 the session
    ends with a 421 naming the host."""
    async def body():
        net = world.net()
        net.smtpd.error_sleep = 0.05
        await net.start()

        def junk():
            d = Dialog(NET_IP, world.net_port)
            d.reply()
            replies, times = [], []
            for i in range(20):
                started = time.monotonic()
                replies.append(d.send(f"junk{i}"))
                times.append(time.monotonic() - started)
            last = d.file.readline().decode().rstrip("\r\n")
            d.close()
            return replies, times, last

        got = await asyncio.to_thread(junk)
        await stop_all(net)
        return got

    replies, times, last = run(body())
    assert set(replies) == {"500 5.5.2 Error: command not recognized"}
    assert min(times[11:]) >= 0.05  # slowed down past the soft limit
    assert last == "421 4.7.0 mail.example.net Error: too many errors"
    assert "too many errors after UNKNOWN from unknown[127.0.0.100]" in world.log(world.net_node)
    assert "unknown=0/20" in world.log(world.net_node)
