"""DNS benchmark: queries per second per server kind, against a baseline in the same run.

    sudo .venv/bin/python bench/dns_bench.py [--runs N] [--seconds S] [--code DIR]

In a network namespace of its own (``dnsbench-<pid>``, removed on exit) it starts, in
this process's asyncio loop as the lab's supervisor does, the DNS services of the
reference topology's DNS nodes on their own addresses (the root, the TLD, ns-ext, the
resolver) plus, as the baseline, a plain asyncio UDP server that answers every datagram
with one fixed reply packet (only the ID copied). dnsperf, a load generator written in
C, then sends the same query mix for ``--seconds`` to:

  * ``echo``: the baseline server;
  * ``authoritative``: ns-ext, every query answered from its zones;
  * ``recursive``: the resolver, with a warm cache (every name resolved once before).

Each round measures the three in turn; the medians over ``--runs`` rounds are printed with
their ratio to the baseline. ``--code DIR`` imports the ``lab`` package from another
checkout (for instance the main branch) so two versions can be compared on one machine.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

QUERIES = ["mail.example.net A", "example.net MX", "ns.example.net A", "example.com MX",
           "ws.example.com A", "nosuchhost.example.net A", "example.net TXT", "example.net SOA"]
ZONE = "example.net"  # the authoritative server measured is one that serves this zone
CLIENT = "203.0.113.100"  # where dnsperf sends from (ext-ws's address)
ECHO = "203.0.113.99"
KINDS = ("echo", "authoritative", "recursive")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--outstanding", type=int, default=20,
                        help="queries dnsperf keeps in flight (default 20)")
    parser.add_argument("--code", type=Path, help="a checkout whose lab package to measure")
    return parser.parse_args()


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30)


class EchoServer(asyncio.DatagramProtocol):
    """The baseline: one fixed reply for every datagram, with the request's ID."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply[2:]
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        if self.transport is not None and len(data) >= 2:
            self.transport.sendto(data[:2] + self.reply, addr)


def dns_nodes():
    """(node, DnsConfig, addresses) for every DNS server of the reference topology."""
    from labcli import PROJECT_ROOT

    from lab.model.dns import DnsConfig
    from lab.model.topology import load_topology

    topology = load_topology(PROJECT_ROOT / "topologies" / "mail-dmz.yaml")
    for name, node in topology.nodes.items():
        if "dns" in node.services:
            addresses = [str(i.address.ip) for i in node.interfaces]
            yield name, DnsConfig.model_validate(node.services["dns"]), addresses


async def dnsperf(ns: str, server: str, datafile: str, seconds: float,
                  outstanding: int) -> float:
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", ns, "dnsperf", "-s", server, "-a", CLIENT, "-d", datafile,
        "-l", f"{seconds:g}", "-q", str(outstanding), "-t", "2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    text = out.decode()
    m = re.search(r"Queries per second:\s+([\d.]+)", text)
    if proc.returncode != 0 or not m:
        raise SystemExit(f"dnsperf against {server} failed:\n{text}")
    return float(m.group(1))


async def measure(ns: str, args: argparse.Namespace) -> dict[str, list[float]]:
    from dnslib import DNSRecord

    from lab.services.base import NodeContext
    from lab.services.dns import DnsService
    from lab.services.netns import socket_factory

    make = socket_factory(f"/run/netns/{ns}")
    root = Path(tempfile.mkdtemp(prefix="dnsbench-"))
    services, servers = {}, {}
    for name, config, addresses in dns_nodes():
        services[name] = DnsService(NodeContext(name, root / name, addresses, make), config)
        if config.mode == "recursive":
            servers.setdefault("recursive", (name, addresses[0]))
        elif config.mode == "authoritative" and ZONE in config.zones:
            servers.setdefault("authoritative", (name, addresses[0]))
    servers["echo"] = ("echo", ECHO)
    transport = None
    try:
        for service in services.values():
            await service.start()
        auth = services[servers["authoritative"][0]]
        reply = await auth.answer(DNSRecord.question(f"mail.{ZONE}").pack(), CLIENT)
        sock = make(2, 2)  # AF_INET, SOCK_DGRAM
        sock.bind((ECHO, 53))
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: EchoServer(reply or b""), sock=sock)
        print("servers: " + ", ".join(f"{kind} {name} {address}"
                                      for kind, (name, address) in servers.items()))
        datafile = root / "queries"
        datafile.write_text("\n".join(QUERIES) + "\n")
        await dnsperf(ns, servers["recursive"][1], str(datafile), 0.5, 1)  # warm the cache
        results: dict[str, list[float]] = {kind: [] for kind in KINDS}
        for _ in range(args.runs):
            for kind in KINDS:
                results[kind].append(await dnsperf(ns, servers[kind][1], str(datafile),
                                                   args.seconds, args.outstanding))
        return results
    finally:
        if transport is not None:
            transport.close()
        for service in services.values():
            await service.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    args = parse_args()
    if os.geteuid() != 0:
        raise SystemExit("dns_bench needs root (it makes a network namespace)")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if args.code is not None:
        sys.path.insert(0, str(args.code.resolve()))
    import lab

    ns = f"dnsbench-{os.getpid()}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        for _, _, addresses in dns_nodes():
            for address in addresses:
                sh("ip", "-n", ns, "addr", "add", f"{address}/32", "dev", "lo")
        for address in (CLIENT, ECHO):
            sh("ip", "-n", ns, "addr", "add", f"{address}/32", "dev", "lo")
        results = asyncio.run(measure(ns, args))
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)
    base = statistics.median(results["echo"])
    print(f"lab package: {Path(lab.__file__).parent}")
    print(f"{args.runs} runs of {args.seconds:g} s each, dnsperf -q {args.outstanding}, "
          f"{len(QUERIES)} query names")
    for kind in KINDS:
        runs = results[kind]
        med = statistics.median(runs)
        print(f"{kind:14} median {med:9.0f} q/s  ({med / base:5.1%} of the baseline)  "
              f"runs: {' '.join(f'{r:.0f}' for r in runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
