"""Faults on the isp-relay topology, in tests/test_faults.py's style: each shows its
symptom to a trainee's tools, breaks the probe it should, names nothing of itself, is
idempotent, reverts exactly, and its repair check says "not repaired" after apply and
"repaired" after revert. The faults only this shape has (an inbound relay, a smarthost, a
forwarding DNS server, a DMZ) are all here, with some of the reference's on the new shape
(a master-file zone edited in place, the relay's service and links).
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from test_faults import CASES as REFERENCE_CASES
from test_faults import Case, applies, exercise, verify

from lab.faults import CATALOG, get_fault
from lab.model.roles import derive_roles, placeholders
from lab.model.topology import load_topology
from tests.conftest import node_run

ROLES = derive_roles(load_topology(Path(__file__).parents[1] / "topologies" / "isp-relay.yaml"))
PROBES = ("inbound", "outbound", "alert")

SURFACES = {
    "isp-ns": "cat /etc/bind/db.example.org /etc/bind/example.org.hosts",
    "gw": "nft list ruleset; cat /etc/resolv.conf",
    "relay": "ip route; ip -br link",
    "ns-int": "ip route",
}
_SERIAL = re.compile(r"\d{10}( ; serial)")


def out(lab: str, node: str, *cmd: str) -> str:
    return node_run(lab, node, *cmd).stdout


def surfaces(lab: str) -> dict[str, str]:
    return {node: _SERIAL.sub(r"N\1", out(lab, node, "sh", "-c", cmd))
            for node, cmd in SURFACES.items()}


def until(what, seconds: float = 12.0):
    """Poll ``what()`` until it returns something true (a trainee running mailq again)."""
    deadline = time.monotonic() + seconds
    while True:
        got = what()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def swaks(lab: str, node: str, server: str, to: str, sender: str) -> str:
    p = node_run(lab, node, "swaks", "--server", server, "--to", to, "--from", sender,
                 "--timeout", "8")
    return p.stdout + p.stderr


def dig_short(lab: str, node: str, *args: str) -> str:
    return out(lab, node, "dig", "+time=2", "+tries=1", "+short", *args).strip()


def mailq_says(lab: str, node: str, text: str):
    return until(lambda: text in out(lab, node, "mailq"))


def verdicts(lab: str, src: str, dst: str) -> list[str]:
    return [ln.split()[1] for ln in out(lab, "gw", "netguard", "-An").splitlines()
            if f" {src}:" in ln and f" {dst} " in f"{ln} "]


# --- symptoms, with a trainee's tools ---------------------------------------------------------


def s_transport(lab):
    assert "250 2.0.0 Ok: queued" in swaks(lab, "laptop", "198.51.100.25",
                                           "jsmith@example.org", "a@partner.test")
    assert mailq_says(lab, "relay", "connect to 192.168.10.26[192.168.10.26]:25: "
                                    "Connection timed out")


def s_relay_domain(lab):
    talk = swaks(lab, "laptop", "198.51.100.25", "jsmith@example.org", "a@partner.test")
    assert "554 5.7.1 <jsmith@example.org>: Relay access denied" in talk, talk


def s_smarthost(lab):
    assert "250 2.0.0 Ok: queued" in swaks(lab, "admin", "192.168.10.25",
                                           "jsmith@partner.test", "admin@example.org")
    assert until(lambda: "host smtp.isp.test[198.51.100.30] said: 554 5.7.1" in out(
        lab, "mail", "cat", "/var/log/mail.log"))


def s_outbound_proxy(lab):
    """The proxy stands between the mail server and its smarthost: the refusal reads as the
    smarthost's, the firewall's log has X (proxied) lines for the session."""
    assert "250 2.0.0 Ok: queued" in swaks(lab, "admin", "192.168.10.25",
                                           "jsmith@partner.test", "admin@example.org")
    assert until(lambda: "host smtp.isp.test[198.51.100.30] said: 554 5.7.1 "
                         "<admin@example.org>: Sender address rejected" in out(
        lab, "mail", "cat", "/var/log/mail.log"))
    assert "X" in verdicts(lab, "192.168.10.25", "198.51.100.30:25")


def s_forwarder(lab):
    seen = node_run(lab, "ns-int", "sh", "-c",
                    "timeout 6 tcpdump -l -n -i eth0 -c 1 'host 198.51.100.201 and udp port 53'"
                    " 2>/dev/null & sleep 1; dig +time=3 +tries=1 @192.168.10.53 partner.test MX "
                    ">/dev/null; wait").stdout
    assert "198.51.100.201.53: " in seen, seen
    assert "status: SERVFAIL" in out(lab, "admin", "dig", "+time=4", "+tries=1", "partner.test",
                                     "MX")
    assert dig_short(lab, "admin", "mail.example.org") == "192.168.10.25"


def s_dmz_permit(lab):
    assert "250 2.0.0 Ok: queued" in swaks(lab, "laptop", "198.51.100.25",
                                           "jsmith@example.org", "a@partner.test")
    assert until(lambda: "D" in verdicts(lab, "172.16.25.25", "192.168.10.25:25"))
    assert mailq_says(lab, "relay", "jsmith@example.org")


def s_relay_down(lab):
    assert node_run(lab, "laptop", "nc", "-z", "-w2", "198.51.100.25", "25").returncode != 0
    swaks(lab, "laptop", "198.51.100.20", "jsmith@example.org", "a@partner.test")
    node_run(lab, "partner-mx", "postqueue", "-f")
    assert mailq_says(lab, "isp-mx2", "connect to mx.example.org[198.51.100.25]:25: "
                                      "Connection refused")


def s_wrong_address(lab):
    assert dig_short(lab, "laptop", "mx.example.org") == "198.51.100.26"
    check = out(lab, "isp-ns", "named-checkzone", "-w", "/etc/bind", "example.org",
                "db.example.org")
    assert "OK" in check, check
    hosts = out(lab, "isp-ns", "cat", "/etc/bind/example.org.hosts")
    assert "mx      IN  A   198.51.100.26   ; static NAT to the relay in the DMZ" in hosts


def s_relay_link(lab):
    assert "state DOWN" in out(lab, "relay", "ip", "link", "show", "eth0")
    assert node_run(lab, "laptop", "nc", "-z", "-w2", "198.51.100.25", "25").returncode != 0


def s_dmz_link(lab):
    assert "state DOWN" in out(lab, "gw", "ip", "link", "show", "eth1")
    assert node_run(lab, "relay", "ping", "-c1", "-W1", "172.16.25.1").returncode != 0


CASES = [
    Case("relay-transport-wrong", s_transport, {"inbound"}, "relay",
         {"nexthop": "192.168.10.26"}),
    Case("relay-domain-missing", s_relay_domain, {"inbound"}, "relay"),
    Case("smarthost-relay-refused", s_smarthost, {"outbound"}, "isp-smtp"),
    Case("proxy-outbound-sender-refused", s_outbound_proxy, {"outbound"}, "gw",
         {"senders": "example.com"}),
    Case("dns-forwarder-dead", s_forwarder, {"outbound"}, "ns-int",
         {"address": "198.51.100.201"}),
    Case("fw-dmz-permit-missing", s_dmz_permit, {"inbound"}, "gw"),
    Case("smtp-service-down", s_relay_down, {"inbound"}, "relay", {"node": "relay"}),
    Case("dns-wrong-address", s_wrong_address, {"inbound"}, "isp-ns",
         {"address": "198.51.100.26"}),
    Case("link-down", s_relay_link, {"inbound"}, "relay", {"node": "relay", "interface": "eth0"}),
    Case("link-down", s_dmz_link, {"inbound"}, "gw", {"node": "gw", "interface": "eth1"}),
]


# --- the catalog on this topology (no lab needed) -----------------------------------------------


def test_every_fault_applies_to_one_of_the_two_reference_topologies_and_has_cases():
    mail_dmz = {c.fault for c in REFERENCE_CASES}
    here = {c.fault for c in CASES}
    shape_only = {n for n, f in CATALOG.items() if not any(c.fault == n for c in REFERENCE_CASES)}
    assert shape_only <= here
    assert mail_dmz | here == set(CATALOG)
    for name in shape_only:
        assert applies(CATALOG[name], ROLES), name


@pytest.mark.parametrize("name", sorted(n for n, f in CATALOG.items() if applies(f, ROLES)))
def test_symptom_renders_from_the_isp_relay_roles(name):
    f = CATALOG[name]
    for variant in f.variants(ROLES):
        params = f.resolve(ROLES, variant)
        for text in (f.render_symptom(ROLES, params), f.render_description(ROLES, params)):
            assert not placeholders(text), text


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_answer_key(case):
    f = get_fault(case.fault)
    key = f.answer(f.resolve(ROLES, case.params), ROLES)
    assert (key.cause, key.node) == (f.causes[0].id, case.node)


# --- on a running lab ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def running(module_labs) -> dict:
    name = module_labs.up("t-fisp", topology="isp-relay")
    for _ in range(3):  # the very first resolutions after `lab up` may time out
        results = verify(name)
        if all(r["passed"] for r in results.values()):
            break
    assert all(r["passed"] for r in results.values()), results
    return {"lab": name, "baseline": surfaces(name)}


@pytest.mark.root
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_fault(running, case):
    exercise(running["lab"], case, surfaces, running["baseline"], set(PROBES))
