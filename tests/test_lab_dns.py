"""Issue 3, DNS: the real DNS hierarchy of the reference lab, asked with ordinary clients
(dig, dig +trace, nslookup, host) from inside its nodes.

One module-scoped mail-dmz lab; every query stays inside the lab.
"""
from __future__ import annotations

import os
import re
import time

import pytest

pytestmark = pytest.mark.root

LAB = "t3-dns"
PUBLIC_MX = "203.0.113.25"
PRIVATE_MX = "10.1.0.25"
NS_EXT = "203.0.113.53"
ROOT = "203.0.113.10"
TLD = "203.0.113.11"
RESOLVER = "203.0.113.9"
NS_INT = "10.1.0.53"


def dig(x, node: str, *args: str) -> str:
    p = x(node, "dig", "+time=2", "+tries=1", *args)
    assert p.returncode == 0, f"dig {args} in {node} failed: {p.stdout}{p.stderr}"
    return p.stdout


def flags(out: str) -> set[str]:
    m = re.search(r";; flags: ([a-z ]+);", out)
    assert m, out
    return set(m.group(1).split())


def status(out: str) -> str:
    m = re.search(r"status: ([A-Z]+)", out)
    assert m, out
    return m.group(1)


def section(out: str, name: str) -> list[list[str]]:
    """Records of one section of dig's default output, each split into fields."""
    m = re.search(rf";; {name} SECTION:\n(.*?)(?:\n\n|\Z)", out, re.DOTALL)
    if not m:
        return []
    return [line.split() for line in m.group(1).splitlines() if line and not line.startswith(";")]


def count(out: str, name: str) -> int:
    m = re.search(rf"{name}: (\d+)", out)
    assert m, out
    return int(m.group(1))


# --- the public view, through the resolver ------------------------------------------------

def test_mx_example_net_from_internet(x):
    out = dig(x, "ext-ws", "+short", "mx", "example.net")
    assert out.strip().splitlines() == ["10 mail.example.net."]


@pytest.mark.parametrize("node, expected", [
    ("ext-ws", PUBLIC_MX),   # internet host -> resolver -> ns-ext (public view)
    ("mx-ext", PUBLIC_MX),
    ("admin", PRIVATE_MX),   # lan host -> ns-int (split view)
    ("mx", PRIVATE_MX),
    ("fw", PRIVATE_MX),      # the firewall itself uses ns-int too
])
def test_split_view_a_record(x, node, expected):
    out = dig(x, node, "+short", "a", "mail.example.net")
    assert out.strip().splitlines() == [expected]


@pytest.mark.parametrize("node, server", [("ext-ws", RESOLVER), ("admin", NS_INT)])
def test_resolvers_used_by_each_side(x, node, server):
    out = dig(x, node, "mx", "example.com")
    assert f"SERVER: {server}#53" in out
    assert ["example.com.", "IN", "MX", "10", "mail.example.com."] == \
        [f for i, f in enumerate(section(out, "ANSWER")[0]) if i != 1]


def test_ns_int_resolves_other_names_recursively(x):
    out = dig(x, "admin", "+short", "a", "mail.example.com")
    assert out.strip().splitlines() == ["203.0.113.20"]


@pytest.mark.parametrize("name, expected", [
    ("mail.example.com", "203.0.113.20"),
    ("ns.example.com", NS_EXT),
    ("ns.example.net", NS_EXT),
])
def test_public_records(x, name, expected):
    out = dig(x, "ext-ws", "+short", "a", name)
    assert out.strip().splitlines() == [expected]


# --- flags ----------------------------------------------------------------------------------

@pytest.mark.parametrize("qtype, name", [("a", "mail.example.net"), ("mx", "example.net"),
                                         ("soa", "example.net"), ("ns", "example.com")])
def test_authoritative_answer_has_aa(x, qtype, name):
    out = dig(x, "ext-ws", f"@{NS_EXT}", qtype, name, "+norec")
    assert "aa" in flags(out)
    assert status(out) == "NOERROR"
    assert count(out, "ANSWER") >= 1


@pytest.mark.parametrize("node, qtype, name", [
    ("ext-ws", "a", "mail.example.net"), ("ext-ws", "mx", "example.net"),
    ("mx-ext", "mx", "example.net"), ("admin", "mx", "example.com"),
])
def test_resolver_answer_has_ra_not_aa(x, node, qtype, name):
    out = dig(x, node, qtype, name)
    f = flags(out)
    assert "ra" in f and "rd" in f and "aa" not in f, f
    assert count(out, "ANSWER") >= 1


