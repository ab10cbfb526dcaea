"""The isp-relay topology's mail and DNS, with the real clients: dig through a forwarding
DNS server, swaks to an inbound relay that relays one domain, a backup MX that queues while
the primary is away and hands the mail over when it is back (never to itself), outbound mail
through the ISP's smarthost, which refuses everyone else; and the MX preference rule of
the SMTP client, without a lab."""
from __future__ import annotations

import asyncio
import json
import re
import time
from types import SimpleNamespace

import pytest
from dnslib import QTYPE, RR, A

from lab.model.mta import MtaConfig
from lab.protocols import delivery
from lab.protocols.dnscache import Step
from lab.protocols.forwarder import Forwarder
from lab.protocols.mxlookup import MxHost
from lab.protocols.resolver import Resolver
from tests.conftest import node_run, run_lab

# --- the MX preference rule (Postfix's smtp client), without a lab ----------------------------


def _mta(addresses: list[str], **config):
    return SimpleNamespace(config=MtaConfig(hostname="mx2.isp.test", domains=["mx2.isp.test"],
                                            **config),
                           node=SimpleNamespace(addresses=addresses), remote_port=25,
                           dns_port=53, dns_timeout=1.0)


MXS = [MxHost(10, "mx.example.org", ["198.51.100.25"]),
       MxHost(20, "mx2.isp.test", ["198.51.100.31"]),
       MxHost(30, "mx3.isp.test", ["198.51.100.32"])]


@pytest.mark.parametrize(("own", "kept"), [
    (["198.51.100.99"], ["mx.example.org", "mx2.isp.test", "mx3.isp.test"]),  # not an MX
    (["198.51.100.31"], ["mx.example.org"]),  # a backup: only the hosts it prefers to itself
    (["198.51.100.32"], ["mx.example.org", "mx2.isp.test"]),
    (["198.51.100.25"], []),  # the best MX itself: nowhere to go
])
def test_an_mx_list_that_names_the_server_keeps_only_the_better_hosts(monkeypatch, own, kept):
    async def lookup(node, name, **kw):
        assert name == "example.org"
        return list(MXS)

    monkeypatch.setattr(delivery, "lookup_mx", lookup)
    hosts, port = asyncio.run(delivery.mail_hosts(_mta(own), "example.org"))
    assert [h.name for h in hosts] == kept and port == 25


def test_a_bracketed_next_hop_is_not_looked_up_as_mx(monkeypatch):
    async def no_mx(*a, **kw):
        raise AssertionError("no MX lookup for [host]")

    async def a_record(node, name, **kw):
        return {"smtp.isp.test": ["198.51.100.30"]}[name]

    monkeypatch.setattr(delivery, "lookup_mx", no_mx)
    monkeypatch.setattr(delivery, "lookup_a", a_record)
    mta = _mta(["192.168.10.25"], relayhost="[smtp.isp.test]:587",
               transport={"example.org": "smtp:[192.168.10.25]"})
    hosts, port = asyncio.run(delivery.mail_hosts(mta, "partner.test"))
    assert ([(h.name, h.addresses) for h in hosts], port) == (
        [("smtp.isp.test", ["198.51.100.30"])], 587)
    hosts, port = asyncio.run(delivery.mail_hosts(mta, "example.org"))
    assert ([(h.name, h.addresses) for h in hosts], port) == (
        [("192.168.10.25", ["192.168.10.25"])], 25)


@pytest.mark.parametrize(("only", "rcode", "iterated"), [(True, 2, False), (False, 0, True)])
def test_forward_only_fails_where_forward_first_iterates(monkeypatch, only, rcode, iterated):
    """No forwarder answers: ``forward only`` is SERVFAIL, ``forward first`` (BIND's
    default) iterates from the root hints itself."""
    asked: list[tuple[str, bool]] = []

    async def query(self, address, qname, qtype, recurse=False):
        asked.append((address, recurse))  # a dead forwarder: no answer

    async def iterate(self, qname, qtype, depth, busy):
        return Step("answer", [RR(qname, QTYPE.A, rdata=A("198.51.100.20"), ttl=60)])

    monkeypatch.setattr(Forwarder, "query", query)
    monkeypatch.setattr(Resolver, "_iterate", iterate)
    fwd = Forwarder(["198.51.100.201"], [("a.root.example.", "198.51.100.2")],
                    lambda *a: None, only=only)
    result = asyncio.run(fwd.resolve("mail.partner.test", "A"))
    assert result.rcode == rcode and bool(result.answer) is iterated
    assert asked == [("198.51.100.201", True)]


# --- on a running isp-relay lab --------------------------------------------------------------


@pytest.fixture(scope="module")
def isp(module_labs) -> str:
    name = module_labs.up("t-isp", topology="isp-relay")
    for _ in range(3):  # the very first resolutions after `lab up` may time out
        p = run_lab("verify", "--lab", name, "--json")
        if all(r["passed"] for r in json.loads(p.stdout)):
            return name
    raise AssertionError(p.stdout)


