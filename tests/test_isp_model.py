"""The config models and roles behind the isp-relay topology, without a lab: next hops in
Postfix's syntax, relay domains, DNS forwarders, a three-legged firewall, the roles of the
new shape, and faults that refuse a topology without the roles they need."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from lab.engine.attempt import params_models
from lab.engine.lifecycle import resolve_topology
from lab.errors import LabError
from lab.faults import CATALOG
from lab.faults.draw import scenario_problems
from lab.model.dns import DnsConfig
from lab.model.firewall import FirewallConfig
from lab.model.mta import MtaConfig, parse_nexthop, parse_transport
from lab.model.roles import derive_roles
from lab.model.scenario_check import check_scenario
from lab.model.source import FileError
from lab.model.topology import Topology, load_topology
from lab.protocols.nftrules import FirewallAddresses, render_ruleset
from lab.scoring.causes import CAUSE_IDS

ROOT = Path(__file__).resolve().parents[1]
ISP = ROOT / "topologies" / "isp-relay.yaml"
MAIL_DMZ = ROOT / "topologies" / "mail-dmz.yaml"
GOLDEN = Path(__file__).parent / "golden" / "nft"


# --- next hops, relay domains ---------------------------------------------------------------


@pytest.mark.parametrize(("text", "host", "port", "mx"), [
    ("smtp.isp.test", "smtp.isp.test", 25, True),
    ("smtp.isp.test:587", "smtp.isp.test", 587, True),
    ("[smtp.isp.test]", "smtp.isp.test", 25, False),
    ("[192.168.10.25]:2525", "192.168.10.25", 2525, False),
    ("[SMTP.ISP.TEST.]", "smtp.isp.test", 25, False),
])
def test_next_hops_in_postfix_syntax(text, host, port, mx):
    hop = parse_nexthop(text)
    assert (hop.host, hop.port, hop.mx) == (host, port, mx)
    assert parse_nexthop(str(hop)) == hop


@pytest.mark.parametrize("text", ["", "[smtp", "smtp:99999", "a b", "[x]:", "smtp:[x]"])
def test_bad_next_hops_are_refused(text):
    with pytest.raises(ValueError):
        parse_nexthop(text)


@pytest.mark.parametrize(("entry", "hop"), [
    ("smtp:[192.168.10.25]", "[192.168.10.25]"), ("relay:mail.example.org:2525",
                                                   "mail.example.org:2525"),
    (":[10.0.0.1]", "[10.0.0.1]"), ("smtp:", None),
])
def test_transport_entries(entry, hop):
    got = parse_transport(entry)
    assert (str(got) if got else None) == hop


@pytest.mark.parametrize("entry", ["local:", "smtp", "lmtp:[x]", "error:no"])
def test_transports_other_than_smtp_and_relay_are_refused(entry):
    with pytest.raises(ValueError, match="not a transport entry"):
        parse_transport(entry)


def mta(**kw) -> MtaConfig:
    return MtaConfig(hostname="mx.example.org", domains=["mx.example.org"], **kw)


def test_the_transport_wins_over_the_relayhost_which_wins_over_mx():
    config = mta(relay_domains=["example.org"], transport={"Example.Org.": "smtp:[10.0.0.5]"},
                 relayhost="[smtp.isp.test]")
    assert str(config.next_hop("example.org")) == "[10.0.0.5]"
    assert str(config.next_hop("partner.test")) == "[smtp.isp.test]"
    assert mta().next_hop("partner.test") is None
    assert config.relays_for("EXAMPLE.org.") and not config.relays_for("partner.test")


@pytest.mark.parametrize(("kw", "message"), [
    ({"relay_domains": ["mx.example.org"]}, "both a local domain and a relay domain"),
    ({"relayhost": "[smtp"}, "not a next hop"),
    ({"transport": {"example.org": "local:"}}, "not a transport entry"),
    ({"transport": {"no_domain": "smtp:"}}, "not a domain name"),
    ({"smtp_connect_timeout": 0}, "greater than 0"),
])
def test_bad_routing_is_refused(kw, message):
    with pytest.raises(ValidationError, match=message):
        mta(**kw)


# --- DNS forwarders ----------------------------------------------------------------------------


def test_forward_only_needs_no_root_hints():
    config = DnsConfig(mode="recursive", forwarders=["198.51.100.9"], forward="only")
    assert [str(a) for a in config.forwarders] == ["198.51.100.9"]


@pytest.mark.parametrize(("data", "message"), [
    ({"mode": "recursive", "forwarders": ["198.51.100.9"]}, "needs root_hints"),
    ({"mode": "authoritative", "forwarders": ["198.51.100.9"],
      "zones": {"example.org": {"records": ["@ SOA ns h 1 2 3 4 5", "@ NS ns"]}}},
     "forwarders are only meaningful"),
    ({"mode": "recursive", "forwarders": ["resolver"], "forward": "only"}, "IPv4"),
])
def test_bad_forwarding_is_refused(data, message):
    with pytest.raises(ValidationError, match=message):
        DnsConfig.model_validate(data)


# --- the three-legged firewall ---------------------------------------------------------------


def isp_firewall() -> FirewallConfig:
    return FirewallConfig.model_validate(
        yaml.safe_load(ISP.read_text())["nodes"]["gw"]["services"]["firewall"])


def test_a_dmz_must_be_a_third_segment():
    with pytest.raises(ValidationError, match="must be different segments"):
        FirewallConfig(external="inet", internal="lan", dmz="lan")


def test_the_firewall_needs_an_interface_on_its_dmz(tmp_path):
    data = yaml.safe_load(ISP.read_text())
    data["nodes"]["gw"]["interfaces"].pop(1)
    shutil.copytree(ISP.parent / "zones", tmp_path / "zones")
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(FileError, match="gw has no interface on segment 'dmz'"):
        load_topology(path)


def test_three_legged_ruleset_is_golden_and_filters_the_firewall_into_the_dmz():
    addrs = FirewallAddresses(external=["198.51.100.1/24"],
                              internal=["192.168.10.1/24", "172.16.25.1/24"])
    text = render_ruleset(isp_firewall(), "eth0", "eth2", addrs, dmz_if="eth1")
    path = GOLDEN / "three_legged.nft"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()
    output = text.split("chain output")[1]
    assert 'oifname "eth1" meta nfproto ipv4 drop' in output
    assert 'oifname "eth2" ip daddr 192.168.10.25 tcp dport 25' in output
    assert 'oifname "eth0" ip saddr 172.16.25.0/24 masquerade' in text


# --- roles ---------------------------------------------------------------------------------------

EXPECTED = {
    "firewall": "gw", "fw_external": "inet", "fw_internal": "lan", "fw_dmz": "dmz",
    "fw_dmz_if": "eth1", "fw_internal_if": "eth2", "fw_dmz_address": "172.16.25.1",
    "dmz": ("relay",), "inside": ("mail", "ns-int", "admin"),
    "mail_server": "mail", "mail_domain": "example.org", "mail_host": "mx.example.org",
    "mail_private": "192.168.10.25", "mail_public": None,
    "inbound_relay": "relay", "inbound_server": "relay", "inbound_private": "172.16.25.25",
    "inbound_public": "198.51.100.25", "inbound_subnet": "172.16.25.0/24",
    "backup_mx": "isp-mx2", "backup_mx_host": "mx2.isp.test", "smarthost": "isp-smtp",
    "smarthost_host": "smtp.isp.test", "smarthost_address": "198.51.100.30",
    "public_dns": "isp-ns", "parent_dns": "tld-ns", "parent_zone": "org", "root_dns": "root-ns",
    "internal_dns": "ns-int", "internal_forwarder": "ns-int", "forwarders": ("198.51.100.9",),
    "public_resolver": "isp-resolver", "sender": "partner-mx", "sender_domain": "partner.test",
    "outside_client": "laptop", "internal_client": "admin", "alert_server": "mail.example.org",
}


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_isp_relay_roles_are_derived_from_the_services(role):
    assert getattr(derive_roles(load_topology(ISP)), role) == EXPECTED[role]


def test_on_the_reference_the_inbound_server_is_the_mail_server():
    roles = derive_roles(load_topology(MAIL_DMZ))
    assert (roles.inbound_server, roles.inbound_public, roles.inbound_relay) == (
        "mx", "203.0.113.25", None)
    assert (roles.backup_mx, roles.smarthost, roles.internal_forwarder, roles.fw_dmz) == (
        None, None, None, None)


def test_the_new_roles_can_be_named():
    data = yaml.safe_load(ISP.read_text())
    data["roles"] = {"backup_mx": "isp-smtp", "smarthost": "isp-mx2", "sender": "partner-mx"}
    roles = derive_roles(Topology.model_validate(data))
    assert (roles.backup_mx, roles.smarthost) == ("isp-smtp", "isp-mx2")
    data["roles"] = {"inbound_relay": "admin"}
    assert "inbound_relay 'admin' has no smtp service" in [m for _l, m in Topology.model_validate(
        data).problems()]


# --- faults that need the new shape ---------------------------------------------------------------

ISP_ONLY = {"relay-transport-wrong": "inbound relay", "relay-domain-missing": "inbound relay",
            "smarthost-relay-refused": "smarthost", "dns-forwarder-dead": "internal forwarder",
            "fw-dmz-permit-missing": "inbound relay"}


@pytest.mark.parametrize("name", sorted(ISP_ONLY))
def test_a_fault_without_its_role_says_which_role_is_missing(name):
    roles = derive_roles(load_topology(MAIL_DMZ))
    fault = CATALOG[name]
    with pytest.raises(LabError, match=f"topology mail-dmz has no {ISP_ONLY[name]}"):
        fault.answer(fault.resolve(roles), roles)
    isp = derive_roles(load_topology(ISP))
    fault.answer(fault.resolve(isp), isp)  # the same fault applies to isp-relay


@pytest.mark.parametrize("name", sorted(ISP_ONLY))
def test_scenario_validate_catches_a_fault_the_topology_cannot_take(tmp_path, name):
    path = tmp_path / "s.yaml"
    path.write_text(f"name: s\ntitle: t\ntopology: mail-dmz\nfaults:\n  - fault: {name}\n"
                    "ticket: mail is broken\ntime_limit: 10\n")
    with pytest.raises(FileError) as err:
        check_scenario(path, params_models(), resolve_topology, CAUSE_IDS,
                       lambda sc, topo: scenario_problems(sc, derive_roles(topo)))
    assert f"s.yaml:5: faults[0].fault: topology mail-dmz has no {ISP_ONLY[name]}" in \
        err.value.message, err.value.message
