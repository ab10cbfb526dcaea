"""Issue 11, DNS on the wire: what BIND 9.18 does, checked with dig and kdig and with
hand-made packets for what no client sends (the loopback world of ``dnsworld``).

EDNS (RFC 6891 6.1.3 BADVERS, RFC 3225 DO), FORMERR where BIND's parser rejects a
request, the class/opcode/type checks before a lookup, UDP replies within the requestor's
size and the server's own 1232 bytes, and TCP connections limited per client.
"""
from __future__ import annotations

import asyncio
import random
import re
import shutil
import socket
import struct

import pytest
from dnslib import EDNS0, QTYPE, DNSHeader, DNSQuestion, DNSRecord
from dnsworld import ADDRESSES, AUTH_IP, World, ask, exchange, free_port, run

from lab.protocols.dnswire import parse_query
from lab.services.dns import MAX_TCP_PER_CLIENT

needs_clients = pytest.mark.skipif(not (shutil.which("dig") and shutil.which("kdig")),
                                   reason="dig and kdig (bind9-dnsutils, knot-dnsutils) needed")
SERVERS = ["root", "tld", "auth", "resolver", "split"]  # authoritative and recursive
FORMERR, NOTIMP, REFUSED = 1, 4, 5


@pytest.fixture
def world(tmp_path):
    return World(tmp_path, free_port())


# --- EDNS -------------------------------------------------------------------------------------


@needs_clients
@pytest.mark.parametrize("server", SERVERS)
def test_edns_version_1_gets_badvers_with_version_0_dig(world, server):
    out = ask(world, server, "+edns=1", "+noednsneg", "example.net", "SOA")
    assert "status: BADVERS" in out, out
    assert re.search(r"; EDNS: version: 0, flags:; udp: 1232", out), out
    assert "ANSWER: 0" in out and ";example.net.\t\t\tIN\tSOA" in out


@needs_clients
@pytest.mark.parametrize("server", ["auth", "resolver"])
def test_edns_version_1_gets_badvers_kdig(world, server):
    out = ask(world, server, "+edns=1", "example.net", "SOA", program="kdig")
    assert "status: BADVERS" in out, out
    assert ";; Version: 0; flags: ; UDP size: 1232 B; ext-rcode: BADVERS" in out, out


@needs_clients
@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(("args", "flags"), [(["+dnssec"], "do"), ([], "")])
def test_do_bit_is_copied_dig(world, server, args, flags):
    out = ask(world, server, *args, "example.net", "SOA")
    assert "status: NOERROR" in out, out
    assert f"; EDNS: version: 0, flags:{' ' + flags if flags else ''}; udp: 1232" in out, out


@needs_clients
@pytest.mark.parametrize("server", ["auth", "resolver"])
def test_do_bit_is_copied_kdig(world, server):
    out = ask(world, server, "+dnssec", "mail.example.net", program="kdig")
    assert ";; Version: 0; flags: do; UDP size: 1232 B; ext-rcode: NOERROR" in out, out


# --- FORMERR, as BIND's parser decides --------------------------------------------------------


def wire_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\0"


def header(ident: int = 0x4242, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0,
           ar: int = 0) -> bytes:
    return struct.pack("!6H", ident, flags, qd, an, ns, ar)


QUESTION = wire_name("mail.example.net") + struct.pack("!HH", 1, 1)


def opt(owner: bytes = b"\0", size: int = 1232, ttl: int = 0, rdata: bytes = b"") -> bytes:
    return owner + struct.pack("!HHIH", 41, size, ttl, len(rdata)) + rdata


MALFORMED = {
    # (packet, the question echoed?)
    "two OPT records": (header(ar=2) + QUESTION + opt() + opt(), True),
    "OPT not owned by the root": (header(ar=1) + QUESTION + opt(owner=wire_name("x")), True),
    "OPT in the authority section": (header(ns=1) + QUESTION + opt(), True),
    "EDNS option longer than the OPT": (header(ar=1) + QUESTION + opt(rdata=b"\0\x0a\0\x09x"),
                                        True),
    "label type 0x40": (header() + b"\x41" + b"a" * 20 + b"\0" + b"\0\1\0\1", False),
    "label type 0x80": (header() + b"\x81" + b"a" * 20 + b"\0" + b"\0\1\0\1", False),
    "name of 256 octets": (header() + (b"\x3f" + b"a" * 63) * 3 + b"\x3e"
                           + b"b" * 62 + b"\0" + b"\0\1\0\1", False),
    "forward compression pointer": (header() + b"\xc0\x20" + b"\0\1\0\1" + b"\0" * 20, False),
    "two different questions": (header(qd=2) + QUESTION + wire_name("www.example.net")
                                + b"\0\1\0\1", False),
    "a record of another class": (header(ar=1) + QUESTION + wire_name("x")
                                  + struct.pack("!HHIH", 1, 3, 0, 4) + b"\1\2\3\4", True),
}