def out(lab: str, node: str, *cmd: str) -> str:
    return node_run(lab, node, *cmd).stdout


def swaks(lab: str, node: str, server: str, to: str, sender: str) -> str:
    p = node_run(lab, node, "swaks", "--server", server, "--to", to, "--from", sender,
                 "--timeout", "8")
    return p.stdout + p.stderr


def until(what, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while not (got := what()) and time.monotonic() < deadline:
        time.sleep(0.3)
    return got


@pytest.mark.root
def test_two_mx_records_by_preference(isp):
    mx = out(isp, "laptop", "dig", "+short", "example.org", "MX").split("\n")
    assert sorted(filter(None, mx)) == ["10 mx.example.org.", "20 mx2.isp.test."]
    assert out(isp, "laptop", "dig", "+short", "mx.example.org").strip() == "198.51.100.25"


@pytest.mark.root
def test_the_internal_server_forwards_with_recursion_desired(isp):
    seen = node_run(isp, "ns-int", "sh", "-c",
                    "timeout 5 tcpdump -l -n -i eth0 -c 1 'udp dst port 53' 2>/dev/null & "
                    "sleep 1; dig +time=3 +tries=1 @192.168.10.53 fresh.partner.test A "
                    ">/dev/null; wait").stdout
    # tcpdump marks a query with recursion desired with "+" after its id
    assert re.search(r"IP 192\.168\.10\.53\.\d+ > 198\.51\.100\.9\.53: \d+\+ .*A\? "
                     r"fresh\.partner\.test\.", seen), seen
    answer = out(isp, "admin", "dig", "partner.test", "MX")
    assert "flags: qr rd ra;" in answer and "mail.partner.test." in answer  # not authoritative
    assert out(isp, "admin", "dig", "+short", "mail.example.org").strip() == "192.168.10.25"


@pytest.mark.root
def test_the_relay_takes_the_mail_domain_from_anyone_and_nothing_else(isp):
    assert "250 2.0.0 Ok: queued" in swaks(isp, "laptop", "198.51.100.25", "jsmith@example.org",
                                           "a@partner.test")
    talk = swaks(isp, "laptop", "198.51.100.25", "jsmith@partner.test", "a@partner.test")
    assert "554 5.7.1 <jsmith@partner.test>: Relay access denied" in talk
    log = until(lambda: (t := out(isp, "relay", "cat", "/var/log/mail.log"))
                and "relay=192.168.10.25[192.168.10.25]:25" in t and t)
    assert "status=sent" in log
    box = until(lambda: out(isp, "mail", "cat", "/var/mail/jsmith"))
    assert "by mx.example.org" in box and "from mx.example.org" in box


@pytest.mark.root
def test_outbound_goes_through_the_smarthost_which_refuses_other_clients(isp):
    assert "250 2.0.0 Ok: queued" in swaks(isp, "admin", "192.168.10.25", "jsmith@partner.test",
                                           "admin@example.org")
    log = until(lambda: "relay=smtp.isp.test[198.51.100.30]:25" in (
        t := out(isp, "mail", "cat", "/var/log/mail.log")) and t)
    assert "status=sent" in log
    assert until(lambda: "relay=mail.partner.test[198.51.100.20]:25" in out(
        isp, "isp-smtp", "cat", "/var/log/mail.log"))
    talk = swaks(isp, "laptop", "198.51.100.30", "jsmith@partner.test", "x@example.net")
    assert "554 5.7.1 <jsmith@partner.test>: Relay access denied" in talk


@pytest.mark.root
def test_the_backup_mx_queues_while_the_primary_is_away_and_hands_over_after(isp):
    assert run_lab("service", "--lab", isp, "relay", "smtp", "stop").returncode == 0
    try:
        swaks(isp, "laptop", "198.51.100.20", "admin@example.org", "b@partner.test")
        node_run(isp, "partner-mx", "postqueue", "-f")
        queue = until(lambda: "connect to mx.example.org[198.51.100.25]:25: Connection "
                              "refused" in (q := out(isp, "isp-mx2", "mailq")) and q)
        assert queue and "admin@example.org" in queue
        assert "relay=mx2.isp.test" in out(isp, "partner-mx", "cat", "/var/log/mail.log")
        log = out(isp, "isp-mx2", "cat", "/var/log/mail.log")
        assert "loops back to myself" not in log and "[198.51.100.31]" not in log
        probe = json.loads(run_lab("verify", "--lab", isp, "--json", "inbound").stdout)[0]
        assert not probe["passed"] and "isp-mx2 queue" in probe["detail"], probe
    finally:
        assert run_lab("service", "--lab", isp, "relay", "smtp", "start").returncode == 0
    node_run(isp, "isp-mx2", "postqueue", "-f")
    assert until(lambda: "Mail queue is empty" in out(isp, "isp-mx2", "mailq"))
    assert "b@partner.test" in until(lambda: out(isp, "mail", "cat", "/var/mail/admin"))
