"""A small DNS world on loopback for the DNS tests: a root, a TLD, an authoritative server
and resolvers, each a DnsService on its own 127.0.0.x address and one high port per test.

Root-free: every node uses the host socket factory. NS names of the root and TLD servers
are their address literals ("127.0.0.10.") so that `dig +trace`, which looks NS names up
with the system resolver, can follow the delegation too.
"""
from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path
from typing import Self

from dnslib import EDNS0, QTYPE, DNSHeader, DNSQuestion, DNSRecord

from lab.model.dns import DnsConfig
from lab.protocols.node import NodeContext
from lab.services.dns import TCP_IDLE, DnsService

ROOT_IP, TLD_IP, AUTH_IP, RES_IP, RES_CLOSED_IP = (
    "127.0.0.10", "127.0.0.11", "127.0.0.53", "127.0.0.9", "127.0.0.8")
DEAD_IP, SILENT_IP = "127.0.0.99", "127.0.0.98"  # nothing listens / a socket that never answers
XFR_CLIENT_IP = "127.0.0.2"  # the one client example.net allows to transfer the zone
DS_DIGEST = "49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE1A8E8AB71B6F0C1B4D2E4E8A"

SOA_ROOT = "@ SOA 127.0.0.10. hostmaster.example. 1 1800 900 604800 3600"
CONFIGS = {
    "root": {"mode": "authoritative", "zones": {".": {"ttl": 86400, "records": [
        SOA_ROOT, "@ NS 127.0.0.10.",
        "127.0.0.10. A 127.0.0.10", "127.0.0.11. A 127.0.0.11", "127.0.0.53. A 127.0.0.53",
        "net. NS 127.0.0.11.",
    ]}}},
    "tld": {"mode": "authoritative", "zones": {"net": {"ttl": 86400, "records": [
        "@ SOA 127.0.0.11. hostmaster.example. 1 1800 900 604800 3600",
        "@ NS 127.0.0.11.",
        "example NS ns.example.net.", "ns.example A 127.0.0.53",  # with glue
        f"example DS 12345 8 2 {DS_DIGEST}",  # the DS of example.net, on the parent side
        "glueless NS 127.0.0.53.",  # no glue: the resolver must look the name up
        "lame NS ns.lame.net.", "ns.lame A 127.0.0.53",  # a server that REFUSES
        "lame NS dead.lame.net.", "dead.lame A 127.0.0.99",  # a server that is not there
        "slow NS silent.slow.net.", "silent.slow A 127.0.0.98",  # never answers
        "slow NS ns.slow.net.", "ns.slow A 127.0.0.53",
    ]}}},
    "auth": {"mode": "authoritative", "zones": {
        "example.net": {"ttl": 300, "records": [
            "@ SOA ns.example.net. hostmaster.example.net. 2026112501 3600 600 86400 120",
            "@ NS ns.example.net.",
            "@ MX 10 mail.example.net.",
            "ns A 127.0.0.53",
            "mail A 203.0.113.25",
            "www CNAME mail",
            "big TXT " + " ".join(f'"{"x" * 200}"' for _ in range(2)),
            "big TXT " + " ".join(f'"{"y" * 200}"' for _ in range(2)),
            # RFC 4592: *.wild answers names below wild.example.net that do not exist;
            # ent.wild is an empty non-terminal (it exists, so the wildcard stops there)
            "*.wild A 203.0.113.77",
            "a.ent.wild TXT \"below an empty non-terminal\"",
            "*.alias CNAME mail",
            # more than the 1232 bytes this server sends over UDP
            *[f"huge TXT \"{c * 250}\" \"{c * 250}\"" for c in "abc"],
            # an answer that fits in 512 bytes whose additional addresses do not
            *[f"many MX {i} host-with-a-long-name-{i}" for i in range(8)],
            *[f"host-with-a-long-name-{i} A 203.0.113.{100 + i}" for i in range(8)],
            *[f"host-with-a-long-name-{i} AAAA 2001:db8::{i + 1}" for i in range(8)],
        ], "allow_transfer": [XFR_CLIENT_IP]},
        "glueless.net": {"ttl": 300, "records": [
            "@ SOA 127.0.0.53. hostmaster.glueless.net. 1 3600 600 86400 300",
            "@ NS 127.0.0.53.", "www A 203.0.113.80"]},
        "slow.net": {"ttl": 300, "records": [
            "@ SOA ns.slow.net. hostmaster.slow.net. 1 3600 600 86400 300",
            "@ NS silent.slow.net.", "@ NS ns.slow.net.", "www A 203.0.113.81",
            "silent A 127.0.0.98", "ns A 127.0.0.53"]},
    }},
    "resolver": {"mode": "recursive",
                 "root_hints": [{"name": "127.0.0.10.", "address": ROOT_IP}]},
    "split": {"mode": "split", "recursion_from": ["127.0.0.0/8"],
              "root_hints": [{"name": "127.0.0.10.", "address": ROOT_IP}],
              "zones": {"example.net": {"ttl": 60, "records": [
                  "@ SOA ns hostmaster 7 3600 600 86400 60", "@ NS ns", "ns A 127.0.0.7",
                  "mail A 10.1.0.25", "ext CNAME www.glueless.net."]}}},
    "closed": {"mode": "recursive", "recursion_from": ["10.0.0.0/8"],
               "root_hints": [{"name": "127.0.0.10.", "address": ROOT_IP}]},
}
ADDRESSES = {"root": ROOT_IP, "tld": TLD_IP, "auth": AUTH_IP, "resolver": RES_IP,
             "closed": RES_CLOSED_IP, "split": "127.0.0.7"}


