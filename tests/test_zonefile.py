"""Zone rendering (golden master files), record and zone validation, authoritative lookups."""
from __future__ import annotations

from pathlib import Path

import pytest
from dnslib import QTYPE, DNSLabel
from pydantic import ValidationError

from lab.model.dns import DnsConfig
from lab.protocols.zonedata import load_zone
from lab.protocols.zonefile import (
    ZoneError,
    parse_record,
    render_zone,
    zone_file_name,
)

GOLDEN = Path(__file__).parent / "golden" / "zones"

EXAMPLE_NET = {
    "ttl": 300,
    "records": [
        "@ SOA ns.example.net. hostmaster.example.net. 2026112501 3600 600 86400 300",
        "@ NS ns.example.net.",
        "@ MX 10 mail.example.net.",
        "ns A 203.0.113.53",
        "mail A 203.0.113.25",
        "www 60 IN CNAME mail",
        'txt TXT "v=spf1 mx -all"',
        "sub NS ns.sub",
        "ns.sub A 203.0.113.54",
        "host.dept A 203.0.113.80",
    ],
}
ROOT = {
    "ttl": 86400,
    "records": [
        "@ SOA a.root-servers.example. nstld.example. 1 1800 900 604800 86400",
        "@ NS a.root-servers.example.",
        "a.root-servers.example. A 203.0.113.10",
        "net. NS a.gtld.example.",
        "a.gtld.example. A 203.0.113.11",
    ],
}


def _zone(name: str = "example.net", zone: dict = EXAMPLE_NET):
    return load_zone(name, render_zone(name, zone["ttl"], zone["records"]))


@pytest.mark.parametrize(
    ("name", "zone", "golden"),
    [("example.net", EXAMPLE_NET, "db.example.net"), (".", ROOT, "db.root")],
)
def test_render_matches_golden_master_file(name, zone, golden):
    text = render_zone(name, zone["ttl"], zone["records"])
    assert zone_file_name(name) == golden
    assert text == (GOLDEN / golden).read_text()


def test_rendered_file_parses_back_to_the_configured_records():
    text = render_zone("example.net", EXAMPLE_NET["ttl"], EXAMPLE_NET["records"])
    loaded = load_zone("example.net", text)
    expected = [parse_record(r, "example.net.", 300) for r in EXAMPLE_NET["records"]]
    got = [rr for rrs in loaded.nodes.values() for rset in rrs.values() for rr in rset]
    assert sorted(map(str, got)) == sorted(map(str, expected))
    assert loaded.rrset(DNSLabel("www.example.net"), QTYPE.CNAME)[0].ttl == 60
    assert loaded.rrset(DNSLabel("mail.example.net"), QTYPE.A)[0].ttl == 300
    assert loaded.serial == 2026112501


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ("mail A 999.1.1.1", "not a valid A address"),
        ("mail A 203.0.113", "not a valid A address"),
        ("v6 AAAA 2001:db8::zz", "not a valid AAAA address"),
        ("@ MX mail.example.net.", "MX takes 2 data fields, got 1"),
        ("@ MX ten mail.example.net.", "'ten' is not a number"),
        ("@ MX 70000 mail.example.net.", "out of range"),
        ("ns A 203.0.113.53 extra", "A takes 1 data field, got 2"),
        ("www FOO bar", "unknown record type 'FOO'"),
        ("host HINFO pc linux", "not supported"),
        ("www CNAME", "CNAME takes 1 data field, got 0"),
        ("@ SOA ns hostmaster 1 2 3 4", "SOA takes 7 data fields, got 6"),
        ("a..b A 203.0.113.1", "bad name"),
        ("x" * 64 + " A 203.0.113.1", "bad name"),
        ("mail", "missing record type"),
        ("  A 203.0.113.1", "starts with blank space"),
        ("$TTL 60", "no directives"),
    ],
)
def test_bad_record_is_rejected_quoting_the_record(record, reason):
    with pytest.raises(ZoneError) as err:
        parse_record(record, "example.net.", 300)
    assert reason in str(err.value)
    if record.strip() and not record.startswith("$"):
        assert record.strip() in str(err.value)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ("mail a 203.0.113.25", "mail.example.net. 300 IN A 203.0.113.25"),
        ("mail 1h in A 203.0.113.25", "mail.example.net. 3600 IN A 203.0.113.25"),
        ("@ NS ns", "example.net. 300 IN NS ns.example.net."),
        ("other.example.org. CNAME x", "other.example.org. 300 IN CNAME x.example.net."),
    ],
)
def test_good_record_parses_relative_to_origin(record, expected):
    assert " ".join(str(parse_record(record, "example.net.", 300)).split()) == expected


def _config(records: list[str], **extra) -> dict:
    return {"mode": "authoritative", "zones": {"example.net": {"records": records}}, **extra}


SOA = "@ SOA ns.example.net. hostmaster.example.net. 1 3600 600 86400 300"


def test_model_error_points_at_the_record_and_quotes_it():
    with pytest.raises(ValidationError) as err:
        DnsConfig.model_validate(_config([SOA, "@ NS ns", "mail A 999.1.1.1"]))
    (problem,) = err.value.errors()
    assert problem["loc"] == ("zones", "example.net", "records", 2)
    assert "'mail A 999.1.1.1'" in problem["msg"] and "not a valid A address" in problem["msg"]


