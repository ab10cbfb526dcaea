"""Issue 11, DNS data: wildcards (RFC 4592), DS at the parent (RFC 4035 3.1.4.1), zone
transfers (RFC 5936, RFC 1995 as BIND serves them without a journal), the resolver's
deepest cached zone cut, and zone files that BIND's own named-checkzone accepts.

Asked with dig and kdig of the loopback world in ``dnsworld``.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from conftest import PROJECT_ROOT
from dnslib import QTYPE, DNSHeader, DNSQuestion, DNSRecord
from dnsworld import (
    ADDRESSES,
    AUTH_IP,
    CONFIGS,
    XFR_CLIENT_IP,
    World,
    ask,
    exchange,
    free_port,
    run,
)

from lab.model.dns import DnsConfig
from lab.model.topology import load_topology
from lab.protocols.zonefile import render_zone, zone_file_name

needs_clients = pytest.mark.skipif(not (shutil.which("dig") and shutil.which("kdig")),
                                   reason="dig and kdig (bind9-dnsutils, knot-dnsutils) needed")
FORMERR, REFUSED, NOTAUTH = 1, 5, 9
SERIAL = 2026112501  # example.net's
ZONE_SIZE = len(CONFIGS["auth"]["zones"]["example.net"]["records"])


@pytest.fixture
def world(tmp_path):
    return World(tmp_path, free_port())


def answers(out: str) -> list[list[str]]:
    """The records dig or kdig printed (comments dropped), each split into fields."""
    return [line.split() for line in out.splitlines()
            if line.strip() and not line.startswith(";")]


def status(out: str) -> str:
    m = re.search(r"status: ([A-Z]+)", out)
    assert m, out
    return m.group(1)


# --- wildcards ---------------------------------------------------------------------------------


@needs_clients
@pytest.mark.parametrize("program", ["dig", "kdig"])
@pytest.mark.parametrize(("name", "qtype", "rcode", "answer"), [
    ("x.wild.example.net", "A", "NOERROR", [["x.wild.example.net.", "A", "203.0.113.77"]]),
    ("a.b.wild.example.net", "A", "NOERROR", [["a.b.wild.example.net.", "A", "203.0.113.77"]]),
    ("*.wild.example.net", "A", "NOERROR", [["*.wild.example.net.", "A", "203.0.113.77"]]),
    ("x.wild.example.net", "MX", "NOERROR", []),  # the wildcard has no MX: NODATA
    ("wild.example.net", "A", "NOERROR", []),  # an empty non-terminal exists: NODATA
    ("ent.wild.example.net", "A", "NOERROR", []),  # ditto, and it blocks *.wild below it
    ("x.ent.wild.example.net", "A", "NXDOMAIN", []),
    ("foo.alias.example.net", "A", "NOERROR",
     [["foo.alias.example.net.", "CNAME", "mail.example.net."],
      ["mail.example.net.", "A", "203.0.113.25"]]),
])
def test_wildcards(world, program, name, qtype, rcode, answer):
    out = ask(world, "auth", "+norec", name, qtype, program=program)
    assert status(out) == rcode, out
    records = answers(out)
    assert [[r[0], r[3], r[-1]] for r in records if r[3] != "SOA"] == answer, out
    if not answer:  # negative answers carry the zone's SOA
        assert [r[0] for r in records if r[3] == "SOA"] == ["example.net."], out
    assert re.search(r"[Ff]lags: qr aa;", out), out


@needs_clients
def test_wildcard_answers_through_the_resolver(world):
    out = ask(world, "resolver", "+short", "y.wild.example.net")
    assert out.split() == ["203.0.113.77"]


# --- DS at the parent --------------------------------------------------------------------------


@needs_clients
@pytest.mark.parametrize(("server", "name", "flags", "answer", "soa"), [
    ("tld", "example.net", "qr aa", [["example.net.", "DS", "12345"]], None),
    ("tld", "glueless.net", "qr aa", [], "net."),  # a delegation without DS: NODATA
    ("root", "net", "qr aa", [], "."),
    ("tld", "net", "qr aa", [], "net."),  # only the child here: its NODATA
    ("auth", "example.net", "qr aa", [], "example.net."),  # ditto
    ("resolver", "example.net", "qr rd ra", [["example.net.", "DS", "12345"]], None),
])
def test_ds_is_answered_from_the_parent_side(world, server, name, flags, answer, soa):
    extra = [] if server == "resolver" else ["+norec"]
    out = ask(world, server, *extra, name, "DS")
    assert status(out) == "NOERROR" and f"flags: {flags};" in out, out
    records = answers(out)
    assert [r[:1] + r[3:5] for r in records if r[3] == "DS"] == answer, out
    assert [r[0] for r in records if r[3] == "SOA"] == ([soa] if soa else []), out
    assert not [r for r in records if r[3] == "NS"], out  # never a referral


@needs_clients
def test_ds_below_a_cut_is_still_referred(world):
    out = ask(world, "tld", "+norec", "www.example.net", "DS")
    assert "flags: qr;" in out and ["example.net.", "86400", "IN", "NS", "ns.example.net."] \
        in answers(out), out


# --- zone transfers ----------------------------------------------------------------------------


@needs_clients
@pytest.mark.parametrize("program", ["dig", "kdig"])
def test_axfr_to_an_allowed_client(world, program):
    out = ask(world, "auth", "-b", XFR_CLIENT_IP, "AXFR", "example.net", program=program)
    records = answers(out)
    assert len(records) == ZONE_SIZE + 1, out  # every record, the SOA twice
    assert records[0][3] == records[-1][3] == "SOA" and records[0] == records[-1]
    assert not [r for r in records[1:-1] if r[3] == "SOA"]
    assert ["x.wild.example.net."] not in [r[:1] for r in records]  # the data, not answers


@needs_clients
@pytest.mark.parametrize("program", ["dig", "kdig"])
def test_axfr_is_refused_to_other_clients(world, tmp_path, program):
    out = ask(world, "auth", "AXFR", "example.net", program=program)
    assert "Transfer failed." in out or "REFUSED" in out, out
    assert not [r for r in answers(out) if "SOA" in r], out
    log = (tmp_path / "auth" / "var" / "log" / "named.log").read_text()
    assert "client 127.0.0.1 (example.net): zone transfer 'example.net/AXFR/IN' denied" in log


def _xfr(world: World, name: str, qtype: str, tcp: bool, source: str,
         serial: int | None = None, server: str = "auth") -> list[DNSRecord]:
    request = DNSRecord(DNSHeader(id=99), q=DNSQuestion(name, getattr(QTYPE, qtype)))
    if serial is not None:
        soa = f"{name}. 0 IN SOA ns.{name}. hostmaster.{name}. {serial} 1 1 1 1"
        request.add_auth(*DNSRecord.question("x").replyZone(soa).rr)

    async def scenario():
        async with world:
            raw = await exchange(ADDRESSES[server], world.port, request.pack(), tcp, source=source)
            return [DNSRecord.parse(raw)]

    return run(scenario())


@pytest.mark.parametrize(("name", "qtype", "tcp", "source", "serial", "server", "rcode"), [
    ("example.net", "AXFR", False, XFR_CLIENT_IP, None, "auth", FORMERR),  # never over UDP
    ("example.net", "AXFR", False, "127.0.0.1", None, "auth", REFUSED),  # the ACL comes first
    ("example.net", "AXFR", True, "127.0.0.1", None, "auth", REFUSED),
    ("glueless.net", "AXFR", True, XFR_CLIENT_IP, None, "auth", REFUSED),  # default: nobody
    ("example.org", "AXFR", True, XFR_CLIENT_IP, None, "auth", NOTAUTH),
    ("www.example.net", "AXFR", True, XFR_CLIENT_IP, None, "auth", NOTAUTH),  # not an apex
    ("example.net", "AXFR", True, "127.0.0.1", None, "resolver", NOTAUTH),
    ("example.net", "IXFR", True, XFR_CLIENT_IP, None, "auth", FORMERR),  # no SOA
    ("example.net", "IXFR", True, "127.0.0.1", 1, "auth", REFUSED),
])
def test_transfer_errors(world, name, qtype, tcp, source, serial, server, rcode):
    (reply,) = _xfr(world, name, qtype, tcp, source, serial, server)
    assert reply.header.rcode == rcode and reply.rr == []
    assert [str(q.qname) for q in reply.questions] == [name + "."]


@needs_clients
@pytest.mark.parametrize(("args", "soas", "size"), [
    (["IXFR=1"], 2, ZONE_SIZE + 1),  # no journal: the whole zone, "AXFR-style IXFR"
    ([f"IXFR={SERIAL}"], 1, 1),  # up to date: the current SOA alone
    ([f"IXFR={SERIAL + 5}"], 1, 1),  # newer than ours: the same
    (["+notcp", "IXFR=1"], 1, 1),  # over UDP: the SOA alone, "ask again over TCP"
])
def test_ixfr_as_bind_without_a_journal(world, args, soas, size):
    out = ask(world, "auth", "-b", XFR_CLIENT_IP, *args, "example.net")
    records = answers(out)
    assert len(records) == size, out
    assert [r[3] for r in records].count("SOA") == soas
    assert records[0][3] == "SOA" and records[0][6] == str(SERIAL)


# --- the resolver starts from the deepest zone cut it knows -----------------------------------


def test_non_recursive_query_refers_to_the_deepest_cached_cut(world):
    async def scenario():
        async with world:
            cold = await world.ask("resolver", "other.example.net", rd=False)
            await world.ask("resolver", "www.example.net")
            warm = await world.ask("resolver", "other.example.net", rd=False)
            return cold, warm

    cold, warm = run(scenario())
    assert [(str(rr.rname), str(rr.rdata)) for rr in cold.auth] == [(".", "127.0.0.10.")]
    assert [(str(rr.rname), str(rr.rdata)) for rr in warm.auth] == [
        ("example.net.", "ns.example.net.")]
    assert [str(rr.rdata) for rr in warm.ar] == [AUTH_IP]
    assert (warm.header.aa, warm.header.ra, warm.rr) == (0, 1, [])


def test_iteration_starts_below_the_root_when_it_can(world):
    """With example.net's servers cached, new names in it need neither root nor TLD."""
    async def scenario():
        async with world:
            await world.ask("resolver", "www.example.net")
            for name in ("root", "tld"):
                await world[name].stop()
            return (await world.ask("resolver", "example.net", "MX"),
                    await world.ask("resolver", "nope.example.net"))

    mx, nope = run(scenario())
    assert [str(rr.rdata) for rr in mx.rr] == ["10 mail.example.net."]
    assert nope.header.rcode == 3


