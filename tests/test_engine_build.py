"""Building the reference topology: every node is exactly what topologies/mail-dmz.yaml says,
routes and forwards, and sees its own files (docs/design.md, hard rule 3).

One lab (``t-build``) serves the whole module; tests that change it undo their change.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.root

LAB = "t-build"
TOPOLOGY = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "topologies" / "mail-dmz.yaml").read_text())
NODES = TOPOLOGY["nodes"]
PRIVATE_DIRS = ["/var/mail", "/var/spool", "/var/log"]


def expected_addresses(node: dict) -> dict[str, set[str]]:
    """Interface name -> its IPv4 addresses with prefix, from the YAML."""
    return {f"eth{i}": {intf["address"], *intf.get("aliases", [])}
            for i, intf in enumerate(node["interfaces"])}


@pytest.fixture(scope="module")
def lab(module_labs) -> str:
    return module_labs.up(LAB)


@pytest.fixture
def run(lab, node_exec):
    """``run(node, *cmd)``: `lab exec` in the module's lab."""
    return lambda node, *cmd, **kw: node_exec(lab, node, *cmd, **kw)


def checked(p) -> str:
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.mark.parametrize("node", sorted(NODES))
def test_node_has_exactly_its_addresses(run, node):
    links = json.loads(checked(run(node, "ip", "-j", "addr", "show")))
    found = {link["ifname"]: {f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"]
                              if a["family"] == "inet"}
             for link in links if link["ifname"] != "lo"}
    assert found == expected_addresses(NODES[node])


def test_fw_has_its_static_nat_alias(run):
    links = json.loads(checked(run("fw", "ip", "-j", "addr", "show", "dev", "eth0")))
    assert "203.0.113.25" in {a["local"] for a in links[0]["addr_info"]}


@pytest.mark.parametrize("node", sorted(NODES))
def test_default_route_is_the_gateway(run, node):
    routes = json.loads(checked(run(node, "ip", "-j", "-4", "route", "show", "default")))
    gateways = [r.get("gateway") for r in routes]
    assert gateways == ([NODES[node]["gateway"]] if "gateway" in NODES[node] else [])


@pytest.mark.parametrize("node", ["mx", "ns-int", "admin"])
def test_lan_hosts_route_via_fw(run, node):
    routes = json.loads(checked(run(node, "ip", "-j", "-4", "route", "show", "default")))
    assert [(r["gateway"], r["dev"]) for r in routes] == [("10.1.0.1", "eth0")]


@pytest.mark.parametrize("node", sorted(NODES))
def test_ip_forward_only_where_asked(run, node):
    value = checked(run(node, "sysctl", "-n", "net.ipv4.ip_forward")).strip()
    assert value == ("1" if NODES[node].get("forwarding") else "0")


@pytest.fixture
def masquerade(run):
    """Dynamic NAT on fw for the LAN out of eth0; removed afterwards."""
    rules = [
        ["nft", "add", "table", "ip", "t"],
        ["nft", "add", "chain", "ip", "t", "post",
         "{ type nat hook postrouting priority 100 ; }"],
        ["nft", "add", "rule", "ip", "t", "post", "ip", "saddr", "10.1.0.0/24",
         "oifname", "eth0", "masquerade"],
    ]
    for rule in rules:
        checked(run("fw", *rule))
    yield
    checked(run("fw", "nft", "delete", "table", "ip", "t"))


def test_lan_reaches_internet_through_fw_nat(run, masquerade):
    p = run("admin", "ping", "-c2", "-i0.2", "-W2", "203.0.113.20")
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize("node", sorted(NODES))
def test_resolv_conf_is_the_nodes_own(run, node):
    lines = checked(run(node, "cat", "/etc/resolv.conf")).splitlines()
    assert [ln.split()[1] for ln in lines if ln.startswith("nameserver")] == \
        NODES[node]["nameservers"]
    search = [ln.split()[1:] for ln in lines if ln.startswith("search")]
    assert search == ([NODES[node]["search"]] if "search" in NODES[node] else [])


@pytest.mark.parametrize(("node", "nameserver"), [
    ("mx", "10.1.0.53"), ("ns-int", "10.1.0.53"), ("admin", "10.1.0.53"),
    ("dns-root", "203.0.113.9"), ("mx-ext", "203.0.113.9"), ("ext-ws", "203.0.113.9"),
])
def test_resolver_by_side(run, node, nameserver):
    assert f"nameserver {nameserver}" in checked(run(node, "cat", "/etc/resolv.conf")).splitlines()


@pytest.mark.parametrize("node", sorted(NODES))
def test_hosts_file_is_the_nodes_own(run, node):
    own = NODES[node]["interfaces"][0]["address"].split("/")[0]
    entries = [ln.split() for ln in checked(run(node, "cat", "/etc/hosts")).splitlines()]
    assert [own, node] in entries
    listed = {name for entry in entries for name in entry[1:]}
    others = {n for n in NODES if n != node} - set(NODES[node].get("hosts", {}))
    assert not others & listed


@pytest.mark.parametrize("node", ["fw", "admin"])
def test_hostname_file(run, node):
    assert checked(run(node, "cat", "/etc/hostname")).strip() == node


@pytest.mark.parametrize("directory", PRIVATE_DIRS)
def test_private_dirs_are_private(run, directory):
    name = f"lab-test-{secrets.token_hex(4)}"
    path = f"{directory}/{name}"
    checked(run("mx", "sh", "-c", f"echo private > {path}"))
    try:
        assert checked(run("mx", "cat", path)) == "private\n"
        assert run("admin", "test", "-e", path).returncode == 1
        assert run("mx-ext", "test", "-e", path).returncode == 1
        assert not Path(path).exists()
    finally:
        run("mx", "rm", "-f", path)


@pytest.mark.parametrize("node", ["fw", "mx", "ext-ws"])
def test_lab_state_is_hidden(run, lab, node, state_root):
    """The lab's state (control socket, state.json) and the attempt records are not in
    the node's file system at all: its root is built from an allowlist. (The node's /run
    is its own: it holds only the trainee channel.)"""
    results = os.environ.get("LAB_RESULTS", "/var/lib/lab/results")
    for path in (state_root, state_root / lab / "state.json", "/run/lab", results,
                 "/var/lib/lab"):
        assert run(node, "test", "-e", str(path)).returncode == 1, path
    assert checked(run(node, "ls", "-A", "/run")).split() == ["lab-node", "lock"]


def test_node_shells_are_dash_without_echo(lab, lab_state):
    """The shells Mininet drives (one per node and segment) are dash without job control
    on a terminal that does not echo: what lets Mininet skip its `stty -echo; set +m`
    (lab.engine.mnnodes). A Mininet whose shell command changed would start its bash."""
    import termios

    shells = {name: rec["pid"] for name, rec in lab_state(lab)["nodes"].items()}
    assert set(shells) == {*NODES, *TOPOLOGY["segments"]}
    for name, pid in shells.items():
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
        assert argv == ["dash", "-i", "+m", "-s", f"mininet:{name}"], name
        tty = os.open(f"/proc/{pid}/fd/0", os.O_RDONLY | os.O_NOCTTY)
        try:
            assert not termios.tcgetattr(tty)[3] & termios.ECHO, name
        finally:
            os.close(tty)