@pytest.mark.parametrize("server", [RESOLVER, NS_EXT])
def test_nxdomain_has_soa_in_authority(x, server):
    out = dig(x, "ext-ws", f"@{server}", "a", "nosuchhost.example.net")
    assert status(out) == "NXDOMAIN"
    assert count(out, "ANSWER") == 0
    auth = section(out, "AUTHORITY")
    assert auth and auth[0][0] == "example.net." and auth[0][3] == "SOA", out


@pytest.mark.parametrize("server, qtype, name", [
    (RESOLVER, "txt", "example.net"), (NS_EXT, "txt", "example.net"),
    (RESOLVER, "aaaa", "mail.example.net"), (NS_EXT, "mx", "mail.example.net"),
])
def test_nodata_is_noerror_with_soa(x, server, qtype, name):
    out = dig(x, "ext-ws", f"@{server}", qtype, name)
    assert status(out) == "NOERROR"
    assert count(out, "ANSWER") == 0
    auth = section(out, "AUTHORITY")
    assert auth and auth[0][3] == "SOA" and auth[0][0] == "example.net.", out


@pytest.mark.parametrize("server, zone, ns, glue_name, glue", [
    (ROOT, "net.", "a.gtld-servers.example.", "a.gtld-servers.example.", TLD),
    (TLD, "example.net.", "ns.example.net.", "ns.example.net.", NS_EXT),
])
def test_referral(x, server, zone, ns, glue_name, glue):
    out = dig(x, "ext-ws", f"@{server}", "mail.example.net", "+norec")
    assert status(out) == "NOERROR"
    assert "aa" not in flags(out)
    assert count(out, "ANSWER") == 0
    auth = section(out, "AUTHORITY")
    assert [(r[0], r[3], r[4]) for r in auth] == [(zone, "NS", ns)], out
    add = section(out, "ADDITIONAL")
    assert (glue_name, "A", glue) in [(r[0], r[3], r[4]) for r in add], out


def test_root_delegates_com_too(x):
    out = dig(x, "ext-ws", f"@{ROOT}", "mail.example.com", "+norec")
    auth = section(out, "AUTHORITY")
    assert [(r[0], r[3]) for r in auth] == [("com.", "NS")], out


# --- real clients ---------------------------------------------------------------------------

def test_dig_trace_ends_at_ns_example_net(x):
    out = dig(x, "ext-ws", "+trace", "mail.example.net")
    blocks = [b for b in out.split("\n\n") if ";; Received" in b]
    assert len(blocks) >= 4, out
    servers = [re.search(r"from ([\d.]+)#53\(([^)]*)\)", b).groups() for b in blocks]
    assert [s[0] for s in servers[1:]] == [ROOT, TLD, NS_EXT], servers
    assert servers[-1][1].rstrip(".") == "ns.example.net"
    last = [line.split() for line in blocks[-1].splitlines() if not line.startswith(";")]
    assert ["mail.example.net.", "IN", "A", PUBLIC_MX] in [[r[0], *r[2:]] for r in last], out


def test_nslookup_interactive_soa_and_mx(x):
    script = "set type=SOA\nexample.net\nset type=MX\nexample.net\nexit\n"
    p = x("ext-ws", "nslookup", input=script)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"Server:\t\t{RESOLVER}" in p.stdout
    assert re.search(r"origin = ns\.example\.net", p.stdout), p.stdout
    assert re.search(r"mail addr = hostmaster\.example\.net", p.stdout)
    assert re.search(r"serial = 2026112501", p.stdout)
    assert re.search(r"example\.net\s+mail exchanger = 10 mail\.example\.net\.", p.stdout)
    assert "Non-authoritative answer:" in p.stdout


def test_nslookup_on_mx_asks_ns_int(x):
    p = x("mx", "nslookup", "mail.example.net")
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"Server:\t\t{NS_INT}" in p.stdout
    assert f"Address: {PRIVATE_MX}" in p.stdout


