"""The SMTP proxy: pure helpers, and real SMTP sessions through it in throwaway namespaces."""
from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from netns_helpers import (
    connect,
    fw_node,
    fw_topology,
    listener,
    make_firewall,
    read_conn_log,
    require_root,
    socket_factory,
)

from lab.model.firewall import FirewallConfig
from lab.protocols.fwlog import ERROR_LOG
from lab.protocols.node import NodeContext
from lab.protocols.proxyrelay import Route
from lab.protocols.smtpclient import SmtpError, send_message
from lab.protocols.smtpd import Smtpd, SmtpdHooks
from lab.services.proxy import SmtpProxy, original_dst

MESSAGE = b"Subject: test\r\n\r\nhello\r\n.leading dot\r\n"


@pytest.mark.parametrize("targets, expected", [
    ((("10.1.0.25", 25),), 2048),
    ((("10.1.0.25", 25), ("10.1.0.26", 25)), 2048),  # the smallest of the servers behind
    ((("10.1.0.26", 25),), 50_000_000),
    ((("198.51.100.7", 25),), 10_240_000),  # not a server of the lab: Postfix's default
    ((), 10_240_000),
])
def test_size_is_the_servers_behind(tmp_path, targets, expected) -> None:
    fw = FirewallConfig(external="inet", internal="lan", proxy={"mode": "inbound-to"})
    proxy = SmtpProxy(NodeContext("fw", tmp_path), fw, "203.0.113.1",
                      mail_sizes={"10.1.0.25": 2048, "10.1.0.26": 50_000_000})
    assert proxy.size_limit(Route("inbound-to", targets)) == expected


def test_original_dst_decodes_sockaddr_in() -> None:
    class FakeSock:
        def getsockopt(self, level, opt, size):
            assert (level, opt, size) == (0, 80, 16)
            return struct.pack("!HH4s8x", socket.AF_INET, 25, socket.inet_aton("203.0.113.25"))

    assert original_dst(FakeSock()) == ("203.0.113.25", 25)


# ---------------------------------------------------------------- root tests

pytest_root = pytest.mark.root


@pytest.fixture
def lab():
    require_root()
    with fw_topology() as topology:
        yield topology


class Sink(SmtpdHooks):
    """The internal mail server: knows one unknown user, keeps what it receives."""

    hostname = "mail.example.net"

    def __init__(self) -> None:
        self.received: list[tuple[str, str, list[str], bytes]] = []
        self.helos: list[str] = []

    async def rcpt(self, session, address: str) -> str:
        if address.startswith("nobody@"):
            return (f"550 5.1.1 <{address}>: Recipient address rejected: "
                    "User unknown in local recipient table")
        return "250 2.1.5 Ok"

    async def data(self, session, content: bytes) -> str:
        self.helos.append(session.helo)
        self.received.append((session.client_ip, session.sender, list(session.rcpts), content))
        return "250 2.0.0 Ok: queued as 0A1B2C3D4E"


async def _mail_server(lab, sink: Sink):
    lan = socket_factory(lab["lan"])
    return await asyncio.start_server(Smtpd(sink).serve,
                                      sock=listener(lan, ("10.1.0.25", 25)))


async def _run_with(lab, node, changes, body, connect_timeout=5.0, mail_sizes=None):
    fw = make_firewall(lab, node, **changes)
    proxy = SmtpProxy(node, fw.config, "203.0.113.1", connect_timeout=connect_timeout,
                      mail_sizes=mail_sizes)
    sink = Sink()
    await fw.start()
    await proxy.start()
    server = await _mail_server(lab, sink)
    try:
        assert await proxy.healthy()
        return await body(sink)
    finally:
        server.close()
        await proxy.stop()
        await fw.stop()


def _client(lab, tmp_path) -> NodeContext:
    return NodeContext("inet", tmp_path / "inet", socket_factory=socket_factory(lab["inet"]))