def _reply(world: World, packet: bytes, tcp: bool = False) -> DNSRecord:
    async def scenario():
        async with world:
            return await exchange(AUTH_IP, world.port, packet, tcp=tcp)

    return DNSRecord.parse(run(scenario()))


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize("case", list(MALFORMED))
def test_formerr_where_bind_rejects_the_request(world, case, tcp):
    packet, echoed = MALFORMED[case]
    reply = _reply(world, packet, tcp)
    assert (reply.header.id, reply.header.qr, reply.header.rcode) == (0x4242, 1, FORMERR)
    assert (reply.header.aa, reply.header.rd) == (0, 1)
    assert [str(q.qname) for q in reply.questions] == (["mail.example.net."] if echoed else [])
    assert reply.rr == reply.auth == reply.ar == []  # no OPT either: BIND adds none


def test_name_of_255_octets_is_not_formerr(world):
    name = (b"\x3f" + b"a" * 63) * 3 + b"\x3d" + b"b" * 61 + b"\0"  # 255 octets with the root
    assert len(name) == 255
    reply = _reply(world, header() + name + b"\0\1\0\1")
    assert reply.header.rcode == REFUSED  # a fine request, for a zone not served here


def test_trailing_bytes_are_ignored_as_bind_does(world):
    """BIND 9.18 only logs "message has N byte(s) of trailing garbage" and answers."""
    reply = _reply(world, header(ar=1) + QUESTION + opt() + b"\xde\xad\xbe\xef")
    assert reply.header.rcode == 0 and reply.header.aa == 1
    assert [str(rr.rdata) for rr in reply.rr] == ["203.0.113.25"]


@pytest.mark.parametrize(("packet", "rcode"), [
    (header() + wire_name("mail.example.net") + struct.pack("!HH", 1, 3), REFUSED),  # CH
    (header() + wire_name("mail.example.net") + struct.pack("!HH", 1, 255), FORMERR),  # ANY
    (header() + wire_name("mail.example.net") + struct.pack("!HH", 1, 42), NOTIMP),
    (header() + wire_name("example.net") + struct.pack("!HH", 254, 1), NOTIMP),  # MAILA
    (header() + wire_name("example.net") + struct.pack("!HH", 250, 1), FORMERR),  # TSIG
    (header(qd=0), FORMERR),
    (header(flags=0x2900) + QUESTION, NOTIMP),  # opcode 5 (UPDATE): not served here
], ids=["class CH", "class ANY", "class 42", "qtype MAILA", "qtype TSIG", "no question",
        "opcode UPDATE"])
def test_checks_before_a_lookup(world, packet, rcode):
    assert _reply(world, packet).header.rcode == rcode


def test_parse_query_reads_edns_from_any_bytes():
    request = DNSRecord.question("mail.example.net")
    request.add_ar(EDNS0(udp_len=4096, flags="do"))
    query = parse_query(bytearray(request.pack()))  # what dnslib's pack() returns
    assert (query.edns.version, query.edns.udp_size, query.edns.do) == (0, 4096, True)
    assert query.udp_limit() == 1232 and str(query.questions[0].qname) == "mail.example.net."


def _mutated(rnd: random.Random, packet: bytes) -> bytes:
    data = bytearray(packet)
    for _ in range(rnd.randint(1, 4)):
        at = rnd.randrange(len(data)) if data else 0
        match rnd.randrange(5):
            case 0:
                data[at:at + 1] = bytes([rnd.randrange(256)])
            case 1:
                del data[at:]
            case 2:
                data[at:at] = rnd.randbytes(rnd.randint(1, 8))
            case 3:
                data += rnd.randbytes(rnd.randint(1, 40))
            case 4:
                data[at:at + 2] = b"\xc0" + bytes([rnd.randrange(256)])  # a pointer
    if len(data) > 2:
        data[2] &= 0x7F  # a request, so that it is not simply dropped
    return bytes(data)


def test_ten_thousand_mutated_requests_crash_nothing(world):
    """Every reply is a well-formed response to its request; never a SERVFAIL (the sign of
    an exception while answering); afterwards the server answers as before."""
    rnd = random.Random(11)
    seeds = [DNSRecord.question(name, qtype).pack() for name, qtype in (
        ("mail.example.net", "A"), ("x.wild.example.net", "MX"), ("example.net", "DS"),
        ("example.net", "AXFR"), ("huge.example.net", "TXT"))]
    with_edns = DNSRecord.question("example.net", "SOA")
    with_edns.add_ar(EDNS0(udp_len=4096, flags="do"))
    seeds.append(with_edns.pack())

    async def scenario():
        seen: dict[int | str, int] = {}
        async with world:
            for _ in range(10_000):
                packet = _mutated(rnd, rnd.choice(seeds))
                replies = await world["auth"].respond(packet, "127.0.0.1", tcp=rnd.random() < .2)
                for reply in replies:
                    assert len(packet) >= 12 and reply[:2] == packet[:2], (packet, reply)
                    assert reply[2] & 0x80 and len(reply) >= 12, (packet, reply)
                    seen[reply[3] & 0xF] = seen.get(reply[3] & 0xF, 0) + 1
                if not replies:
                    seen["dropped"] = seen.get("dropped", 0) + 1
            return seen, await world.ask("auth", "mail.example.net")

    seen, after = run(scenario())
    assert 2 not in seen, seen
    assert seen.get(FORMERR, 0) > 500 and seen.get(0, 0) > 500, seen  # both paths taken
    assert [str(rr.rdata) for rr in after.rr] == ["203.0.113.25"]


