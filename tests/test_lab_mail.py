"""Issue 3, mail: the lab's SMTP servers spoken to with real clients (telnet, swaks,
Python's smtplib) from inside lab nodes, and the results read where a trainee reads them
(mbox files, /var/log/mail.log, mailq) inside the nodes.

One module-scoped mail-dmz lab, plus a second small-timer lab for the bounce test.
"""
from __future__ import annotations

import os
import re
import secrets
import select
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from conftest import LAB_CMD, PROJECT_ROOT

pytestmark = pytest.mark.root

LAB = "t3-mail"
LAB_Q = "t3-mailq"
VENV_PY = str(PROJECT_ROOT / ".venv" / "bin" / "python")
PUBLIC_ADDRS = {"203.0.113.1", "203.0.113.25"}  # the firewall's external addresses


def tag() -> str:
    return "t3-" + secrets.token_hex(4)


def swaks(x, node: str, *args: str) -> subprocess.CompletedProcess:
    return x(node, "swaks", "--timeout", "10", *args)


def wait_for(x, node: str, path: str, needle: str, timeout: float = 8.0) -> str:
    """Poll a file in a node until it contains ``needle``; return the file."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        p = x(node, "cat", path)
        text = p.stdout
        if needle in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} not in {node}:{path} after {timeout} s:\n{text[-3000:]}")


def log_lines(x, node: str, qid: str) -> list[str]:
    return [ln for ln in x(node, "cat", "/var/log/mail.log").stdout.splitlines() if qid in ln]


def queued_id(out: str) -> str:
    m = re.search(r"queued as ([0-9A-F]+)", out)
    assert m, out
    return m.group(1)


# --- the article's telnet test --------------------------------------------------------------

class Telnet:
    """Drive ``telnet HOST 25`` in a node line by line, waiting for each reply."""

    def __init__(self, lab: str, node: str, host: str, port: int = 25) -> None:
        self.p = subprocess.Popen([*LAB_CMD, "exec", "--lab", lab, node, "--", "telnet", host,
                                   str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, cwd=PROJECT_ROOT)
        self.out = b""

    def expect(self, pattern: str, timeout: float = 10.0) -> re.Match:
        rx = re.compile(pattern.encode(), re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.out)
            if m:
                return m
            left = deadline - time.monotonic()
            assert left > 0, f"no {pattern!r} in telnet output:\n{self.out.decode(errors='replace')}"
            r, _, _ = select.select([self.p.stdout], [], [], left)
            if r:
                chunk = os.read(self.p.stdout.fileno(), 4096)
                assert chunk, f"telnet ended before {pattern!r}:\n{self.out.decode()}"
                self.out += chunk

    def send(self, line: str) -> None:
        self.p.stdin.write(line.encode() + b"\n")
        self.p.stdin.flush()

    def close(self) -> None:
        try:
            self.p.stdin.close()
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.out += self.p.stdout.read()
        self.p.stdout.close()
        self.p.stderr.close()


def test_article_telnet_test_verbatim(lab, x):
    before = x("mx", "cat", "/var/mail/jsmith").stdout.count("Subject: Test message")
    t = Telnet(lab, "ext-ws", "mail.example.net")
    try:
        t.expect(r"^Connected to mail\.example\.net\.")
        t.expect(r"^220 mail\.example\.net")
        t.send("helo mail.example.com")
        t.expect(r"^250 mail\.example\.net")
        t.send("mail from: jsmith@example.com")
        t.expect(r"^250 2\.1\.0")
        t.send("rcpt to: jsmith@example.net")
        t.expect(r"^250 2\.1\.5")
        t.send("data")
        t.expect(r"^354 ")
        for line in ("Subject: Test message", "", "Did you get this?", "."):
            t.send(line)
        qid = t.expect(r"^250 2\.0\.0 Ok: queued as ([0-9A-F]+)").group(1).decode()
        t.send("quit")
        t.expect(r"^221 ")
    finally:
        t.close()
    assert t.p.returncode == 0
    box = wait_for(x, "mx", "/var/mail/jsmith", f"id {qid}")
    assert box.count("Subject: Test message") == before + 1
    assert re.search(r"Received: from mail\.example\.com \(unknown \[203\.0\.113\.100\]\)\s+"
                     rf"by mail\.example\.net \(Postfix\) with SMTP id {qid}", box), box[-2000:]
    assert "Did you get this?" in box[box.index(f"id {qid}"):]
    assert re.search(r"^From jsmith@example\.com ", box, re.MULTILINE)


# --- swaks and smtplib ----------------------------------------------------------------------

@pytest.mark.parametrize("node, server, rcpt, mbox_node", [
    ("ext-ws", "mail.example.net", "jsmith@example.net", "mx"),
    ("ext-ws", "mail.example.net", "admin@example.net", "mx"),
    ("ext-ws", "mail.example.net", "postmaster@example.net", "mx"),
    ("ext-ws", "mail.example.com", "jsmith@example.com", "mx-ext"),
    ("ext-ws", "mail.example.com", "admin@example.com", "mx-ext"),
    ("ext-ws", "mail.example.com", "postmaster@example.com", "mx-ext"),
    ("admin", "mail.example.net", "jsmith@example.net", "mx"),
])
def test_swaks_delivers_to_mbox(x, node, server, rcpt, mbox_node):
    subject = tag()
    p = swaks(x, node, "--server", server, "--from", "jsmith@example.com", "--to", rcpt,
              "--header", f"Subject: {subject}")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "<-  250 2.0.0 Ok: queued as" in p.stdout
    user = rcpt.split("@")[0]
    box = wait_for(x, mbox_node, f"/var/mail/{user}", subject)
    assert f"Delivered-To: {rcpt}" in box


SMTPLIB = """
import smtplib, sys
rcpt, subject = sys.argv[1], sys.argv[2]
s = smtplib.SMTP("mail.example.net", 25, timeout=10)
code, _ = s.ehlo("ws.example.com")
assert code == 250, code
refused = s.sendmail("jsmith@example.com", [rcpt],
                     f"From: jsmith@example.com\\r\\nTo: {rcpt}\\r\\nSubject: {subject}\\r\\n\\r\\nbody\\r\\n")
