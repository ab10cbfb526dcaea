"""The DNS service over real sockets on loopback (the world of ``dnsworld``): answers,
recursion and the cache, zone files, robustness, and the ordinary clients.

Root-free: every node uses the host socket factory. NS names of the root and TLD servers
are their address literals ("127.0.0.10.") so that `dig +trace`, which looks NS names up
with the system resolver, can follow the delegation too.
"""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import time

import pytest
from dnslib import DNSLabel, DNSRecord
from dnsworld import (
    ADDRESSES,
    AUTH_IP,
    RES_IP,
    World,
    exchange,
    free_port,
    rrs,
    run,
    tool,
    ttls,
)


@pytest.fixture
def world(tmp_path):
    return World(tmp_path, free_port())


# --- authoritative ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "name", "qtype", "rd", "rcode", "flags", "answer", "authority", "additional"),
    [
        ("auth", "example.net", "MX", True, "NOERROR", {"aa": 1, "ra": 0, "rd": 1},
         ["MX 10 mail.example.net."], [], ["A 203.0.113.25"]),
        ("auth", "www.example.net", "A", False, "NOERROR", {"aa": 1, "rd": 0},
         ["CNAME mail.example.net.", "A 203.0.113.25"], [], []),
        ("auth", "nope.example.net", "A", False, "NXDOMAIN", {"aa": 1},
         [], ["SOA ns.example.net. hostmaster.example.net. 2026112501 3600 600 86400 120"],
         []),
        ("auth", "mail.example.net", "MX", False, "NOERROR", {"aa": 1},
         [], ["SOA ns.example.net. hostmaster.example.net. 2026112501 3600 600 86400 120"],
         []),
        ("auth", "example.net", "NS", False, "NOERROR", {"aa": 1},
         ["NS ns.example.net."], [], ["A 127.0.0.53"]),
        ("tld", "www.example.net", "A", False, "NOERROR", {"aa": 0},
         [], ["NS ns.example.net."], ["A 127.0.0.53"]),
        ("root", "www.example.net", "A", False, "NOERROR", {"aa": 0},
         [], ["NS 127.0.0.11."], ["A 127.0.0.11"]),
        ("auth", "www.example.org", "A", True, "REFUSED", {"aa": 0, "ra": 0, "rd": 1},
         [], [], []),
    ],
)
def test_authoritative_answers(world, server, name, qtype, rd, rcode, flags, answer,
                               authority, additional):
    async def scenario():
        async with world:
            return await world.ask(server, name, qtype, rd=rd)

    reply = run(scenario())
    assert reply.header.id == 4242 and reply.header.qr == 1
    assert {"NOERROR": 0, "NXDOMAIN": 3, "REFUSED": 5}[rcode] == reply.header.rcode
    for flag, value in flags.items():
        assert getattr(reply.header, flag) == value, flag
    assert rrs(reply.rr) == answer
    assert rrs(reply.auth) == authority
    assert rrs(reply.ar) == additional


def test_negative_answer_soa_ttl_is_the_minimum(world):
    async def scenario():
        async with world:
            return await world.ask("auth", "nope.example.net", rd=False)

    assert ttls(run(scenario()).auth) == [120]


def test_tcp_gives_the_same_answer(world):
    async def scenario():
        async with world:
            udp = await world.ask("auth", "example.net", "MX")
            tcp = await world.ask("auth", "example.net", "MX", tcp=True)
            return udp, tcp

    udp, tcp = run(scenario())
    assert rrs(udp.rr) == rrs(tcp.rr) == ["MX 10 mail.example.net."]


@pytest.mark.parametrize(("edns", "tc", "answers"), [(None, 1, 0), (4096, 0, 2)])
def test_udp_truncation_respects_edns_size(world, edns, tc, answers):
    async def scenario():
        async with world:
            udp = await world.ask("auth", "big.example.net", "TXT", edns=edns)
            tcp = await world.ask("auth", "big.example.net", "TXT", tcp=True)
            return udp, tcp

    udp, tcp = run(scenario())
    assert (udp.header.tc, len(udp.rr)) == (tc, answers)
    assert str(udp.q.qname) == "big.example.net."
    assert len(tcp.rr) == 2 and tcp.header.tc == 0


