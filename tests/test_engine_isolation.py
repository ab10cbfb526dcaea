"""Nothing leaves the lab (docs/design.md, hard rule 1), and labs do not see each other.

While two labs run, the host's own namespace has no lab address, route, bridge or
interface, no new named namespace and an unchanged nftables ruleset.
"""
from __future__ import annotations

import ipaddress

import pytest

pytestmark = pytest.mark.root

LAB_SUBNETS = ["203.0.113.0/24", "198.51.100.0/24", "10.1.0.0/24"]
SEGMENTS = ["inet", "lan"]
MANY = 20


@pytest.fixture(scope="module")
def host_before_and_during(module_labs, host_view):
    """Host snapshots taken before two labs came up and while they run."""
    before = host_view()
    module_labs.up("t-iso-a")
    module_labs.up("t-iso-b")
    return before, host_view()


@pytest.fixture
def during(host_before_and_during):
    return host_before_and_during[1]


def _in(subnet: str, address: str) -> bool:
    return ipaddress.ip_interface(address).ip in ipaddress.ip_network(subnet)


@pytest.mark.parametrize("subnet", LAB_SUBNETS)
def test_host_has_no_lab_address(during, subnet):
    assert [a for a in during["addresses"] if _in(subnet, a)] == []


@pytest.mark.parametrize("subnet", LAB_SUBNETS)
def test_host_has_no_lab_route(during, subnet):
    net = ipaddress.ip_network(subnet)
    overlapping = [r for r in during["routes"] if r["dst"] != "default"
                   and ipaddress.ip_network(r["dst"], strict=False).overlaps(net)]
    via_lab = [r for r in during["routes"]
               if "gateway" in r and ipaddress.ip_address(r["gateway"]) in net]
    assert overlapping == [] and via_lab == []


@pytest.mark.parametrize("segment", SEGMENTS)
def test_host_has_no_segment_bridge(during, segment):
    assert segment not in during["bridges"]


@pytest.mark.parametrize("what", ["links", "bridges", "netns"])
def test_host_gets_no_new_interface_or_namespace(host_before_and_during, what):
    before, during = host_before_and_during
    new = set(during[what]) - set(before[what])
    assert sorted(new) == []


def test_host_nft_ruleset_unchanged(host_before_and_during):
    before, during = host_before_and_during
    assert during["nft"] == before["nft"]


def test_two_labs_of_one_topology_both_work_and_survive_each_other(labs, node_exec, host_view):
    a, b = labs.up("t-two-a"), labs.up("t-two-b")
    for lab in (a, b):
        p = node_exec(lab, "admin", "ping", "-c1", "-W2", "10.1.0.25")
        assert p.returncode == 0, f"{lab}: {p.stdout}{p.stderr}"
    down = labs.down(a)
    assert down.returncode == 0, down.stderr
    gone = node_exec(a, "admin", "true")
    assert gone.returncode == 1 and f"unknown lab '{a}'" in gone.stderr
    p = node_exec(b, "mx-ext", "ping", "-c1", "-W2", "203.0.113.1")
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.fixture(scope="module")
def many_labs(module_labs) -> list[str]:
    """Twenty mail-dmz labs started one after the other, all running together."""
    return [module_labs.up(f"t-many-{i:02d}") for i in range(MANY)]


@pytest.mark.slow
@pytest.mark.parametrize("index", range(MANY))
def test_twenty_labs_at_once_each_answers(many_labs, node_exec, index):
    p = node_exec(many_labs[index], "mx", "true")
    assert p.returncode == 0, p.stderr