print("refused", refused)
s.quit()
"""


@pytest.mark.parametrize("user", ["jsmith", "postmaster"])
def test_smtplib_delivers(x, user):
    subject = tag()
    p = x("ext-ws", VENV_PY, "-c", SMTPLIB, f"{user}@example.net", subject)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "refused {}" in p.stdout
    wait_for(x, "mx", f"/var/mail/{user}", f"Subject: {subject}")


SMTPLIB_RCPT = """
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], 25, timeout=10)
s.ehlo("ws.example.com")
s.mail("jsmith@example.com")
code, msg = s.rcpt(sys.argv[2])
print(code, msg.decode())
s.quit()
"""


@pytest.mark.parametrize("node, server, rcpt, code, text", [
    ("ext-ws", "mail.example.net", "nobody@example.net", 550, "5.1.1"),
    ("ext-ws", "mail.example.com", "nobody@example.com", 550, "5.1.1"),
    ("ext-ws", "mail.example.net", "jsmith@example.com", 554, "5.7.1"),  # relay refused
    ("ext-ws", "mail.example.net", "jsmith@example.org", 554, "5.7.1"),
    ("admin", "mail.example.com", "jsmith@example.net", 554, "5.7.1"),  # mx-ext: not its net
    ("mx", "mail.example.com", "jsmith@example.org", 554, "5.7.1"),
])
def test_rcpt_refused(x, node, server, rcpt, code, text):
    p = x(node, VENV_PY, "-c", SMTPLIB_RCPT, server, rcpt)
    assert p.returncode == 0, p.stdout + p.stderr
    got_code, _, got_msg = p.stdout.strip().partition(" ")
    assert int(got_code) == code and got_msg.startswith(text), p.stdout


def test_swaks_unknown_user_550(x):
    p = swaks(x, "ext-ws", "--server", "mail.example.net", "--from", "jsmith@example.com",
              "--to", "nobody@example.net")
    assert p.returncode != 0
    assert re.search(r"^<\*\* 550 5\.1\.1 .*User unknown", p.stdout, re.MULTILINE), p.stdout


def test_swaks_relay_denied_554(x):
    p = swaks(x, "ext-ws", "--server", "mail.example.net", "--from", "x@example.org",
              "--to", "jsmith@example.com")
    assert p.returncode != 0
    assert re.search(r"^<\*\* 554 5\.7\.1 <jsmith@example\.com>: Relay access denied",
                     p.stdout, re.MULTILINE), p.stdout


# --- relaying and the logs ------------------------------------------------------------------

def test_outbound_relay_for_admin_through_nat(x):
    subject = tag()
    p = swaks(x, "admin", "--server", "mail.example.net", "--from", "admin@example.net",
              "--to", "jsmith@example.com", "--header", f"Subject: {subject}")
    assert p.returncode == 0, p.stdout + p.stderr
    qid = queued_id(p.stdout)
    box = wait_for(x, "mx-ext", "/var/mail/jsmith", subject)
    msg = box[box.rindex("\nFrom admin@example.net"):]
    # the hop into mx-ext came from the firewall's public side
    first_received = re.search(r"Received: from \S+ \(unknown \[([\d.]+)\]\)", msg).group(1)
    assert first_received in PUBLIC_ADDRS
    # mx's log: the outbound hop, Postfix style
    mx_log = "\n".join(log_lines(x, "mx", qid))
    m = re.search(rf"{qid}: to=<jsmith@example\.com>, relay=mail\.example\.com\[203\.0\.113\.20\]:25,"
                  r" delay=[\d.]+, delays=[\d./]+, dsn=2\.0\.0, status=sent \(250 2\.0\.0 Ok: queued as ([0-9A-F]+)\)",
                  mx_log)
    assert m, mx_log
    ext_qid = m.group(1)
    ext_log = x("mx-ext", "cat", "/var/log/mail.log").stdout
    client = re.search(rf"{ext_qid}: client=unknown\[([\d.]+)\]", ext_log)
    assert client and client.group(1) in PUBLIC_ADDRS, ext_log
    assert re.search(rf"connect from unknown\[{re.escape(client.group(1))}\]", ext_log)


def test_admin_direct_smtp_seen_from_dynamic_nat_address(x):
    subject = tag()
    p = swaks(x, "admin", "--server", "203.0.113.20", "--from", "admin@example.net",
              "--to", "admin@example.com", "--header", f"Subject: {subject}")
    assert p.returncode == 0, p.stdout + p.stderr
    qid = queued_id(p.stdout)
    assert any("client=unknown[203.0.113.1]" in ln for ln in log_lines(x, "mx-ext", qid))
    wait_for(x, "mx-ext", "/var/mail/admin", subject)


def test_mx_log_is_postfix_style(x):
    subject = tag()
    p = swaks(x, "ext-ws", "--server", "mail.example.net", "--from", "jsmith@example.com",
              "--to", "jsmith@example.net", "--header", f"Subject: {subject}")
    assert p.returncode == 0, p.stdout
    qid = queued_id(p.stdout)
    wait_for(x, "mx", "/var/mail/jsmith", subject)
    log = x("mx", "cat", "/var/log/mail.log").stdout
    lines = [ln for ln in log.splitlines() if qid in ln]
    stamp = r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d mx postfix/\w+\[\d+\]: "
    assert all(re.match(stamp, ln) for ln in lines), lines
    joined = "\n".join(lines)
    assert re.search(rf"{qid}: client=unknown\[203\.0\.113\.100\]", joined)
    assert re.search(rf"{qid}: from=<jsmith@example\.com>, size=\d+, nrcpt=1", joined)
    assert re.search(rf"{qid}: to=<jsmith@example\.net>, relay=local, .*status=sent", joined)
    assert re.search(r"postfix/smtpd\[\d+\]: connect from unknown\[203\.0\.113\.100\]", log)
    assert re.search(r"disconnect from unknown\[203\.0\.113\.100\]", log)


@pytest.mark.parametrize("rcpt, status, dsn", [
    ("jsmith@example.org", "bounced", "5.4.4"),     # no such domain: bounces at once
    ("jsmith@ws.example.com", "deferred", "4.4.1"),  # A but no SMTP listener: deferred
])
def test_undeliverable_logged(x, rcpt, status, dsn):
    p = swaks(x, "admin", "--server", "mail.example.net", "--from", "admin@example.net",
              "--to", rcpt, "--header", f"Subject: {tag()}")
    assert p.returncode == 0, p.stdout
    qid = queued_id(p.stdout)
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        joined = "\n".join(log_lines(x, "mx", qid))
        if f"status={status}" in joined:
            break
        time.sleep(0.2)
    assert re.search(rf"{qid}: to=<{re.escape(rcpt)}>, relay=none, delay=[\d.]+, delays=[\d./]+, dsn={dsn}, "
                     rf"status={status} \(", joined), joined


def test_deferred_mail_shows_in_mailq(x):
    subject = tag()
    p = swaks(x, "admin", "--server", "mail.example.net", "--from", "admin@example.net",
              "--to", "postmaster@ws.example.com", "--header", f"Subject: {subject}")
    qid = queued_id(p.stdout)
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        q = x("mx", "mailq")
        if "Connection refused" in q.stdout.split(qid, 1)[-1]:
            break
        time.sleep(0.2)
    assert q.returncode == 0
    assert q.stdout.startswith("-Queue ID-")
    entry = q.stdout.split(qid, 1)[1]
    assert re.match(r"\s+\d+ \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d\s+admin@example\.net", entry), q.stdout
    assert "(connect to ws.example.com[203.0.113.100]:25: Connection refused)" in entry
    assert "postmaster@ws.example.com" in entry
    assert re.search(r"^-- \d+ Kbytes in \d+ Requests?\.$", q.stdout, re.MULTILINE)
    assert x("mx", "test", "-f", f"/var/spool/postfix/deferred/{qid}").returncode == 0


def test_bounce_delivers_ndr_to_sender(x):
    subject = tag()
    p = swaks(x, "admin", "--server", "mail.example.net", "--from", "admin@example.net",
              "--to", "jsmith@example.org", "--header", f"Subject: {subject}")
    qid = queued_id(p.stdout)
    box = wait_for(x, "mx", "/var/mail/admin", subject)
    assert re.search(r"^From MAILER-DAEMON", box, re.MULTILINE), box[-2000:]
    assert "jsmith@example.org" in box
    assert qid not in x("mx", "mailq").stdout


def test_mx_ext_originates_to_example_net(x):
    subject = tag()
    p = swaks(x, "mx-ext", "--server", "127.0.0.1", "--from", "postmaster@example.com",
              "--to", "jsmith@example.net", "--header", f"Subject: {subject}")
    assert p.returncode == 0, p.stdout + p.stderr
    qid = queued_id(p.stdout)
    wait_for(x, "mx", "/var/mail/jsmith", subject)
    ext = "\n".join(log_lines(x, "mx-ext", qid))
    assert re.search(rf"{qid}: to=<jsmith@example\.net>, "
                     r"relay=mail\.example\.net\[203\.0\.113\.25\]:25, .*status=sent", ext), ext


def test_ext_ws_may_relay_through_mx_ext(x):
    """ext-ws is in mx-ext's relay_networks: mx-ext relays its mail to example.net."""
    subject = tag()
    p = swaks(x, "ext-ws", "--server", "mail.example.com", "--from", "jsmith@example.com",
              "--to", "admin@example.net", "--header", f"Subject: {subject}")
    assert p.returncode == 0, p.stdout
    wait_for(x, "mx", "/var/mail/admin", subject)