@pytest.mark.parametrize(
    ("records", "reason"),
    [
        (["@ NS ns", "ns A 203.0.113.53"], "has 0 SOA records"),
        ([SOA, "ns A 203.0.113.53"], "has no NS records"),
        ([SOA, "@ NS ns", "www.example.org. A 203.0.113.1"], "'www.example.org."),
        ([SOA, "@ NS ns", "www CNAME mail", "www A 203.0.113.1"], "CNAME and other data"),
    ],
)
def test_zone_level_errors_name_the_zone(records, reason):
    with pytest.raises(ValidationError) as err:
        DnsConfig.model_validate(_config(records))
    message = str(err.value)
    assert "zones.example.net" in message and reason in message


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        (_config([SOA, "@ NS ns"], colour="blue"), "Extra inputs are not permitted"),
        ({"mode": "recursive"}, "needs root_hints"),
        ({"mode": "authoritative"}, "needs at least one zone"),
        ({"mode": "bogus", "zones": {}}, "'authoritative', 'recursive' or 'split'"),
        (_config([SOA, "@ NS ns"], recursion_from=["10.0.0.0/8"]), "only meaningful"),
        ({"mode": "recursive", "root_hints": [{"name": "a.", "address": "300.1.1.1"}]},
         "IPv4"),
        ({"mode": "authoritative", "zones": {"example.net": {
            "records": [SOA, "@ NS ns"], "allow_transfer": ["10.1.0.0/33"]}}},
         "'10.1.0.0/33' is not a network"),
        (_config([SOA, "@ NS ns"], mode="split", recursion_from=["bogus"],
                 root_hints=[{"name": "a.", "address": "203.0.113.10"}]),
         "recursion_from\n  Value error, 'bogus' is not a network"),
        (_config([SOA, "@ NS ns", "d DS 1 8 2 ABCX"]), "the DS digest is not hexadecimal"),
    ],
)
def test_config_errors(config, reason):
    with pytest.raises(ValidationError) as err:
        DnsConfig.model_validate(config)
    assert reason in str(err.value)


@pytest.mark.parametrize(
    ("recursion_from", "client", "allowed"),
    [
        (None, "198.51.100.7", True),
        ([], "10.1.0.5", False),
        (["203.0.113.0/24", "10.1.0.0/24"], "10.1.0.5", True),
        (["203.0.113.0/24", "10.1.0.0/24"], "10.2.0.5", False),
        (["10.1.0.9"], "10.1.0.9", True),
    ],
)
def test_recursion_from(recursion_from, client, allowed):
    config = DnsConfig.model_validate({
        "mode": "split", "zones": {"example.net": {"records": [SOA, "@ NS ns"]}},
        "root_hints": [{"name": "a.root-servers.example.", "address": "203.0.113.10"}],
        "recursion_from": recursion_from,
    })
    assert config.recursion_allowed(client) is allowed


@pytest.mark.parametrize(
    ("allow_transfer", "client", "allowed"),
    [
        (None, "10.1.0.5", False),  # the default: nobody
        (["10.1.0.0/24"], "10.1.0.5", True),
        (["10.1.0.9"], "10.1.0.5", False),
    ],
)
def test_allow_transfer(allow_transfer, client, allowed):
    zone = {"records": [SOA, "@ NS ns"]}
    if allow_transfer is not None:
        zone["allow_transfer"] = allow_transfer
    config = DnsConfig.model_validate({"mode": "authoritative", "zones": {"example.net": zone}})
    assert config.zones["example.net"].transfer_allowed(client) is allowed


@pytest.mark.parametrize(
    ("qname", "qtype", "rcode", "aa", "answer", "authority", "additional"),
    [
        ("example.net", "MX", 0, True, ["MX 10 mail.example.net."], [], ["A 203.0.113.25"]),
        ("www.example.net", "A", 0, True, ["CNAME mail.example.net.", "A 203.0.113.25"], [], []),
        ("nope.example.net", "A", 3, True, [], ["SOA"], []),
        ("mail.example.net", "MX", 0, True, [], ["SOA"], []),  # NODATA
        ("dept.example.net", "A", 0, True, [], ["SOA"], []),  # empty non-terminal
        ("x.sub.example.net", "A", 0, False, [], ["NS ns.sub.example.net."], ["A 203.0.113.54"]),
        ("sub.example.net", "NS", 0, False, [], ["NS ns.sub.example.net."], ["A 203.0.113.54"]),
    ],
)
def test_lookup(qname, qtype, rcode, aa, answer, authority, additional):
    result = _zone().lookup(DNSLabel(qname), getattr(QTYPE, qtype))

    def short(rrs):
        return [" ".join(str(rr).split()[3:]) for rr in rrs]

    assert (result.rcode, result.aa) == (rcode, aa)
    assert short(result.answer) == answer
    assert ["SOA" if s.startswith("SOA") else s for s in short(result.authority)] == authority
    assert short(result.additional) == additional


def test_negative_answer_soa_ttl_is_the_soa_minimum():
    zone = _zone("example.net", {"ttl": 3600, "records": [
        "@ SOA ns.example.net. hostmaster.example.net. 1 3600 600 86400 120", "@ NS ns"]})
    (soa,) = zone.lookup(DNSLabel("nope.example.net"), QTYPE.A).authority
    assert soa.ttl == 120


def test_broken_master_file_reports_why():
    with pytest.raises(ZoneError) as err:
        load_zone("example.net", "$ORIGIN example.net.\n$TTL 300\n@ SOA ns h 1 2 3 4 5\n"
                                 "@ NS ns\nmail A 203.0.113.300\n", filename="db.example.net")
    assert str(err.value) == ("db.example.net:5: record 'mail A 203.0.113.300': "
                              "'203.0.113.300' is not a valid A address")
