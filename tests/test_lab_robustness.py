"""Issue 3, robustness: malformed DNS packets (scapy-crafted and random bytes), garbage
SMTP lines, an over-long command line and clients that vanish mid-DATA, all sent from
inside lab nodes to the lab's own addresses, bounded in count and time; afterwards the
services still answer real clients and ``lab status --json`` calls every one healthy.
"""
from __future__ import annotations

import json
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import PROJECT_ROOT

pytestmark = pytest.mark.root

LAB = "t3-rob"
VENV_PY = str(PROJECT_ROOT / ".venv" / "bin" / "python")
FORMERR, NOTIMP = 1, 4

# Sent from inside a node: ~50 UDP datagrams to one DNS server, at most 0.15 s each.
DNS_FUZZ = r"""
import json, random, socket, sys
from scapy.layers.dns import DNS, DNSQR
target, seed = sys.argv[1], int(sys.argv[2])
rnd = random.Random(seed)
good = bytes(DNS(id=1, rd=1, qd=DNSQR(qname="example.net", qtype="MX")))
cases = {
    "short1": good[:1],
    "short11": good[:11],
    "header_only": good[:12],                       # qdcount=1 but no question
    "bogus_qdcount": bytes(DNS(id=2, rd=1, qdcount=5, qd=DNSQR(qname="example.net"))),
    "bogus_ancount": bytes(DNS(id=3, rd=1, ancount=7, qd=DNSQR(qname="example.net"))),
    "truncated_name": good[:20],
    "pointer_loop": good[:12] + b"\xc0\x0c\x00\x01\x00\x01",
    "label_past_end": good[:12] + b"\x3f" + b"a" * 10 + b"\x00\x00\x01\x00\x01",
    "response_bit": bytes(DNS(id=4, qr=1, qd=DNSQR(qname="example.net"))),
    "opcode_15": bytes(DNS(id=5, opcode=15, qd=DNSQR(qname="example.net"))),
    "empty": b"",
}
for i in range(39):
    cases[f"random{i}"] = rnd.randbytes(rnd.randint(1, 600))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.15)
out = {}
for name, data in cases.items():
    s.sendto(data, (target, 53))
    try:
        r, _ = s.recvfrom(65535)
        out[name] = r[3] & 15 if len(r) >= 4 else "short"
    except socket.timeout:
        out[name] = None
# garbage over TCP too: a length prefix promising more than is sent, then random bytes
for payload in (b"\x00\xff" + good, b"\x00\x05abc", rnd.randbytes(300)):
    t = socket.create_connection((target, 53), timeout=2)
    t.sendall(payload)
    t.close()
print(json.dumps(out))
"""

# One SMTP conversation of bad input, then a mid-DATA disconnect, while a good delivery
# happens on a second connection that stays open with a half-sent DATA.
SMTP_ABUSE = r"""
import json, smtplib, socket, sys, time
host, rcpt, subject = sys.argv[1], sys.argv[2], sys.argv[3]

def reply(f):
    lines = [f.readline().decode(errors="replace").rstrip()]
    while len(lines[-1]) > 3 and lines[-1][3] == "-":
        lines.append(f.readline().decode(errors="replace").rstrip())
    return lines[-1]

def talk(steps):
    s = socket.create_connection((host, 25), timeout=5)
    f = s.makefile("rb")
    got = {"banner": reply(f)}
    for name, line in steps:
        s.sendall(line)
        got[name] = reply(f)
    return s, f, got

out = {}
s, f, out["garbage"] = talk([
    ("helo", b"HELO ws.example.com\r\n"),
    ("binary", b"\x00\xff\xfe\x01 garbage\r\n"),
    ("unknown", b"FOOBAR baz\r\n"),
    ("bad_address", b"MAIL FROM:<jsmith@example.com\r\n"),  # no closing bracket
    ("rcpt_first", b"RCPT TO:<jsmith@example.net>\r\n"),
    ("long_line", b"NOOP " + b"X" * 10240 + b"\r\n"),
    ("noop", b"NOOP\r\n"),
    ("quit", b"QUIT\r\n"),
])
s.close()
s, f, out["long_ehlo"] = talk([("ehlo", b"EHLO " + b"a" * 10240 + b"\r\n"),
                               ("noop", b"NOOP\r\n"), ("quit", b"QUIT\r\n")])
s.close()
# a client that vanishes mid-DATA, while another one is left hanging mid-DATA
hang, hf, out["hang"] = talk([("helo", b"HELO a\r\n"), ("mail", b"MAIL FROM:<jsmith@example.com>\r\n"),
                              ("rcpt", f"RCPT TO:<{rcpt}>\r\n".encode()), ("data", b"DATA\r\n")])
hang.sendall(b"Subject: " + subject.encode() + b"-hang\r\n\r\nhalf a bo")
cut, cf, out["cut"] = talk([("helo", b"HELO b\r\n"), ("mail", b"MAIL FROM:<jsmith@example.com>\r\n"),
                            ("rcpt", f"RCPT TO:<{rcpt}>\r\n".encode()), ("data", b"DATA\r\n")])
cut.sendall(b"Subject: " + subject.encode() + b"-cut\r\n\r\npartial body")
time.sleep(0.1)
cut.close()
# everyone else is still served
c = smtplib.SMTP(host, 25, timeout=10)
c.ehlo("ws.example.com")
out["good"] = c.sendmail("jsmith@example.com", [rcpt], f"Subject: {subject}-good\r\n\r\nok\r\n")
c.quit()
hang.close()
print(json.dumps(out))
"""