# --- retries, then a bounce after the configured time ----------------------------------------

@pytest.fixture(scope="module")
def quick_lab(module_labs, node_exec) -> str:
    """mail-dmz with mx retrying every 1 s (backoff and queue scan) and bouncing after 3 s."""
    topo = yaml.safe_load((PROJECT_ROOT / "topologies" / "mail-dmz.yaml").read_text())
    topo["nodes"]["mx"]["services"]["smtp"].update(
        minimal_backoff_time=1, maximal_backoff_time=1, queue_run_delay=1, bounce_after=3)
    with tempfile.TemporaryDirectory(prefix="t3-mailq-") as d:
        path = Path(d) / "mail-dmz-quick.yaml"
        path.write_text(yaml.safe_dump(topo, sort_keys=False))
        name = module_labs.up(LAB_Q, str(path))
    return name


def test_deferred_mail_retried_then_bounced(quick_lab, node_exec):
    def x(node, *cmd):
        return node_exec(quick_lab, node, *cmd)

    subject = tag()
    p = x("admin", "swaks", "--server", "mail.example.net", "--from", "admin@example.net",
          "--to", "jsmith@ws.example.com", "--header", f"Subject: {subject}")
    qid = queued_id(p.stdout)
    time.sleep(0.5)
    assert qid in x("mx", "mailq").stdout
    box = wait_for(x, "mx", "/var/mail/admin", subject, timeout=15)
    assert re.search(r"^From MAILER-DAEMON", box, re.MULTILINE)
    log = "\n".join(log_lines(x, "mx", qid))
    assert log.count("status=deferred") >= 2, log  # retried
    assert re.search(rf"{qid}: from=<admin@example\.net>, status=expired, returned to sender", log)
    assert qid not in x("mx", "mailq").stdout
