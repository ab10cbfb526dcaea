"""The SMTP proxy: pure helpers, and real SMTP sessions through it in throwaway namespaces."""
from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from aiosmtpd.smtp import SMTP
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

from lab.services.base import NodeContext
from lab.services.proxy import SmtpProxy, SmtpRelayError, original_dst, smtp_send

MESSAGE = b"Subject: test\r\n\r\nhello\r\n.leading dot\r\n"


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


class Sink:
    """The internal mail server's handler: keeps what it receives."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.received.append((session.peer[0], envelope.mail_from, list(envelope.rcpt_tos),
                              envelope.original_content))
        return "250 2.0.0 queued"


async def _mail_server(lab, sink: Sink):
    lan = socket_factory(lab["lan"])
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: SMTP(sink, hostname="mx.example.net"),
                                    sock=listener(lan, ("10.1.0.25", 25)))


async def _run_with(lab, node, changes, body, connect_timeout=5.0):
    fw = make_firewall(lab, node, **changes)
    proxy = SmtpProxy(node, fw.config, "203.0.113.1", connect_timeout=connect_timeout)
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


@pytest_root
def test_inbound_through_relays_the_session(lab, tmp_path) -> None:
    node, client = fw_node(lab, tmp_path / "fw"), _client(lab, tmp_path)

    async def body(sink):
        final = await smtp_send(client, ("203.0.113.25", 25), "a@example.org",
                                ["b@example.net"], MESSAGE, "ext.example.org", mark=None)
        assert final == "250 2.0.0 queued"  # the mail server's own reply, relayed verbatim
        await asyncio.sleep(0.1)
        return sink.received

    received = asyncio.run(_run_with(lab, node, {"proxy": {"mode": "inbound-through"}}, body))
    assert received == [("10.1.0.1", "a@example.org", ["b@example.net"], MESSAGE)]
    lines = [ln.split() for ln in read_conn_log(node)]
    assert len(lines) == 1, lines
    assert lines[0][1:3] == ["X", "tcp"] and lines[0][4] == "203.0.113.25:25"
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
def test_inbound_to_relays_the_message(lab, tmp_path) -> None:
    node, client = fw_node(lab, tmp_path / "fw"), _client(lab, tmp_path)

    async def body(sink):
        final = await smtp_send(client, ("203.0.113.1", 25), "a@example.org",
                                ["b@example.net"], MESSAGE, "ext.example.org", mark=None)
        with pytest.raises(SmtpRelayError, match="554 5.7.1 Relay access denied"):
            await smtp_send(client, ("203.0.113.1", 25), "a@example.org",
                            ["c@example.com"], MESSAGE, "ext.example.org", mark=None)
        return final, sink.received

    final, received = asyncio.run(_run_with(lab, node, {"proxy": {"mode": "inbound-to"}}, body))
    assert final == "250 2.0.0 OK: relayed"
    assert received == [("10.1.0.1", "a@example.org", ["b@example.net"], MESSAGE)]
    lines = [ln.split() for ln in read_conn_log(node)]
    assert len(lines) == 1, lines
    assert lines[0][1] == "Xr" and lines[0][3].startswith("203.0.113.20:")
    assert lines[0][4:] == ["203.0.113.1:25", "proxy=inbound-to", "relay=10.1.0.25:25"]


@pytest_root
def test_inbound_to_without_reachable_server(lab, tmp_path) -> None:
    node, client = fw_node(lab, tmp_path / "fw"), _client(lab, tmp_path)

    async def body(sink):
        with pytest.raises(SmtpRelayError, match="451 4.4.1"):
            await smtp_send(client, ("203.0.113.1", 25), "a@example.org",
                            ["b@example.net"], MESSAGE, "ext.example.org", mark=None,
                            timeout=10)
        return sink.received

    received = asyncio.run(_run_with(
        lab, node, {"proxy": {"mode": "inbound-to", "servers": ["10.1.0.99"]}}, body,
        connect_timeout=1.0))
    assert received == []
    (entry,) = [ln.split() for ln in read_conn_log(node)]
    assert entry[1] == "D" and entry[4] == "203.0.113.1:25" and "proxy=inbound-to" in entry
