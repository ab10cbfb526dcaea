"""Throwaway network namespaces for root tests, and sockets created inside them.

Everything here touches only namespaces it created (named ``lt-<random>``); the host's
own namespace is never configured.
"""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from lab.services import netns as _netns


@contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Switch this thread into /run/netns/NAME, then back to where it was."""
    with _netns.in_netns(f"/run/netns/{name}"):
        yield


def socket_factory(name: str):
    """A NodeContext socket_factory that makes non-blocking sockets in netns NAME."""
    return _netns.socket_factory(f"/run/netns/{name}")


def sh(*argv: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), input=input, capture_output=True, text=True, check=check,
                          timeout=30)


def ns_run(name: str):
    """A FirewallService ``run`` callable that executes argv inside netns NAME."""

    def run(argv: list[str], stdin: str | None) -> tuple[int, str, str]:
        p = subprocess.run(["ip", "netns", "exec", name, *argv], input=stdin,
                           capture_output=True, text=True, timeout=30, check=False)
        return p.returncode, p.stdout, p.stderr

    return run


PREFIX = "lt-"  # the named namespaces these helpers make (host snapshots leave them out)


class Namespaces:
    """Creates namespaces and veth pairs; ``close()`` deletes them and checks they are gone."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.names: list[str] = []

    def ns(self, role: str) -> str:
        name = f"{PREFIX}{self.tag}-{role}"
        sh("ip", "netns", "add", name)
        self.names.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def link(self, a: str, a_if: str, b: str, b_if: str) -> None:
        """A veth pair created inside namespace ``a``, one end moved to ``b``."""
        sh("ip", "-n", a, "link", "add", a_if, "type", "veth", "peer", "name", b_if,
           "netns", b)
        sh("ip", "-n", a, "link", "set", a_if, "up")
        sh("ip", "-n", b, "link", "set", b_if, "up")

    def close(self) -> list[str]:
        for name in reversed(self.names):
            sh("ip", "netns", "del", name, check=False)
        left = [n for n in self.names if os.path.exists(f"/run/netns/{n}")]
        self.names = []
        return left


def build_fw_topology(spaces: Namespaces) -> dict[str, str]:
    """inet (203.0.113.20) -- fw (203.0.113.1 + .25 alias | 10.1.0.1) -- lan (10.1.0.25, .100)."""
    inet, fw, lan = spaces.ns("inet"), spaces.ns("fw"), spaces.ns("lan")
    spaces.link(fw, "eth0", inet, "eth0")
    spaces.link(fw, "eth1", lan, "eth0")
    sh("ip", "-n", inet, "addr", "add", "203.0.113.20/24", "dev", "eth0")
    sh("ip", "-n", fw, "addr", "add", "203.0.113.1/24", "dev", "eth0")
    sh("ip", "-n", fw, "addr", "add", "203.0.113.25/24", "dev", "eth0")
    sh("ip", "-n", fw, "addr", "add", "10.1.0.1/24", "dev", "eth1")
    sh("ip", "-n", lan, "addr", "add", "10.1.0.25/24", "dev", "eth0")
    sh("ip", "-n", lan, "addr", "add", "10.1.0.100/24", "dev", "eth0")
    sh("ip", "-n", lan, "route", "add", "default", "via", "10.1.0.1")
    sh("ip", "netns", "exec", fw, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    return {"inet": inet, "fw": fw, "lan": lan}


# ---------------------------------------------------------------- shared firewall configs

BASE_FIREWALL = {
    "external": "inet",
    "internal": "lan",
    "dynamic_nat": True,
    "static_nat": [{"public": "203.0.113.25", "private": "10.1.0.25"}],
    "rules": [
        {"name": "smtp-in", "from": "any", "to": "203.0.113.25", "proto": "tcp", "port": 25},
        {"name": "dns-out", "from": "10.1.0.53", "to": "any", "proto": "udp", "port": 53},
        {"name": "dns-out-tcp", "from": "10.1.0.53", "to": "any", "proto": "tcp", "port": 53},
        {"name": "smtp-out", "from": "10.1.0.25", "to": "any", "proto": "tcp", "port": 25},
        {"name": "icmp", "from": "any", "to": "any", "proto": "icmp"},
        {"name": "fw-to-mx", "from": "fw", "to": "10.1.0.25", "proto": "tcp", "port": 25},
        {"name": "admin-out", "from": "10.1.0.100", "to": "any"},
    ],
    "proxy": {"mode": "none", "servers": ["10.1.0.25"], "domains": ["example.net"],
              "hostname": "fw.example.net"},
    "log_group": 1,
}


def firewall_data(**changes) -> dict:
    """A deep copy of BASE_FIREWALL with top-level keys replaced (proxy keys merged)."""
    import copy

    data = copy.deepcopy(BASE_FIREWALL)
    for key, value in changes.items():
        if key == "proxy":
            data["proxy"].update(value)
        else:
            data[key] = value
    return data


GOLDEN_CASES = {
    "base": {},
    "proxy_through": {"proxy": {"mode": "inbound-through"}},
    "proxy_to": {"proxy": {"mode": "inbound-to"}},
    "no_static_nat": {"static_nat": []},
    "no_dynamic_nat": {"dynamic_nat": False},
}


# ---------------------------------------------------------------- root-test plumbing

def require_root() -> None:
    import pytest

    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")


@contextmanager
def fw_topology() -> Iterator[dict[str, str]]:
    """The three-namespace firewall topology; always deleted, and checked gone, afterwards."""
    spaces = Namespaces()
    try:
        yield build_fw_topology(spaces)
    finally:
        left = spaces.close()
        assert not left, f"namespaces left behind: {left}"


FW_ADDRESSES = ["203.0.113.1", "203.0.113.25", "10.1.0.1"]


def fw_node(topology: dict[str, str], root):
    from lab.services.base import NodeContext

    return NodeContext("fw", root, addresses=list(FW_ADDRESSES),
                       socket_factory=socket_factory(topology["fw"]))


def make_firewall(topology: dict[str, str], node, **changes):
    from lab.model.firewall import FirewallConfig
    from lab.protocols.nftrules import FirewallAddresses
    from lab.services.firewall import FirewallService

    config = FirewallConfig.model_validate(firewall_data(**changes))
    return FirewallService(node, config, ns_run(topology["fw"]), "eth0", "eth1",
                           FirewallAddresses(["203.0.113.1/24"], ["10.1.0.1/24"]))


async def connect(factory, addr: tuple[str, int], timeout: float, source: str | None = None):
    """(reader, writer) for a TCP connection made by a socket from ``factory``."""
    import asyncio

    sock = factory(socket.AF_INET, socket.SOCK_STREAM, 0)
    try:
        if source:
            sock.bind((source, 0))
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, addr), timeout)
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


def listener(factory, addr: tuple[str, int]) -> socket.socket:
    sock = factory(socket.AF_INET, socket.SOCK_STREAM, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(addr)
    sock.listen(16)
    return sock


def read_conn_log(node) -> list[str]:
    path = node.path("/var/log/netguard/conn.log")
    return path.read_text().splitlines() if path.exists() else []
