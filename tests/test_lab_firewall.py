"""Issue 3, firewall: the kernel's nftables inside fw, its connection log (``netguard
-An``), NAT seen from both sides, the SMTP proxy modes and the alert mailer, exercised with
ordinary clients (nft, nc, ping, tcpdump, swaks) inside lab nodes.
"""
from __future__ import annotations

import ipaddress
import re
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from conftest import LAB_CMD, PROJECT_ROOT

pytestmark = pytest.mark.root

LAB = "t3-fw"
TOPOLOGY = PROJECT_ROOT / "topologies" / "mail-dmz.yaml"
LAB_NETS = [ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network("10.1.0.0/24")]
RULE_NAMES = [r["name"] for r in
              yaml.safe_load(TOPOLOGY.read_text())["nodes"]["fw"]["services"]["firewall"]["rules"]]


@pytest.fixture(scope="module")
def ruleset(x) -> str:
    p = x("fw", "nft", "list", "ruleset")
    assert p.returncode == 0, p.stderr
    return p.stdout


def chain(ruleset: str, table: str, name: str) -> str:
    t = ruleset[ruleset.index(f"table {table} {{"):]
    c = t[t.index(f"chain {name} {{"):]
    return c[:c.index("\n\t}")]


def netguard_lines(x, grep: str) -> list[str]:
    """``netguard -An | grep ADDR`` in fw, as the article pipes it."""
    p = x("fw", "sh", "-c", f"netguard -An | grep {grep}")
    return p.stdout.splitlines()