async def _send(client, address, sender, rcpts, timeout=10):
    return await send_message(client.socket(), (address, 25), sender, rcpts, MESSAGE,
                              helo_name="ext.example.org", connect_timeout=timeout,
                              timeout=timeout)


def _body_of(content: bytes) -> bytes:
    return content[content.index(b"Subject:"):]  # after the proxy's Received header


@pytest_root
def test_inbound_through_relays_the_session_and_leaves_a_trace(lab, tmp_path) -> None:
    node, client = fw_node(lab, tmp_path / "fw"), _client(lab, tmp_path)

    async def body(sink):
        result = await _send(client, "203.0.113.25", "a@example.org", ["b@example.net"])
        return str(result.reply), sink.received, sink.helos

    final, received, helos = asyncio.run(
        _run_with(lab, node, {"proxy": {"mode": "inbound-through"}}, body))
    assert final == "250 2.0.0 Ok: queued as 0A1B2C3D4E"  # the server's reply, verbatim
    (ip, sender, rcpts, content), = received
    assert (ip, sender, rcpts) == ("10.1.0.1", "a@example.org", ["b@example.net"])
    assert content.startswith(b"Received: from ext.example.org (unknown [203.0.113.20])\n"
                              b"\tby fw.example.net (netguard smtp proxy) with ESMTP id ")
    assert _body_of(content) == MESSAGE.replace(b"\r\n", b"\n")
    assert helos == ["fw.example.net"]
    lines = [ln.split() for ln in read_conn_log(node)]
    assert len(lines) == 1, lines
    assert lines[0][1:3] == ["Xr", "tcp"] and lines[0][4] == "203.0.113.25:25"
    assert lines[0][3].startswith("203.0.113.20:")
    assert lines[0][5:] == ["proxy=inbound-through", "relay=10.1.0.25:25"]


@pytest_root
def test_inbound_through_without_static_nat_says_no_route(lab, tmp_path) -> None:
    node = fw_node(lab, tmp_path / "fw")
    inet = socket_factory(lab["inet"])

    async def body(sink):
        reader, writer = await connect(inet, ("203.0.113.25", 25), 3)
        line = await asyncio.wait_for(reader.readline(), 3)
        eof = await asyncio.wait_for(reader.read(), 3)
        writer.close()
        return line, eof, sink.received

    line, eof, received = asyncio.run(_run_with(
        lab, node, {"proxy": {"mode": "inbound-through"}, "static_nat": []}, body))
    assert line == b"421 4.4.0 proxy: no route to mail server\r\n" and eof == b""
    assert received == []
    (entry,) = [ln.split() for ln in read_conn_log(node)]
    assert entry[1] == "D" and entry[4] == "203.0.113.25:25" and "proxy=inbound-through" in entry


@pytest_root
def test_inbound_to_answers_each_recipient_as_the_server_does(lab, tmp_path) -> None:
    """One unknown recipient is refused at RCPT; the others get the message once."""
    node, client = fw_node(lab, tmp_path / "fw"), _client(lab, tmp_path)

    async def body(sink):
        result = await _send(client, "203.0.113.1", "a@example.org",
                             ["b@example.net", "nobody@example.net", "c@example.com"])
        return result, sink.received

    result, received = asyncio.run(_run_with(lab, node, {"proxy": {"mode": "inbound-to"}},
                                             body))
    assert result.accepted == ["b@example.net"]
    assert str(result.refused["nobody@example.net"]) == (
        "550 5.1.1 <nobody@example.net>: Recipient address rejected: "
        "User unknown in local recipient table")
    assert str(result.refused["c@example.com"]) == "554 5.7.1 <c@example.com>: Relay access denied"
    assert str(result.reply) == "250 2.0.0 Ok: queued as 0A1B2C3D4E"
    assert [(r[1], r[2]) for r in received] == [("a@example.org", ["b@example.net"])]
    lines = [ln.split() for ln in read_conn_log(node)]
    assert len(lines) == 1, lines
    assert lines[0][1] == "Xr" and lines[0][3].startswith("203.0.113.20:")
    assert lines[0][4:] == ["203.0.113.1:25", "proxy=inbound-to", "relay=10.1.0.25:25"]


