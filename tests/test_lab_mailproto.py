"""Protocol fidelity of the mail path in a running lab, checked with the real clients:
openssl s_client, swaks, nc, pflogsumm, python's socket and a tcpdump capture read back
with scapy. One reference lab for the module."""
from __future__ import annotations

import re
import shutil
import time

import pytest
from conftest import lab_exec, run_lab

LAB = "t-mailproto"
pytestmark = pytest.mark.root


def test_starttls_verifies_with_openssl(x):
    p = x("ext-ws", "sh", "-c", "openssl s_client -starttls smtp -connect 203.0.113.25:25 "
          "-verify_return_error -verify_hostname mail.example.net -brief </dev/null 2>&1")
    assert p.returncode == 0, p.stdout
    assert "Verification: OK" in p.stdout and "CN = mail.example.net" in p.stdout


@pytest.mark.skipif(not shutil.which("swaks"), reason="swaks not installed")
def test_swaks_tls_verify_delivers(x):
    p = x("ext-ws", "swaks", "--server", "203.0.113.25", "--tls", "--tls-verify",
          "--from", "a@example.com", "--to", "jsmith@example.net", "--timeout", "8")
    assert p.returncode == 0, p.stdout
    assert "TLS started" in p.stdout and "250 2.0.0 Ok: queued as" in p.stdout


def test_mtas_use_opportunistic_tls_and_log_it(lab, lab_cli, x):
    assert lab_cli("verify", "--lab", lab, "inbound").returncode == 0
    sent = x("mx-ext", "cat", "/var/log/mail.log").stdout
    got = x("mx", "cat", "/var/log/mail.log").stdout
    assert re.search(r"postfix/smtp\[\d+\]: Trusted TLS connection established to "
                     r"mail\.example\.net\[203\.0\.113\.25\]:25: TLSv1\.3 with cipher ", sent)
    assert "Anonymous TLS connection established from unknown[203.0.113.20]" in got
    assert re.search(r"\(Postfix\) with ESMTPS id", x("mx", "cat", "/var/mail/postmaster").stdout)


def dialog(x, node: str, lines: list[str], crlf: bool = True, server: str = "10.1.0.25"):
    end = "\r\n" if crlf else "\n"
    return x(node, "nc", "-w", "3", server, "25", input="".join(ln + end for ln in lines)).stdout


@pytest.mark.parametrize("command, reply", [
    ("VRFY jsmith", "252 2.0.0 jsmith"),
    ("VRFY nobody@example.net", ("550 5.1.1 <nobody@example.net>: Recipient address rejected: "
                                 "User unknown in local recipient table")),
    ("HELP", "500 5.5.2 Error: command not recognized"),
])
def test_commands_answered_as_postfix(x, command, reply):
    out = dialog(x, "admin", ["HELO admin.example.net", command, "QUIT"])
    assert reply in out.splitlines(), out


@pytest.mark.parametrize("mail, rcpt, reply", [
    ("MAIL FROM:<a@example.net>", "RCPT TO:<>", "501 5.1.3 Bad recipient address syntax"),
    ("MAIL FROM:<a@example.net> FOO=BAR", "NOOP", "555 5.5.4 Unsupported option: FOO=BAR"),
])
def test_parameter_errors_in_postfix_words(x, mail, rcpt, reply):
    out = dialog(x, "admin", ["EHLO admin.example.net", mail, rcpt, "QUIT"])
    assert reply in out.splitlines(), out
    assert "ENHANCEDSTATUSCODES" in out and "PIPELINING" in out


def test_nc_without_crlf_delivers(x):
    """'.' + bare LF ends DATA, as Debian 12's Postfix 3.7 accepts."""
    token = f"bare-lf-{time.monotonic_ns()}"
    out = dialog(x, "admin", ["HELO admin.example.net", "MAIL FROM:<a@example.net>",
                              "RCPT TO:<jsmith@example.net>", "DATA", f"Subject: {token}", "",
                              "body", ".", "QUIT"], crlf=False)
    assert re.search(r"250 2\.0\.0 Ok: queued as [0-9A-F]{10}", out), out
    assert token in x("mx", "cat", "/var/mail/jsmith").stdout