def wait_line(x, grep: str, pattern: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = netguard_lines(x, grep)
        hits = [ln for ln in lines if re.search(pattern, ln)]
        if hits:
            return hits[-1]
        time.sleep(0.2)
    raise AssertionError(f"no {pattern!r} in netguard -An | grep {grep}:\n" + "\n".join(lines))


# --- the ruleset ------------------------------------------------------------------------------

def test_forward_policy_is_drop(ruleset):
    fwd = chain(ruleset, "inet netguard", "forward")
    assert re.search(r"type filter hook forward priority filter; policy drop;", fwd), fwd


def test_dynamic_nat_masquerade(ruleset):
    post = chain(ruleset, "ip netguard_nat", "postrouting")
    assert re.search(r'oifname "eth0" ip saddr 10\.1\.0\.0/24 masquerade', post), post


@pytest.mark.parametrize("table, chain_name, pattern", [
    ("ip netguard_nat", "prerouting", r"ip daddr 203\.0\.113\.25 .*dnat to 10\.1\.0\.25"),
    ("ip netguard_nat", "postrouting", r"ip saddr 10\.1\.0\.25 snat to 203\.0\.113\.25"),
])
def test_static_nat(ruleset, table, chain_name, pattern):
    assert re.search(pattern, chain(ruleset, table, chain_name))


def test_static_nat_precedes_masquerade(ruleset):
    post = chain(ruleset, "ip netguard_nat", "postrouting")
    assert post.index("snat to 203.0.113.25") < post.index("masquerade")


@pytest.mark.parametrize("name", RULE_NAMES)
def test_named_permit_rule_in_ruleset(ruleset, name):
    assert re.search(rf'log prefix "P {re.escape(name)}" group \d+ accept', ruleset), name


@pytest.mark.parametrize("name, chain_name, pattern", [
    ("smtp-in", "forward", r"daddr 203\.0\.113\.25 tcp dport 25"),
    ("smtp-out", "forward", r"ip saddr 10\.1\.0\.25 tcp dport 25"),
    ("dns-out", "forward", r"ip saddr 10\.1\.0\.53 udp dport 53"),
    ("icmp", "forward", r"icmp"),
    ("fw-dns", "output", r"ip daddr 10\.1\.0\.53 udp dport 53"),
    ("fw-to-mx", "output", r"ip daddr 10\.1\.0\.25 tcp dport 25"),
    ("admin-out", "forward", r"ip saddr 10\.1\.0\.100"),
])
def test_permit_rule_matches_its_traffic(ruleset, name, chain_name, pattern):
    c = chain(ruleset, "inet netguard", chain_name)
    lines = [ln for ln in c.splitlines() if f'"P {name}"' in ln]
    assert lines and re.search(pattern, lines[0]), c


def test_ruleset_file_passes_nft_check(x, ruleset):
    p = x("fw", "nft", "-c", "-f", "/etc/netguard/ruleset.nft")
    assert p.returncode == 0, p.stderr
    text = x("fw", "cat", "/etc/netguard/ruleset.nft").stdout
    assert "netguard_nat" in text and "policy drop" in text


@pytest.mark.parametrize("node", ["ext-ws", "mx", "admin", "ns-int"])
def test_other_nodes_have_no_ruleset(x, node):
    p = x(node, "nft", "list", "ruleset")
    assert "netguard" not in p.stdout


# --- the connection log -----------------------------------------------------------------------

def test_inbound_smtp_logged_permitted(x):
    p = x("ext-ws", "swaks", "--server", "mail.example.net", "--from", "jsmith@example.com",
          "--to", "jsmith@example.net", "--quit-after", "HELO")
    assert p.returncode == 0, p.stdout
    line = wait_line(x, "203.0.113.25", r"203\.0\.113\.100:\d+ 203\.0\.113\.25:25 ")
    cols = line.split()
    assert cols[1] == "P", line
    assert cols[2] == "tcp" and "rule=smtp-in" in line


@pytest.mark.parametrize("port", [80, 443, 110])
def test_denied_attempt_logged_d(x, port):
    p = x("ext-ws", "nc", "-z", "-w1", "203.0.113.25", str(port))
    assert p.returncode != 0  # dropped: no connection
    line = wait_line(x, "203.0.113.25", rf"203\.0\.113\.100:\d+ 203\.0\.113\.25:{port} ")
    assert line.split()[1] == "D", line


def test_denied_from_lan_host_without_rule(x):
    """ns-int may only send DNS out; its SMTP attempt is denied and logged."""
    p = x("ns-int", "nc", "-z", "-w1", "203.0.113.20", "25")
    assert p.returncode != 0
    line = wait_line(x, "10.1.0.53", r"10\.1\.0\.53:\d+ 203\.0\.113\.20:25 ")
    assert line.split()[1] == "D", line


def test_ping_static_nat_address(x):
    p = x("ext-ws", "ping", "-c1", "-W2", "203.0.113.25")
    assert p.returncode == 0, p.stdout
    assert "1 received" in p.stdout
    line = wait_line(x, "203.0.113.25", r"icmp 203\.0\.113\.100 203\.0\.113\.25")
    assert line.split()[1] == "P" and "rule=icmp" in line


@pytest.mark.parametrize("node, target", [("admin", "203.0.113.20"), ("mx", "203.0.113.9"),
                                          ("admin", "203.0.113.100")])
def test_lan_reaches_internet_through_nat(x, node, target):
    p = x(node, "ping", "-c1", "-W2", target)
    assert p.returncode == 0, p.stdout


def _capture(lab: str, node: str, bpf: str, trigger) -> str:
    """tcpdump -c1 -n in a node while ``trigger()`` sends the traffic."""
    cap = subprocess.Popen([*LAB_CMD, "exec", "--lab", lab, node, "--", "timeout", "10",
                            "tcpdump", "-c1", "-n", "-l", "-i", "eth0", bpf],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           cwd=PROJECT_ROOT)
    try:
        deadline = time.monotonic() + 5
        # tcpdump says "listening on" on stderr once the capture is armed
        err = ""
        while "listening on" not in err and time.monotonic() < deadline:
            err += cap.stderr.readline()
        trigger()
        out, _ = cap.communicate(timeout=15)
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.communicate()
    return out


@pytest.mark.parametrize("what", ["icmp", "tcp"])
def test_mx_ext_sees_admin_as_fw_public_address(lab, x, what):
    if what == "icmp":
        bpf, trigger = "icmp[icmptype] == icmp-echo", lambda: x("admin", "ping", "-c1", "-W2",
                                                                 "203.0.113.20")
    else:
        bpf = "tcp dst port 25 and tcp[tcpflags] & tcp-syn != 0"
        trigger = lambda: x("admin", "nc", "-z", "-w2", "203.0.113.20", "25")
    out = _capture(lab, "mx-ext", bpf, trigger)
    m = re.search(r"IP (\d+\.\d+\.\d+\.\d+)(?:\.\d+)? > 203\.0\.113\.20", out)
    assert m and m.group(1) == "203.0.113.1", out


def test_host_namespace_has_no_lab_addresses(lab, host_view):
    snap = host_view()
    for a in snap["addresses"]:
        ip = ipaddress.ip_interface(a).ip
        assert not any(ip in net for net in LAB_NETS), a
    for r in snap["routes"]:
        dst = r.get("dst", "default")
        if dst != "default":
            assert not any(ipaddress.ip_network(dst, strict=False).overlaps(n) for n in LAB_NETS), r
    assert "netguard" not in snap["nft"]
    assert lab not in " ".join(snap["netns"])


# --- the SMTP proxy modes -----------------------------------------------------------------------

def _variant(mode: str) -> dict:
    topo = yaml.safe_load(TOPOLOGY.read_text())
    topo["nodes"]["fw"]["services"]["firewall"]["proxy"]["mode"] = mode
    if mode == "inbound-to":  # DNS points at the firewall's external address, as the method says
        recs = topo["nodes"]["ns-ext"]["services"]["dns"]["zones"]["example.net"]["records"]
        recs[recs.index("mail A 203.0.113.25")] = "mail A 203.0.113.1"
    return topo


@pytest.fixture(scope="module", params=["inbound-through", "inbound-to"])
def proxy_lab(request, module_labs, node_exec):
    with tempfile.TemporaryDirectory(prefix="t3-fw-") as d:
        path = Path(d) / f"{request.param}.yaml"
        path.write_text(yaml.safe_dump(_variant(request.param), sort_keys=False))
        name = module_labs.up(f"t3-{request.param[8:11]}", str(path))
    yield request.param, name
    module_labs.down(name)


def test_proxy_passes_inbound_mail(proxy_lab, node_exec):
    mode, name = proxy_lab
    public = "203.0.113.1" if mode == "inbound-to" else "203.0.113.25"
    dig = node_exec(name, "ext-ws", "dig", "+short", "mail.example.net")
    assert dig.stdout.split() == [public]
    subject = f"proxy-{mode}-{time.monotonic_ns()}"
    p = node_exec(name, "ext-ws", "swaks", "--server", "mail.example.net",
                  "--from", "jsmith@example.com", "--to", "jsmith@example.net",
                  "--header", f"Subject: {subject}")
    assert p.returncode == 0, p.stdout
    deadline = time.monotonic() + 8
    while subject not in node_exec(name, "mx", "cat", "/var/mail/jsmith").stdout:
        assert time.monotonic() < deadline, "message not delivered through the proxy"
        time.sleep(0.2)
    log = node_exec(name, "fw", "sh", "-c", f"netguard -An | grep {public}").stdout
    lines = [ln for ln in log.splitlines() if f"{public}:25 " in ln and "203.0.113.100" in ln]
    assert lines, log
    verdict = lines[-1].split()[1]
    assert verdict == "Xr", lines[-1]  # inbound through the proxy, either mode
    box = node_exec(name, "mx", "cat", "/var/mail/jsmith").stdout
    assert "by fw.example.net (netguard smtp proxy)" in box.split(subject)[0].rsplit("\nFrom ", 1)[-1]
    assert f"proxy={mode}" in lines[-1] and "relay=10.1.0.25:25" in lines[-1]


# --- alerts ------------------------------------------------------------------------------------

def test_firewall_alert_delivered_to_admin(x):
    subject = f"t3-alert-{time.monotonic_ns()}"
    p = x("fw", "netguard-alert", subject, "alert body")
    assert p.returncode == 0, p.stderr
    deadline = time.monotonic() + 10
    while subject not in x("mx", "cat", "/var/mail/admin").stdout:
        assert time.monotonic() < deadline, "alert not delivered to admin@example.net"
        time.sleep(0.3)
    assert x("fw", "ls", "/var/spool/mailq/outgoing/smtp").stdout.strip() == ""
    assert x("fw", "ls", "/var/spool/mailq/data").stdout.strip() == ""


@pytest.fixture(scope="module")
def nosplit_lab(module_labs, node_exec):
    """fw asking the public resolver instead of ns-int: no split DNS, alerts retried every 1 s."""
    topo = yaml.safe_load(TOPOLOGY.read_text())
    topo["nodes"]["fw"]["nameservers"] = ["203.0.113.9"]
    topo["nodes"]["fw"]["services"]["alerts"]["retry_interval"] = 1
    with tempfile.TemporaryDirectory(prefix="t3-fw-") as d:
        path = Path(d) / "nosplit.yaml"
        path.write_text(yaml.safe_dump(topo, sort_keys=False))
        name = module_labs.up("t3-nosplit", str(path))
    yield name
    module_labs.down(name)


def test_undelivered_alert_stays_spooled_and_retried(nosplit_lab, node_exec):
    def x(node, *cmd):
        return node_exec(nosplit_lab, node, *cmd)

    assert x("fw", "dig", "+short", "mail.example.net").stdout.split() == ["203.0.113.25"]
    subject = f"t3-alert-{time.monotonic_ns()}"
    p = x("fw", "netguard-alert", subject, "alert body")
    assert p.returncode == 0, p.stderr
    alert_id = p.stdout.strip().split()[-1]
    time.sleep(3.5)  # several retry intervals
    smtp = x("fw", "ls", "/var/spool/mailq/outgoing/smtp").stdout.split()
    data = x("fw", "ls", "/var/spool/mailq/data").stdout.split()
    assert alert_id in smtp and alert_id in data, (alert_id, smtp, data)
    listing = x("fw", "netguard-alert", "--list")
    assert listing.returncode == 0, listing.stderr
    row = next(ln.split(None, 3) for ln in listing.stdout.splitlines() if ln.startswith(alert_id))
    assert int(row[2]) >= 2 and row[3] != "-", listing.stdout  # retried, with the reason
    assert subject not in x("mx", "cat", "/var/mail/admin").stdout
    # the firewall's error log says why (docs/method.md: read the firewall's error logs)
    errors = x("fw", "cat", "/var/log/netguard/error.log").stdout
    assert any(alert_id in ln and "203.0.113.25" in ln and "kept in the spool" in ln
               for ln in errors.splitlines()), errors