# --- sizes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("edns", "limit"), [(None, 512), (600, 600), (4096, 1232),
                                             (65535, 1232)])
def test_udp_reply_never_exceeds_either_size(world, edns, limit):
    async def scenario():
        async with world:
            request = DNSRecord(DNSHeader(id=7), q=DNSQuestion("huge.example.net", QTYPE.TXT))
            if edns:
                request.add_ar(EDNS0(udp_len=edns))
            udp = await exchange(AUTH_IP, world.port, request.pack())
            tcp = await exchange(AUTH_IP, world.port, request.pack(), tcp=True)
            return udp, tcp

    udp, tcp = run(scenario())
    truncated, full = DNSRecord.parse(udp), DNSRecord.parse(tcp)
    assert len(udp) <= limit and truncated.header.tc == 1
    assert [rr.rtype for rr in truncated.ar] == ([QTYPE.OPT] if edns else [])
    assert len(tcp) > 1232 and full.header.tc == 0 and len(full.rr) == 3


def test_additional_data_goes_before_truncation(world):
    """Minimal responses: addresses that do not fit are left out, the answer stays whole
    and TC stays clear."""
    async def scenario():
        async with world:
            return (await world.ask("auth", "many.example.net", "MX"),
                    await world.ask("auth", "many.example.net", "MX", tcp=True))

    udp, tcp = run(scenario())
    assert udp.header.tc == 0 and len(udp.rr) == len(tcp.rr) == 8
    assert 0 < len(udp.ar) < len(tcp.ar) == 16
    assert len(udp.pack()) <= 512


@needs_clients
@pytest.mark.parametrize("server", ["auth", "resolver"])
def test_dig_retries_a_truncated_answer_over_tcp(world, server):
    out = ask(world, server, "+bufsize=4096", "huge.example.net", "TXT")
    assert ";; Truncated, retrying in TCP mode." in out, out
    assert "ANSWER: 3," in out and "(TCP)" in out


# --- TCP: one client cannot lock the others out ------------------------------------------------


async def _stalled(ip: str, port: int, count: int, source: str) -> list[socket.socket]:
    loop = asyncio.get_running_loop()
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.bind((source, 0))
        await loop.sock_connect(sock, (ip, port))
        socks.append(sock)
    return socks


async def _closed_by_server(sock: socket.socket, wait: float) -> bool:
    try:
        return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 1), wait) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


@needs_clients
def test_stalled_tcp_connections_from_one_client_do_not_lock_out_others(world):
    async def scenario():
        async with world:
            socks = await _stalled(AUTH_IP, world.port, 3 * MAX_TCP_PER_CLIENT, "127.0.0.1")
            try:
                await asyncio.sleep(0.2)
                closed = [await _closed_by_server(s, 0.05) for s in socks]
                other = await world.client("dig", "auth", "-b", "127.0.0.3", "+tcp",
                                           "+time=1", "+tries=1", "mail.example.net")
            finally:
                for sock in socks:
                    sock.close()
            return closed, other

    closed, other = run(scenario())
    assert closed.count(False) == MAX_TCP_PER_CLIENT  # held open; every extra one refused
    assert "status: NOERROR" in other and "203.0.113.25" in other, other


def test_tcp_idle_connections_are_dropped(tmp_path):
    world = World(tmp_path, free_port(), tcp_idle=0.3)

    async def scenario():
        async with world:
            (sock,) = await _stalled(AUTH_IP, world.port, 1, "127.0.0.1")
            with sock:
                return await _closed_by_server(sock, 3.0)

    assert run(scenario())


def test_tcp_connection_answers_several_requests(world):
    """RFC 7766 6.2.1: a client may send several requests on one connection."""
    async def scenario():
        async with world:
            reader, writer = await asyncio.open_connection(ADDRESSES["auth"], world.port)
            replies = []
            for name in ("mail.example.net", "www.example.net"):
                packet = DNSRecord.question(name).pack()
                writer.write(struct.pack("!H", len(packet)) + packet)
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                replies.append(DNSRecord.parse(await reader.readexactly(length)))
            writer.close()
            return replies

    first, second = run(scenario())
    assert str(first.rr[0].rdata) == "203.0.113.25" and len(second.rr) == 2