def test_pipelined_session_answers_every_command_in_order(x):
    out = dialog(x, "admin", ["EHLO admin.example.net", "MAIL FROM:<a@example.net>",
                              "RCPT TO:<jsmith@example.net>", "RCPT TO:<nobody@example.net>",
                              "DATA", "Subject: piped", "", "x", ".", "QUIT"])
    codes = [ln[:3] for ln in out.splitlines() if ln[3:4] == " "]
    assert codes == ["220", "250", "250", "250", "550", "354", "250", "221"], out


def test_long_line_is_kept_whole_in_the_mailbox(x):
    line = "L" * 3000
    out = dialog(x, "admin", ["HELO admin.example.net", "MAIL FROM:<a@example.net>",
                              "RCPT TO:<admin@example.net>", "DATA", "Subject: long", "",
                              line, ".", "QUIT"])
    assert "250 2.0.0 Ok" in out, out
    assert "\n" + line + "\n" in x("mx", "cat", "/var/mail/admin").stdout


def test_control_bytes_are_sanitized_in_mail_log(x):
    dialog(x, "ext-ws", ["HELO bad\x01\x1bname", "MAIL FROM:<a@example.com>",
                         "RCPT TO:<nobody@example.net>", "QUIT"], server="203.0.113.25")
    p = x("mx", "grep", "-c", "helo=<bad??name>", "/var/log/mail.log")
    assert p.stdout.strip() != "0", p.stdout
    assert "Binary" not in x("mx", "grep", "NOQUEUE", "/var/log/mail.log").stdout


def test_lost_connection_is_logged_with_bytes_and_unknown(x):
    dialog(x, "admin", ["HELO admin.example.net", "MAIL FROM:<a@example.net>",
                        "RCPT TO:<jsmith@example.net>", "DATA", "Subject: cut"])
    dialog(x, "admin", ["HELO admin.example.net", "XYZZY"])
    log = x("mx", "cat", "/var/log/mail.log").stdout
    assert re.search(r"lost connection after DATA \(\d+ bytes\) from unknown\[10\.1\.0\.100\]",
                     log)
    assert "lost connection after UNKNOWN from unknown[10.1.0.100]" in log


def test_mailboxes_belong_to_their_users(x):
    x("admin", "swaks", "--server", "10.1.0.25", "--to", "postmaster@example.net",
      "--from", "a@example.net", "--timeout", "8")
    listing = x("mx", "ls", "-l", "/var/mail/postmaster").stdout
    assert listing.startswith("-rw------- 1 postmaster mail "), listing


def test_lab_status_writes_nothing_into_mail_log(lab, lab_cli, x):
    before = x("mx", "cat", "/var/log/mail.log").stdout
    assert lab_cli("status", "--lab", lab).returncode == 0
    assert x("mx", "cat", "/var/log/mail.log").stdout == before


def test_postqueue_flush_delivers_the_deferred(lab, lab_cli, x):
    assert lab_cli("service", "mx-ext", "smtp", "stop", "--lab", lab).returncode == 0
    try:
        p = x("admin", "swaks", "--server", "10.1.0.25", "--to", "bob@example.com",
              "--from", "jsmith@example.net", "--header", "Subject: flushed", "--timeout", "8")
        assert p.returncode == 0, p.stdout
        deadline = time.monotonic() + 10
        while "bob@example.com" not in x("mx", "mailq").stdout:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        assert lab_cli("service", "mx-ext", "smtp", "start", "--lab", lab).returncode == 0
    assert x("mx", "postqueue", "-f").returncode == 0
    deadline = time.monotonic() + 10
    while "bob@example.com" in x("mx", "postqueue", "-p").stdout:
        assert time.monotonic() < deadline, x("mx", "mailq").stdout
        time.sleep(0.1)
    assert x("mx", "sendmail", "-q").returncode == 0