# --- recursion and the cache -----------------------------------------------------------------


def test_iterative_resolution_then_cache_with_auth_server_stopped(world):
    async def scenario():
        async with world:
            first = await world.ask("resolver", "www.example.net")
            await world["auth"].stop()
            cached = await world["resolver"].healthy(), await world.ask(
                "resolver", "www.example.net")
            start = time.monotonic()
            world["resolver"].cache.clock = lambda: time.monotonic() + 100
            later = await world.ask("resolver", "www.example.net")
            assert time.monotonic() - start < 0.5  # no upstream query was attempted
            return first, cached, later

    first, (healthy, cached), later = run(scenario())
    assert healthy
    for reply in (first, cached, later):
        assert reply.header.rcode == 0 and reply.header.ra == 1 and reply.header.aa == 0
        assert rrs(reply.rr) == ["CNAME mail.example.net.", "A 203.0.113.25"]
    assert ttls(first.rr) == [300, 300]
    assert all(t >= 298 for t in ttls(cached.rr))
    assert all(195 <= t <= 200 for t in ttls(later.rr))  # counted down by the cache


@pytest.mark.parametrize(
    ("name", "qtype", "rcode"),
    [("nope.example.net", "A", 3), ("mail.example.net", "MX", 0)],
)
def test_negative_answers_are_cached(world, name, qtype, rcode):
    async def scenario():
        async with world:
            first = await world.ask("resolver", name, qtype)
            await world["auth"].stop()
            again = await world.ask("resolver", name, qtype)
            world["resolver"].cache.clock = lambda: time.monotonic() + 121
            expired = await world.ask("resolver", name, qtype)
            return first, again, expired

    first, again, expired = run(scenario())
    for reply in (first, again):
        assert reply.header.rcode == rcode and reply.rr == []
        assert rrs(reply.auth)[0].startswith("SOA ns.example.net.")
    assert ttls(first.auth) == [120] and ttls(again.auth)[0] <= 120
    assert expired.header.rcode == 2  # past the SOA minimum the auth server is needed again


def test_seeded_stale_record_is_served(world):
    async def scenario():
        async with world:
            world["resolver"].cache.seed("mail.example.net", "A", "198.51.100.99", ttl=86400)
            stale = await world.ask("resolver", "mail.example.net")
            truth = await world.ask("auth", "mail.example.net", rd=False)
            world["resolver"].cache.flush()
            fresh = await world.ask("resolver", "mail.example.net")
            return stale, truth, fresh

    stale, truth, fresh = run(scenario())
    assert rrs(stale.rr) == ["A 198.51.100.99"] and ttls(stale.rr)[0] > 86000
    assert rrs(truth.rr) == rrs(fresh.rr) == ["A 203.0.113.25"]


@pytest.mark.parametrize(
    ("name", "rcode", "answer", "min_seconds", "max_seconds"),
    [
        ("www.glueless.net", 0, ["A 203.0.113.80"], 0, 1.5),  # NS name resolved first
        ("www.slow.net", 0, ["A 203.0.113.81"], 0.7, 2.5),  # first NS silent: next one
        ("www.lame.net", 2, [], 0, 2.5),  # REFUSED + nothing listening: SERVFAIL
    ],
)
def test_resolution_paths(world, name, rcode, answer, min_seconds, max_seconds):
    async def scenario():
        async with world:
            start = time.monotonic()
            reply = await world.ask("resolver", name)
            return reply, time.monotonic() - start

    reply, elapsed = run(scenario())
    assert reply.header.rcode == rcode and rrs(reply.rr) == answer
    assert min_seconds <= elapsed <= max_seconds


@pytest.mark.parametrize(
    ("name", "aa", "answer"),
    [
        ("mail.example.net", 1, ["A 10.1.0.25"]),  # its own (internal) view of the zone
        ("www.glueless.net", 0, ["A 203.0.113.80"]),  # everything else by recursion
        ("ext.example.net", 0, ["CNAME www.glueless.net.", "A 203.0.113.80"]),
    ],
)
def test_split_mode(world, name, aa, answer):
    async def scenario():
        async with world:
            return await world.ask("split", name)

    reply = run(scenario())
    assert (reply.header.rcode, reply.header.aa, reply.header.ra) == (0, aa, 1)
    assert rrs(reply.rr) == answer