def free_port() -> int:
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
        try:
            for ip in ADDRESSES.values():
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    with socket.socket(socket.AF_INET, kind) as s:
                        s.bind((ip, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


class World:
    """The services of ``CONFIGS`` on one port; ``async with`` starts and stops them."""

    def __init__(self, root: Path, port: int, tcp_idle: float = TCP_IDLE) -> None:
        self.port = port
        self.services = {
            name: DnsService(NodeContext(name, root / name, [ADDRESSES[name]]),
                             DnsConfig.model_validate(CONFIGS[name]), port=port,
                             upstream_port=port, tcp_idle=tcp_idle)
            for name in CONFIGS
        }
        self.silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.silent.bind((SILENT_IP, port))

    def __getitem__(self, name: str) -> DnsService:
        return self.services[name]

    async def __aenter__(self) -> Self:
        for service in self.services.values():
            await service.start()
        return self

    async def __aexit__(self, *exc) -> None:
        for service in self.services.values():
            await service.stop()
        self.silent.close()

    async def ask(self, server: str, name: str, qtype: str = "A", rd: bool = True,
                  tcp: bool = False, edns: int | None = None, timeout: float = 5.0) -> DNSRecord:
        request = DNSRecord(DNSHeader(id=4242, rd=int(rd)),
                            q=DNSQuestion(name, getattr(QTYPE, qtype)))
        if edns:
            request.add_ar(EDNS0(udp_len=edns))
        raw = await exchange(ADDRESSES[server], self.port, request.pack(), tcp, timeout)
        return DNSRecord.parse(raw)

    async def client(self, program: str, server: str, *args: str) -> str:
        """What ``dig``/``kdig`` print for ``args`` asked of ``server``."""
        return await tool([program, "-p", str(self.port), f"@{ADDRESSES[server]}", *args])


async def exchange(ip: str, port: int, packet: bytes, tcp: bool = False,
                   timeout: float = 5.0, source: str | None = None) -> bytes:
    """Send one request (from ``source`` if given) and return the first reply's bytes."""
    loop = asyncio.get_running_loop()
    kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.setblocking(False)
        if source:
            sock.bind((source, 0))
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (ip, port))
            if not tcp:
                await loop.sock_sendall(sock, packet)
                return await loop.sock_recv(sock, 65535)
            await loop.sock_sendall(sock, struct.pack("!H", len(packet)) + packet)
            data = b""
            while len(data) < 2 or len(data) < 2 + struct.unpack("!H", data[:2])[0]:
                chunk = await loop.sock_recv(sock, 65535)
                if not chunk:
                    raise ConnectionError("closed")
                data += chunk
            return data[2:2 + struct.unpack("!H", data[:2])[0]]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def rrs(section) -> list[str]:
    return [" ".join(str(rr).split()[3:]) for rr in section]


def ttls(section) -> list[int]:
    return [rr.ttl for rr in section]


async def tool(argv: list[str], stdin: bytes | None = None) -> str:
    """Run a real client (dig, kdig, nslookup...) and return what it printed."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(stdin), 15)
    return out.decode()


def ask(world: World, server: str, *args: str, program: str = "dig") -> str:
    """Start ``world``, run ``program`` (dig, kdig) with ``args`` against ``server``, stop."""
    async def scenario():
        async with world:
            return await world.client(program, server, *args)

    return run(scenario())