DNS_TARGETS = [
    ("ext-ws", "203.0.113.53"),   # ns-ext
    ("ext-ws", "203.0.113.9"),    # resolver
    ("admin", "10.1.0.53"),       # ns-int
    ("ext-ws", "203.0.113.10"),   # dns-root
    ("mx-ext", "203.0.113.11"),   # dns-tld
]


@pytest.fixture(scope="module")
def dns_results(x) -> dict[str, dict]:
    """Every target fuzzed at once (each mostly waits for answers that never come)."""
    def fuzz(i: int, node: str, target: str) -> dict:
        p = x(node, VENV_PY, "-c", DNS_FUZZ, target, str(i + 1), timeout=60)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    with ThreadPoolExecutor(len(DNS_TARGETS)) as pool:
        found = [pool.submit(fuzz, i, node, target)
                 for i, (node, target) in enumerate(DNS_TARGETS)]
        return {target: f.result() for (_node, target), f in zip(DNS_TARGETS, found)}


@pytest.mark.parametrize("node, target", DNS_TARGETS)
@pytest.mark.parametrize("case, rcodes", [
    ("short1", {None}),
    ("short11", {None}),
    ("empty", {None}),
    ("response_bit", {None}),          # never answer a response
    ("header_only", {FORMERR}),
    ("bogus_qdcount", {FORMERR}),
    ("bogus_ancount", {FORMERR}),
    ("truncated_name", {FORMERR}),
    ("pointer_loop", {FORMERR}),
    ("label_past_end", {FORMERR}),
    ("opcode_15", {NOTIMP}),
])
def test_malformed_dns_gets_error_or_dropped(dns_results, node, target, case, rcodes):
    assert dns_results[target][case] in rcodes, dns_results[target]


@pytest.mark.parametrize("node, target", DNS_TARGETS)
def test_random_dns_bytes_get_error_or_dropped(dns_results, node, target):
    got = [v for k, v in dns_results[target].items() if k.startswith("random")]
    assert len(got) == 39
    assert set(got) <= {None, FORMERR, NOTIMP, 2, 3, 5}, got  # never a crash, never "short"


@pytest.mark.parametrize("node, target, args, expected", [
    ("ext-ws", "203.0.113.53", ["mx", "example.net"], "10 mail.example.net."),
    ("ext-ws", "203.0.113.9", ["mx", "example.net"], "10 mail.example.net."),
    ("admin", "10.1.0.53", ["a", "mail.example.net"], "10.1.0.25"),
    ("ext-ws", "203.0.113.53", ["+tcp", "a", "mail.example.net"], "203.0.113.25"),
    ("admin", "10.1.0.53", ["+tcp", "mx", "example.com"], "10 mail.example.com."),
])
def test_dns_still_answers_after_abuse(dns_results, x, node, target, args, expected):
    p = x(node, "dig", "+time=2", "+tries=1", "+short", f"@{target}", *args)
    assert p.returncode == 0 and p.stdout.split("\n")[0] == expected, p.stdout


SMTP_TARGETS = [
    ("ext-ws", "mail.example.net", "jsmith@example.net", "mx"),
    ("ext-ws", "mail.example.com", "jsmith@example.com", "mx-ext"),
    ("admin", "mail.example.net", "admin@example.net", "mx"),
]