def test_per_client_limit_names_the_right_client(x):
    script = """
import socket
socks = []
for _ in range(51):
    s = socket.create_connection(("203.0.113.25", 25), timeout=5)
    socks.append((s, s.makefile("rb").readline().decode().strip()))
print(socks[-1][1]); print(sum(b.startswith("220 ") for _, b in socks))
import sys, subprocess
sys.stdout.flush()
print(subprocess.run(["sleep", "2"]).returncode)
"""
    import subprocess

    from tests.conftest import LAB_CMD, PROJECT_ROOT, session_name
    holder = subprocess.Popen([*LAB_CMD, "exec", "--lab", session_name(LAB), "ext-ws", "--",
                               "python3", "-c", script], cwd=PROJECT_ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        last = holder.stdout.readline().strip()
        ok = holder.stdout.readline().strip()
        other = dialog(x, "admin", ["QUIT"])
    finally:
        holder.wait(timeout=30)
    assert last == "421 4.7.0 mail.example.net Error: too many connections from 203.0.113.100"
    assert ok == "50"
    assert other.startswith("220 mail.example.net ESMTP"), other


def test_outbound_firewall_lines_show_the_source_nat_address(lab, lab_cli, x):
    """Dynamic NAT (admin) leaves with the firewall's address, mx with its static NAT."""
    assert lab_cli("verify", "--lab", lab, "outbound").returncode == 0
    dialog(x, "admin", ["QUIT"], server="203.0.113.20")
    log = x("fw", "netguard", "-An").stdout.splitlines()
    admin = [ln for ln in log if " 10.1.0.100:" in ln and "203.0.113.20:25" in ln]
    mx = [ln for ln in log if " 10.1.0.25:" in ln and "203.0.113.20:25" in ln]
    assert admin and admin[-1].split()[1] == "P" and "snat=203.0.113.1" in admin[-1], admin
    assert mx and "snat=203.0.113.25" in mx[-1], mx


def test_pflogsumm_reads_the_mail_log(x):
    if x("mx", "sh", "-c", "command -v pflogsumm").returncode != 0:
        pytest.skip("pflogsumm not installed")
    p = x("mx", "pflogsumm", "/var/log/mail.log")
    assert p.returncode == 0, p.stderr
    delivered = int(re.search(r"(\d+)\s+delivered", p.stdout).group(1))
    assert delivered > 0 and "Problems" not in p.stdout.split("Per-Hour")[0], p.stdout


def test_capture_shows_starttls_then_no_clear_text(lab, x, tmp_path):
    import subprocess

    from scapy.all import TCP, Raw, rdpcap

    from tests.conftest import LAB_CMD, PROJECT_ROOT, session_name
    cap = subprocess.Popen([*LAB_CMD, "exec", "--lab", session_name(LAB), "mx", "--",
                            "timeout", "6", "tcpdump", "-i", "eth0", "-U", "-w", "-",
                            "tcp port 25"], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    x("ext-ws", "swaks", "--server", "203.0.113.25", "--tls", "--from", "a@example.com",
      "--to", "jsmith@example.net", "--header", "Subject: secret-subject", "--timeout", "8")
    data, _ = cap.communicate(timeout=20)
    path = tmp_path / "smtp.pcap"
    path.write_bytes(data)
    payload = b"".join(bytes(p[Raw].load) for p in rdpcap(str(path))
                       if p.haslayer(TCP) and p.haslayer(Raw))
    assert b"STARTTLS" in payload and b"220 2.0.0 Ready to start TLS" in payload
    assert b"secret-subject" not in payload and b"MAIL FROM" not in payload


def test_partner_requiring_tls_keeps_its_mail_queued(labs):
    """The tls-required scenario: mx-ext requires TLS for example.net (the scenario's
    override; the reference topology's senders use TLS opportunistically) and mx stopped
    offering STARTTLS, so mx-ext's mail to the company waits in its queue, saying why."""
    lab = labs.claim("t-tlsreq")
    p = run_lab("start", "tls-required", "--seed", "1", "--lab", lab)
    assert p.returncode == 0, p.stderr
    run_lab("verify", "--lab", lab, "inbound")
    queue = " ".join(lab_exec(lab, "mx-ext", "mailq").stdout.split())
    assert ("TLS is required, but was not offered by host mail.example.net[203.0.113.25]"
            in queue), queue