@pytest_root
def test_inbound_to_relays_the_null_sender(lab, tmp_path) -> None:
    node, client = fw_node(lab, tmp_path / "fw"), _client(lab, tmp_path)

    async def body(sink):
        result = await _send(client, "203.0.113.1", "", ["b@example.net"])
        return result, sink.received

    result, received = asyncio.run(_run_with(lab, node, {"proxy": {"mode": "inbound-to"}},
                                             body))
    assert result.reply.code == 250
    assert [(r[1], r[2]) for r in received] == [("", ["b@example.net"])]


@pytest_root
def test_inbound_to_without_reachable_server(lab, tmp_path) -> None:
    node, client = fw_node(lab, tmp_path / "fw"), _client(lab, tmp_path)

    async def body(sink):
        with pytest.raises(SmtpError) as err:
            await _send(client, "203.0.113.1", "a@example.org", ["b@example.net"])
        return err.value, sink.received

    err, received = asyncio.run(_run_with(
        lab, node, {"proxy": {"mode": "inbound-to", "servers": ["10.1.0.99"]}}, body,
        connect_timeout=1.0))
    assert (err.stage, err.code) == ("MAIL FROM", 451)
    assert received == []
    (entry,) = [ln.split() for ln in read_conn_log(node)]
    # the session reached the firewall and was proxied; what failed is in the error log
    assert entry[1] == "Xr" and entry[4] == "203.0.113.1:25" and "proxy=inbound-to" in entry
    errors = node.path(ERROR_LOG).read_text()
    assert "smtp-proxy: relay to 10.1.0.99:25 failed: Connection timed out" in errors


async def _dialog(inet, commands: bytes, last: bytes) -> tuple[bytes, list[bytes]]:
    """A raw client of the "Inbound To" proxy: the banner, then ``commands`` sent at once and
    the reply lines up to the first that starts with ``last``."""
    reader, writer = await connect(inet, ("203.0.113.1", 25), 3)
    banner = await asyncio.wait_for(reader.readline(), 3)
    writer.write(commands)
    await writer.drain()
    lines = [await asyncio.wait_for(reader.readline(), 3)]
    while not lines[-1].startswith(last) and lines[-1]:
        lines.append(await asyncio.wait_for(reader.readline(), 3))
    writer.close()
    return banner, lines


@pytest_root
def test_session_ending_before_data_is_logged(lab, tmp_path) -> None:
    node = fw_node(lab, tmp_path / "fw")
    inet = socket_factory(lab["inet"])

    async def body(sink):
        return await _dialog(inet, b"EHLO ext.example.org\r\n", b"250 ")

    banner, ehlo = asyncio.run(_run_with(lab, node, {"proxy": {"mode": "inbound-to"}}, body))
    assert banner == b"220 fw.example.net ESMTP\r\n"
    assert b"250-SIZE 10240000\r\n" in ehlo and b"250-PIPELINING\r\n" in ehlo
    (entry,) = [ln.split() for ln in read_conn_log(node)]
    assert entry[1] == "Xr"


@pytest_root
def test_inbound_to_offers_and_enforces_the_servers_size(lab, tmp_path) -> None:
    """The issue's finding: the proxy said SIZE 33554432 while mx says 10240000. Its SIZE is
    now the message_size_limit of the mail server behind it."""
    node = fw_node(lab, tmp_path / "fw")
    inet = socket_factory(lab["inet"])

    async def body(sink):
        return await _dialog(inet, b"EHLO ext.example.org\r\n"
                                   b"MAIL FROM:<a@example.org> SIZE=4096\r\n", b"552 ")

    _, replies = asyncio.run(_run_with(lab, node, {"proxy": {"mode": "inbound-to"}}, body,
                                       mail_sizes={"10.1.0.25": 2048}))
    assert b"250-SIZE 2048\r\n" in replies, replies
    assert replies[-1] == b"552 5.3.4 Message size exceeds fixed limit\r\n", replies