@pytest.fixture(scope="module")
def smtp_results(dns_results, x) -> dict[str, dict]:
    results = {}
    for node, server, rcpt, _ in SMTP_TARGETS:
        subject = "t3-" + secrets.token_hex(4)
        p = x(node, VENV_PY, "-c", SMTP_ABUSE, server, rcpt, subject, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        results[server + node] = {"subject": subject, **json.loads(p.stdout)}
    return results


@pytest.mark.parametrize("node, server, rcpt, mbox", SMTP_TARGETS)
@pytest.mark.parametrize("step, code", [
    ("binary", r"500 5\.5\.2"),
    ("unknown", r"500 5\.5\.2"),
    ("bad_address", r"501 5\.1\.7 Bad sender address syntax"),
    ("rcpt_first", r"503 5\.5\.1"),
    ("long_line", r"250 2\.0\.0 Ok"),  # Postfix: cut at line_length_limit, answered
    ("noop", r"250 "),
    ("quit", r"221 "),
])
def test_garbage_smtp_gets_errors(smtp_results, node, server, rcpt, mbox, step, code):
    got = smtp_results[server + node]["garbage"][step]
    assert re.match(code, got), got


@pytest.mark.parametrize("node, server, rcpt, mbox", SMTP_TARGETS)
def test_long_ehlo_answered_session_continues(smtp_results, node, server, rcpt, mbox):
    """Postfix 3.7 reads the first line_length_limit (2048) bytes of an over-long command,
    skips the rest and answers what it read: a 10 KB EHLO gets the EHLO reply."""
    got = smtp_results[server + node]["long_ehlo"]
    assert got["ehlo"].startswith("250 ") and got["noop"].startswith("250"), got


@pytest.mark.parametrize("node, server, rcpt, mbox", SMTP_TARGETS)
def test_mid_data_disconnect_delivers_nothing(smtp_results, x, node, server, rcpt, mbox):
    r = smtp_results[server + node]
    assert r["cut"]["data"].startswith("354") and r["hang"]["data"].startswith("354")
    assert r["good"] == {}
    user = rcpt.split("@")[0]
    deadline = time.monotonic() + 8
    while f"Subject: {r['subject']}-good" not in (box := x(mbox, "cat", f"/var/mail/{user}").stdout):
        assert time.monotonic() < deadline, "good message not delivered during abuse"
        time.sleep(0.2)
    assert f"{r['subject']}-cut" not in box
    assert f"{r['subject']}-hang" not in box
    log = x(mbox, "cat", "/var/log/mail.log").stdout
    assert re.search(r"lost connection after DATA", log), log[-2000:]


# --- afterwards: everything healthy, the end-to-end probes pass -----------------------------

def test_all_services_healthy_after_abuse(smtp_results, lab, lab_cli):
    p = lab_cli("status", "--lab", lab, "--json")
    assert p.returncode == 0, p.stderr
    nodes = json.loads(p.stdout)["nodes"]
    services = [(n, s["kind"], s["healthy"]) for n, v in nodes.items() for s in v.get("services", [])]
    kinds = {k for _, k, _ in services}
    assert {"dns", "smtp", "firewall"} <= kinds
    assert len([s for s in services if s[1] == "dns"]) == 5
    assert all(h for _, _, h in services), services


@pytest.mark.parametrize("node, server, rcpt, mbox", [
    ("ext-ws", "mail.example.net", "postmaster@example.net", "mx"),
    ("mx-ext", "127.0.0.1", "admin@example.net", "mx"),          # MX lookup via resolver
    ("admin", "mail.example.net", "postmaster@example.com", "mx-ext"),  # outbound via NAT
])
def test_end_to_end_mail_after_abuse(smtp_results, x, node, server, rcpt, mbox):
    subject = "t3-" + secrets.token_hex(4)
    p = x(node, "swaks", "--timeout", "10", "--server", server, "--from", "jsmith@example.com",
          "--to", rcpt, "--header", f"Subject: {subject}")
    assert p.returncode == 0, p.stdout + p.stderr
    deadline = time.monotonic() + 8
    while subject not in x(mbox, "cat", f"/var/mail/{rcpt.split('@')[0]}").stdout:
        assert time.monotonic() < deadline, f"{subject} not delivered to {rcpt}"
        time.sleep(0.2)