def test_recursion_refused_to_clients_outside_recursion_from(world):
    async def scenario():
        async with world:
            return await world.ask("closed", "www.example.net")

    reply = run(scenario())
    assert (reply.header.rcode, reply.header.ra, reply.rr) == (5, 0, [])


def test_resolution_is_bounded_in_time(world):
    async def scenario():
        async with world:
            for name in ("root", "tld"):
                await world[name].stop()
            start = time.monotonic()
            reply = await world.ask("resolver", "www.example.net")
            return reply, time.monotonic() - start

    reply, elapsed = run(scenario())
    assert reply.header.rcode == 2 and elapsed < 3.5


# --- zone files --------------------------------------------------------------------------------


LOG_LINE = re.compile(
    r"^\d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d\.\d{3} zone example\.net/IN: loading from "
    r"master file /etc/bind/db\.example\.net failed: db\.example\.net:7: record "
    r"'mail IN A 203\.0\.113\.300': '203\.0\.113\.300' is not a valid A address$")


def test_zone_file_edit_is_reloaded_and_a_broken_edit_keeps_old_data(world, tmp_path):
    zone_file = tmp_path / "auth" / "etc" / "bind" / "db.example.net"
    log_file = tmp_path / "auth" / "var" / "log" / "named.log"

    def edit(old: str, new: str) -> None:
        text = zone_file.read_text()
        assert old in text
        zone_file.write_text(text.replace(old, new))
        stat = zone_file.stat()  # make sure the mtime moves even on coarse clocks
        os.utime(zone_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))

    async def scenario():
        async with world:
            before = await world.ask("auth", "mail.example.net")
            edit("203.0.113.25", "203.0.113.26")
            edited = await world.ask("auth", "mail.example.net")
            edit("203.0.113.26", "203.0.113.300")
            broken = await world.ask("auth", "mail.example.net")
            return before, edited, broken

    before, edited, broken = run(scenario())
    assert rrs(before.rr) == ["A 203.0.113.25"]
    assert rrs(edited.rr) == ["A 203.0.113.26"]
    assert rrs(broken.rr) == ["A 203.0.113.26"]
    lines = log_file.read_text().splitlines()
    assert sum("zone example.net/IN: loaded serial 2026112501" in line for line in lines) == 2
    assert LOG_LINE.match(lines[-1]), lines[-1]
    assert zone_file.read_text().startswith("$ORIGIN example.net.\n$TTL 300\n")
    assert (tmp_path / "root" / "etc" / "bind" / "db.root").exists()


def test_restart_serves_the_zone_file_as_edited_and_empties_the_cache(world, tmp_path):
    """Like a real name server: a restart reads the zone files as they are now (a trainee's
    repair, or a fault, stays) and a restarted resolver starts with an empty cache."""
    zone_file = tmp_path / "auth" / "etc" / "bind" / "db.example.net"

    async def scenario():
        async with world:
            world["resolver"].cache.seed("mail.example.net", "A", "203.0.113.99", ttl=86400)
            zone_file.write_text(zone_file.read_text().replace("203.0.113.25", "203.0.113.26"))
            for name in ("auth", "resolver"):
                await world[name].stop()
                await world[name].start()
            auth = await world.ask("auth", "mail.example.net")
            resolved = await world.ask("resolver", "mail.example.net")
            return auth, resolved

    auth, resolved = run(scenario())
    assert rrs(auth.rr) == ["A 203.0.113.26"]
    assert rrs(resolved.rr) == ["A 203.0.113.26"]


# --- robustness --------------------------------------------------------------------------------