@pytest.mark.parametrize("node, args, expected", [
    ("ext-ws", ["-t", "mx", "example.net"], "example.net mail is handled by 10 mail.example.net."),
    ("ext-ws", ["mail.example.net"], f"mail.example.net has address {PUBLIC_MX}"),
    ("admin", ["mail.example.net"], f"mail.example.net has address {PRIVATE_MX}"),
    ("ext-ws", ["-t", "mx", "example.com"], "example.com mail is handled by 10 mail.example.com."),
])
def test_host(x, node, args, expected):
    p = x(node, "host", *args)
    assert p.returncode == 0, p.stdout + p.stderr
    assert expected in p.stdout.splitlines()


def test_host_nxdomain(x):
    p = x("ext-ws", "host", "nosuchhost.example.net")
    assert p.returncode != 0
    assert "NXDOMAIN" in p.stdout


# --- zone files ------------------------------------------------------------------------------

MASTER_LINE = re.compile(r"^(\$ORIGIN|\$TTL|\S+\s+(\d+\s+)?IN\s+[A-Z]+\s)")


@pytest.mark.parametrize("node, path, must", [
    ("ns-ext", "/etc/bind/db.example.net", [("mail", "A", PUBLIC_MX), ("@", "MX", "10")]),
    ("ns-ext", "/etc/bind/db.example.com", [("mail", "A", "203.0.113.20")]),
    ("ns-int", "/etc/bind/db.example.net", [("mail", "A", PRIVATE_MX)]),
])
def test_zone_file_in_master_format(x, node, path, must):
    p = x(node, "cat", path)
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stdout.splitlines() if ln.strip() and not ln.lstrip().startswith(";")]
    assert all(MASTER_LINE.match(ln) for ln in lines), p.stdout
    assert any(re.match(r"^\S+\s+(\d+\s+)?IN\s+SOA\s", ln) for ln in lines)
    records = []
    for ln in lines:
        if ln.startswith("$"):
            continue
        f = ln.split()
        i = f.index("IN")
        records.append((f[0], f[i + 1], f[i + 2]))  # owner, type, first rdata field
    for rec in must:
        assert rec in records, (rec, p.stdout)


def test_public_zone_file_differs_from_internal(x):
    pub = x("ns-ext", "cat", "/etc/bind/db.example.net").stdout
    priv = x("ns-int", "cat", "/etc/bind/db.example.net").stdout
    assert PUBLIC_MX in pub and PRIVATE_MX not in pub
    assert PRIVATE_MX in priv and PUBLIC_MX not in priv


@pytest.mark.parametrize("node", ["ext-ws", "resolver", "dns-root", "dns-tld", "mx-ext",
                                  "fw", "mx", "admin"])
def test_public_zone_file_only_in_ns_ext(x, node):
    p = x(node, "test", "-e", "/etc/bind/db.example.net")
    assert p.returncode == 1, f"{node} sees /etc/bind/db.example.net"


def test_host_namespace_has_no_zone_files(lab):
    assert not os.path.exists("/etc/bind/db.example.net")


# --- caching ---------------------------------------------------------------------------------

def _ttl(x, node: str, name: str) -> int:
    out = dig(x, node, "+noall", "+answer", "a", name)
    recs = [ln.split() for ln in out.splitlines() if ln.strip()]
    assert recs and recs[0][3] == "A", out
    return int(recs[0][1])


@pytest.mark.parametrize("node, name", [("ext-ws", "ws.example.com"),
                                        ("admin", "mail.example.com")])
def test_resolver_caches_by_ttl(x, node, name):
    first = _ttl(x, node, name)
    time.sleep(1.1)
    second = _ttl(x, node, name)
    assert second < first <= 3600, (first, second)
    # the authoritative server keeps handing out the full TTL
    out = dig(x, "ext-ws", f"@{NS_EXT}", "+noall", "+answer", "a", name)
    assert int(out.split()[1]) == 3600


@pytest.mark.parametrize("node, zone", [("ext-ws", "example.net"), ("admin", "example.com")])
def test_resolver_does_not_answer_from_glue(x, node, zone):
    dig(x, node, "mx", zone)  # walks the delegation, caching the TLD's glue for ns.<zone>
    assert _ttl(x, node, f"ns.{zone}") <= 3600


# --- readiness -------------------------------------------------------------------------------

def test_first_query_after_up(module_labs, node_exec):
    for i in range(4):
        name = module_labs.up(f"t3-first{i}")
        try:
            out = node_exec(name, "ext-ws", "dig", "+time=3", "+tries=1", "mx", "example.net").stdout
        finally:
            module_labs.down(name)
        assert "status: NOERROR" in out and "10 mail.example.net." in out, out
