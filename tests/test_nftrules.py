"""The nftables renderer and the firewall config model: golden rulesets, validation."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from netns_helpers import GOLDEN_CASES, firewall_data
from pydantic import ValidationError

from lab.model.firewall import FirewallConfig
from lab.protocols.nftrules import FirewallAddresses, render_ruleset

GOLDEN = Path(__file__).parent / "golden" / "nft"
ADDRS = FirewallAddresses(external=["203.0.113.1/24"], internal=["10.1.0.1/24"])


def render(**changes) -> str:
    return render_ruleset(FirewallConfig.model_validate(firewall_data(**changes)),
                          "eth0", "eth1", ADDRS)


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_golden_ruleset(case: str) -> None:
    text = render(**GOLDEN_CASES[case])
    path = GOLDEN / f"{case}.nft"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"ruleset for {case} differs from {path}"


def test_render_is_deterministic() -> None:
    assert render() == render()


def test_static_nat_and_masquerade_are_rendered() -> None:
    text = render()
    assert "ip daddr 203.0.113.25 meta mark set 0x4e470001 dnat to 10.1.0.25" in text
    assert 'oifname "eth0" ip saddr 10.1.0.25 snat to 203.0.113.25' in text
    assert 'oifname "eth0" ip saddr 10.1.0.0/24 masquerade' in text
    # static SNAT comes before the masquerade
    assert text.index("snat to 203.0.113.25") < text.index("masquerade")
    assert "masquerade" not in render(dynamic_nat=False)
    assert "dnat" not in render(static_nat=[])


def test_permit_to_static_public_matches_original_destination() -> None:
    text = render()
    assert ('ct original ip daddr 203.0.113.25 tcp dport 25 ct state new '
            'log prefix "P smtp-in" group 1 accept') in text
    # without the static NAT the same rule matches the plain destination (never forwarded)
    assert "ip daddr 203.0.113.25 tcp dport 25" in render(static_nat=[])


def test_fw_rules_go_to_output_only() -> None:
    text = render()
    fwd = text.split("chain forward")[1].split("chain output")[0]
    out = text.split("chain output")[1]
    assert "fw-to-mx" not in fwd
    assert ('oifname "eth1" ip daddr 10.1.0.25 tcp dport 25 ct state new '
            'log prefix "P fw-to-mx"') in out
    assert 'oifname "eth1" meta nfproto ipv4 drop' in out
    rules = [r for r in firewall_data()["rules"] if r["name"] != "fw-to-mx"]
    assert "fw-to-mx" not in render(rules=rules)


def test_proxy_modes() -> None:
    through = render(proxy={"mode": "inbound-through"})
    assert 'iifname "eth0" tcp dport 25 redirect to :2525' in through
    assert through.index("redirect") < through.index("dnat to")
    assert "tcp dport 2525 ct status dnat accept" in through
    assert "meta mark 0x4e47ffff accept" in through
    to = render(proxy={"mode": "inbound-to"})
    assert 'iifname "eth0" ip daddr 203.0.113.1 tcp dport 25 accept' in to
    assert "redirect" not in to
    assert "redirect" not in render() and "0x4e47ffff" not in render()


def test_prefixes_hold_only_rule_names_and_verdicts() -> None:
    text = render(proxy={"mode": "inbound-through"})
    names = {r["name"] for r in firewall_data()["rules"]}
    prefixes = re.findall(r'prefix "([^"]*)"', text)
    assert prefixes
    for prefix in prefixes:
        parts = prefix.split()
        assert parts == ["D"] or (parts[0] == "P" and parts[1] in names and len(parts) == 2)
    assert "comment" not in text


def test_tables_are_replaced_atomically() -> None:
    lines = render().splitlines()
    assert lines[:4] == [
        "table ip netguard_nat", "delete table ip netguard_nat",
        "table inet netguard", "delete table inet netguard",
    ]
    assert "flush ruleset" not in render()


def _error(**changes) -> str:
    with pytest.raises(ValidationError) as info:
        FirewallConfig.model_validate(firewall_data(**changes))
    return str(info.value)


def _rule(**fields) -> list[dict]:
    return [{"name": "r1", "from": "any", "to": "any", **fields}]


def test_unknown_proto_is_rejected() -> None:
    msg = _error(rules=_rule(proto="sctp"))
    assert "unknown proto 'sctp'" in msg and "tcp, udp, icmp, any" in msg


def test_port_without_tcp_or_udp_is_rejected() -> None:
    assert "a port needs proto tcp or udp" in _error(rules=_rule(proto="icmp", port=25))
    assert "a port needs proto tcp or udp" in _error(rules=_rule(port=25))


def test_bad_addresses_are_rejected() -> None:
    assert "'10.1.0.300' is not 'any', 'fw'" in _error(rules=_rule(to="10.1.0.300"))
    assert "public address 'mail.example.net' is not an IPv4 address" in _error(
        static_nat=[{"public": "mail.example.net", "private": "10.1.0.25"}])
    assert "proxy server '10.1.0' is not an IPv4 address" in _error(proxy={"servers": ["10.1.0"]})


def test_other_validation() -> None:
    assert "port 70000 is out of range" in _error(rules=_rule(proto="tcp", port=70000))
    assert "used twice" in _error(rules=_rule() + _rule())
    assert "rule name 'bad name!'" in _error(rules=[{"name": "bad name!", "from": "any",
                                                     "to": "any"}])
    assert "reserved" in _error(rules=[{"name": "default", "from": "any", "to": "any"}])
    assert "Extra inputs are not permitted" in _error(rules=_rule(action="accept"))
    assert "mapped twice" in _error(static_nat=[{"public": "203.0.113.25", "private": "10.1.0.25"},
                                                {"public": "203.0.113.25", "private": "10.1.0.26"}])


def test_bad_interface_name_is_rejected() -> None:
    config = FirewallConfig.model_validate(firewall_data())
    with pytest.raises(ValueError, match="bad interface name"):
        render_ruleset(config, 'eth0" accept', "eth1", ADDRS)