def test_garbage_does_not_stop_the_service(world):
    async def scenario():
        async with world:
            formerr = DNSRecord.parse(await exchange(
                AUTH_IP, world.port, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff"))
            loop = asyncio.get_running_loop()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.setblocking(False)
                await loop.sock_connect(s, (AUTH_IP, world.port))
                for junk in (b"", b"x", os.urandom(7), b"\xff" * 600):
                    await loop.sock_sendall(s, junk)
            closed = []
            for junk in (b"\x00\x05hello", b"\x00\x20" + b"\xff" * 32, b"GET / HTTP/1.0\r\n\r\n"):
                reader, writer = await asyncio.open_connection(AUTH_IP, world.port)
                writer.write(junk)
                writer.write_eof()
                closed.append(await asyncio.wait_for(reader.read(), 3))
                writer.close()
            reply = await world.ask("auth", "mail.example.net")
            return formerr, closed, reply, await world["auth"].healthy()

    formerr, closed, reply, healthy = run(scenario())
    assert (formerr.header.id, formerr.header.qr, formerr.header.rcode) == (0x1234, 1, 1)
    assert closed == [b"", b"", b""]
    assert rrs(reply.rr) == ["A 203.0.113.25"] and healthy


def test_stop_closes_the_listeners(world):
    async def scenario():
        async with world:
            up = await world["auth"].healthy()
            await world["auth"].stop()
            down = await world["auth"].healthy()
            with pytest.raises((ConnectionError, OSError)):
                await asyncio.open_connection(AUTH_IP, world.port)
            return up, down

    assert run(scenario()) == (True, False)


# --- real clients ----------------------------------------------------------------------------

needs_dig = pytest.mark.skipif(not shutil.which("dig"), reason="dig is not installed")


@needs_dig
@pytest.mark.parametrize(
    ("server", "args", "expected"),
    [
        ("auth", ["+norec", "example.net", "MX"],
         [r"status: NOERROR", r"flags: qr aa;", r"example\.net\.\s+300\s+IN\s+MX\s+10 mail"]),
        ("auth", ["+tcp", "mail.example.net"], [r"\(TCP\)", r"203\.0\.113\.25"]),
        ("auth", ["nope.example.net"], [r"status: NXDOMAIN", r"AUTHORITY: 1"]),
        ("auth", ["www.example.org"], [r"status: REFUSED"]),
        ("resolver", ["www.example.net"],
         [r"status: NOERROR", r"flags: qr rd ra;", r"CNAME\s+mail\.example\.net\.",
          r"mail\.example\.net\.\s+\d+\s+IN\s+A\s+203\.0\.113\.25"]),
        ("resolver", ["+trace", "www.glueless.net"],
         [r"net\.\s+86400\s+IN\s+NS\s+127\.0\.0\.11\.",
          r"glueless\.net\.\s+86400\s+IN\s+NS\s+127\.0\.0\.53\.",
          r"www\.glueless\.net\.\s+300\s+IN\s+A\s+203\.0\.113\.80",
          r"Received \d+ bytes from 127\.0\.0\.53#"]),
        ("closed", ["www.example.net"], [r"status: REFUSED", r"recursion requested but not"]),
    ],
)
def test_dig(world, server, args, expected):
    async def scenario():
        async with world:
            return await tool(["dig", "-p", str(world.port), f"@{ADDRESSES[server]}", *args])

    out = run(scenario())
    for pattern in expected:
        assert re.search(pattern, out), f"{pattern!r} not in:\n{out}"


@needs_dig
def test_nslookup_interactive_soa_and_mx(world):
    script = (f"server {RES_IP}\nset type=SOA\nexample.net\nset type=MX\nexample.net\n"
              f"set type=A\nnope.example.net\n").encode()

    async def scenario():
        async with world:
            return await tool(["nslookup", f"-port={world.port}"], stdin=script)

    out = run(scenario())
    assert re.search(r"origin = ns\.example\.net", out), out
    assert "mail addr = hostmaster.example.net" in out and "serial = 2026112501" in out
    assert "example.net\tmail exchanger = 10 mail.example.net." in out
    assert "** server can't find nope.example.net: NXDOMAIN" in out


@needs_dig
def test_host_mx(world):
    async def scenario():
        async with world:
            return await tool(["host", "-p", str(world.port), "-t", "MX", "example.net", RES_IP])

    assert "example.net mail is handled by 10 mail.example.net." in run(scenario())


def test_zone_names_are_case_insensitive_in_queries(world):
    async def scenario():
        async with world:
            return await world.ask("auth", "MAIL.Example.NET", rd=False)

    reply = run(scenario())
    assert reply.header.aa == 1 and rrs(reply.rr) == ["A 203.0.113.25"]
    assert DNSLabel("MAIL.Example.NET") == reply.q.qname