# --- named-checkzone accepts what the lab writes -----------------------------------------------


def _zones() -> list[tuple[str, str, str]]:
    """(where, zone, master file) for every zone of the test world and the reference lab."""
    out = []
    for server, config in CONFIGS.items():
        for name, zone in DnsConfig.model_validate(config).zones.items():
            out.append((server, name, render_zone(name, zone.ttl, zone.records)))
    topology = load_topology(PROJECT_ROOT / "topologies" / "mail-dmz.yaml")
    for node, spec in topology.nodes.items():
        if "dns" in spec.services:
            for name, zone in DnsConfig.model_validate(spec.services["dns"]).zones.items():
                out.append((node, name, render_zone(name, zone.ttl, zone.records)))
    return out


@pytest.mark.skipif(not shutil.which("named-checkzone"), reason="named-checkzone (bind9-utils)")
@pytest.mark.parametrize(("where", "zone", "text"), _zones(),
                         ids=[f"{w}-{z}" for w, z, _ in _zones()])
def test_named_checkzone_loads_the_zone(tmp_path, where, zone, text):
    path = tmp_path / zone_file_name(zone)
    path.write_text(text)
    p = subprocess.run(["named-checkzone", "-i", "local", zone, str(path)],
                       capture_output=True, text=True, timeout=30, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(rf"zone {re.escape(zone)}/IN: loaded serial \d+", p.stdout), p.stdout
