"""The firewall's alert mailer, its spool, ``netguard-alert`` and the alerts config.

Root-free, on loopback: the internal mail server (the project's MtaService) listens on
127.0.0.25, a dnslib stub DNS (thread) on 127.0.0.53 answers ``mail.example.net`` with
whatever the test says: 127.0.0.25 is "split DNS" (the private address), 127.0.0.99
(nothing listens) is the public address a firewall without split DNS would get.
"""
from __future__ import annotations

import asyncio
import email
import re
import socket
import time
from datetime import datetime, timedelta
from email.policy import default as default_policy
from pathlib import Path

import pytest
from dnslib import QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer
from pydantic import ValidationError

from lab.model.alerts import AlertsConfig
from lab.model.mta import MtaConfig
from lab.nodecmds import alert_cli
from lab.protocols.node import NodeContext
from lab.services import alerts
from lab.services.alerts import AlertMailer, Envelope, SpoolError, parse_envelope
from lab.services.mta import MtaService

MAIL_IP, DNS_IP, NOWHERE = "127.0.0.25", "127.0.0.53", "127.0.0.99"
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"
# the alert settings of the reference topology (topologies/mail-dmz.yaml, fw)
REFERENCE = {"to": "admin@example.net", "from": "netguard@fw.example.net",
             "mail_server": "mail.example.net"}


def free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


class SwitchableResolver(BaseResolver):
    """Answers A queries from ``records``; a name not in it is NXDOMAIN."""

    def __init__(self) -> None:
        self.records: dict[str, str] = {}

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        addr = self.records.get(name)
        if addr is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.A:
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(addr), ttl=1))
        return reply


@pytest.fixture(scope="module")
def dns():
    resolver = SwitchableResolver()
    port = free_port(DNS_IP)
    server = DNSServer(resolver, port=port, address=DNS_IP,
                       logger=DNSLogger(logf=lambda _msg: None))
    server.start_thread()
    yield resolver, port
    server.stop()
    server.server.server_close()


class Lab:
    """The firewall node, the mail server node, and the knobs a test turns."""

    def __init__(self, tmp: Path, dns) -> None:
        self.resolver, self.dns_port = dns
        self.resolver.records = {"mail.example.net": MAIL_IP}  # split DNS by default
        self.smtp_port = free_port(MAIL_IP)
        self.fw = self._node(tmp / "fw", "fw", "127.0.0.1")
        self.mx = self._node(tmp / "mx", "mx", MAIL_IP)

    @staticmethod
    def _node(root: Path, name: str, ip: str) -> NodeContext:
        (root / "etc").mkdir(parents=True)
        (root / "etc" / "resolv.conf").write_text(f"nameserver {DNS_IP}\n")
        return NodeContext(name=name, root=root, addresses=[ip])

    def split_dns(self, on: bool | None) -> None:
        """True: private address; False: an address nobody answers on; None: no record."""
        self.resolver.records = {} if on is None else {
            "mail.example.net": MAIL_IP if on else NOWHERE}

    def mta(self) -> MtaService:
        config = MtaConfig(hostname="mail.example.net", domains=["example.net"],
                           users=["admin", "postmaster", "jsmith"])
        return MtaService(self.mx, config, port=self.smtp_port, dns_port=self.dns_port,
                          loopback_relay=False, connect_timeout=2, dns_timeout=0.3)

    def mailer(self, scan_interval: float = 30.0, **cfg) -> AlertMailer:
        config = AlertsConfig.model_validate({**REFERENCE, **cfg})
        return AlertMailer(self.fw, config, smtp_port=self.smtp_port,
                           dns_port=self.dns_port, connect_timeout=2, dns_timeout=0.3,
                           scan_interval=scan_interval)

    def mbox(self, user: str) -> str:
        path = self.mx.path(f"/var/mail/{user}")
        return path.read_text() if path.exists() else ""

    def log(self) -> str:
        path = self.fw.path(alerts.ALERT_LOG)
        return path.read_text() if path.exists() else ""

    def spool(self) -> tuple[list[str], list[str]]:
        """File names in (outgoing/smtp, data), hidden temporary files included."""
        return tuple(  # type: ignore[return-value]
            sorted(p.name for p in self.fw.path(d).iterdir())
            for d in (alerts.ENVELOPE_DIR, alerts.DATA_DIR)
        )

    def envelope(self, alert_id: str) -> Envelope:
        return parse_envelope(alert_id, self.fw.path(f"{alerts.ENVELOPE_DIR}/{alert_id}")
                              .read_text())

    def cli(self, *args: str) -> int:
        return alert_cli.main([*args, "--root", str(self.fw.root)])


@pytest.fixture
def lab(tmp_path, dns) -> Lab:
    return Lab(tmp_path, dns)


def run(coro, timeout: float = 30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until(check, timeout: float = 5.0, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(step)


# --------------------------------------------------------------------------------------
# Delivery
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("subject, body", [
    ("Port scan from 198.51.100.7", "2345 denied connections in 60 s\n"),
    ("Disk 91% full", ""),
    ("Überlast auf eth0", ".leading dot line\nFrom here on\nzweite Zeile äöü"),
])
def test_alert_with_split_dns_is_delivered_and_spool_emptied(lab, subject, body):
    async def go():
        mta, mailer = lab.mta(), lab.mailer()
        await mta.start()
        await mailer.start()
        try:
            alert_id = mailer.raise_alert(subject, body)
            assert lab.spool() == ([alert_id], [alert_id])
            await mailer.flush()
            assert lab.spool() == ([], [])
            assert mailer.spooled() == []
        finally:
            await mailer.stop()
            await mta.stop()
        return alert_id

    alert_id = run(go())
    mbox = lab.mbox("admin")
    stored = re.sub(r"(?m)^>(>*From )", r"\1", mbox.split("\n", 1)[1])  # mboxrd escaping
    msg = email.message_from_string(stored, policy=default_policy)
    assert msg["Subject"] == subject
    assert msg["From"] == "netguard@fw.example.net"
    assert msg["To"] == "admin@example.net"
    assert msg["Message-ID"] == f"<{alert_id}@fw.example.net>"
    assert msg["Date"].datetime.tzinfo is not None
    assert msg.get_content().rstrip("\n") == body.rstrip("\n")
    assert "Return-Path: <netguard@fw.example.net>" in mbox
    assert re.search(
        rf"^{STAMP} alert {alert_id} to=<admin@example.net> "
        rf"server=mail\.example\.net\[127\.0\.0\.25\]:{lab.smtp_port} status=sent \(250 .*\)$",
        lab.log(), re.MULTILINE,
    ), lab.log()


@pytest.mark.parametrize("dns_state, error", [
    (False, "connect to 127.0.0.99:{port}: Connection refused"),
    (None, ("Host or domain name not found. Name service error for name=mail.example.net "
           "type=A: Host not found")),
])
def test_undeliverable_alert_stays_with_its_error_until_dns_is_fixed(lab, dns_state, error):
    error = error.format(port=lab.smtp_port)
    lab.split_dns(dns_state)

    async def go():
        mta, mailer = lab.mta(), lab.mailer(retry_interval=3600)
        await mta.start()
        await mailer.start()
        try:
            alert_id = mailer.raise_alert("Link down", "eth1 lost carrier")
            await mailer.flush()
            assert lab.spool() == ([alert_id], [alert_id])
            env = lab.envelope(alert_id)
            assert (env.attempts, env.last_error, env.server) == (1, error, "mail.example.net")
            assert env.last_attempt is not None
            assert f"status=deferred ({error})" in lab.log()
            assert lab.mbox("admin") == ""
            await mailer.flush()  # a forced pass tries again, and fails again
            assert lab.envelope(alert_id).attempts == 2
            lab.split_dns(True)
            await mailer.flush()
            assert lab.spool() == ([], [])
        finally:
            await mailer.stop()
            await mta.stop()
        return alert_id

    alert_id = run(go())
    assert "Subject: Link down" in lab.mbox("admin")
    lines = [ln for ln in lab.log().splitlines() if f"alert {alert_id} to=" in ln]
    assert [ln.rsplit("status=", 1)[1].split()[0] for ln in lines] == [
        "deferred", "deferred", "sent"]
    if dns_state is None:
        assert "server=mail.example.net:" in lines[0]
    else:
        assert f"server=mail.example.net[{NOWHERE}]:{lab.smtp_port}" in lines[0]


def test_runner_retries_every_retry_interval_on_its_own(lab):
    lab.split_dns(False)

    async def go():
        mta, mailer = lab.mta(), lab.mailer(scan_interval=0.05, retry_interval=0.6)
        await mta.start()
        await mailer.start()
        try:
            alert_id = mailer.raise_alert("Config changed")
            await until(lambda: "status=deferred" in lab.log(), timeout=5)
            t_fail = time.monotonic()
            await asyncio.sleep(0.3)  # many scans, but the retry is not due yet
            assert lab.envelope(alert_id).attempts == 1
            lab.split_dns(True)
            await until(lambda: lab.spool() == ([], []), timeout=5)
            assert time.monotonic() - t_fail >= 0.5
        finally:
            await mailer.stop()
            await mta.stop()

    run(go())
    assert lab.log().count("status=deferred") == 1
    assert lab.log().count("status=sent") == 1
    assert "Subject: Config changed" in lab.mbox("admin")


def test_alert_survives_a_restart_of_the_mailer(lab):
    lab.split_dns(False)

    async def go():
        mta = lab.mta()
        await mta.start()
        first = lab.mailer()
        await first.start()
        alert_id = first.raise_alert("Before restart")
        await first.flush()
        await first.stop()
        assert lab.spool() == ([alert_id], [alert_id])
        lab.split_dns(True)
        second = lab.mailer()
        await second.start()
        try:
            await second.flush()
        finally:
            await second.stop()
            await mta.stop()

    run(go())
    assert "Subject: Before restart" in lab.mbox("admin")


# --------------------------------------------------------------------------------------
# netguard-alert
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, user, sender", [
    (["Manual test alert"], "postmaster", "netguard@fw.example.net"),
    (["Manual test alert", "typed by a trainee"], "postmaster", "netguard@fw.example.net"),
    (["Manual test alert", "--to", "jsmith@example.net", "--from", "fw@example.net"],
     "jsmith", "fw@example.net"),
])
def test_cli_alert_is_picked_up_by_the_running_mailer(lab, capsys, args, user, sender):
    async def go():
        mta = lab.mta()
        mailer = lab.mailer(scan_interval=0.05, to="postmaster@example.net")
        await mta.start()
        await mailer.start()  # writes the settings the command reads
        try:
            assert lab.cli(*args) == 0
            alert_id = capsys.readouterr().out.strip()
            assert re.fullmatch(r"[0-9a-f]{16}", alert_id)
            await until(lambda: lab.spool() == ([], []), timeout=5)
        finally:
            await mailer.stop()
            await mta.stop()
        return alert_id

    alert_id = run(go())
    mbox = lab.mbox(user)
    assert "Subject: Manual test alert" in mbox
    assert f"From: {sender}" in mbox
    if len(args) > 1 and not args[1].startswith("--"):
        assert args[1] in mbox
    assert re.search(rf"^{STAMP} alert {alert_id} from=<{sender}> .*queued: Manual test alert$",
                     lab.log(), re.MULTILINE)
    assert f"alert {alert_id} to=<{user}@example.net>" in lab.log()


def test_cli_writes_the_same_files_as_raise_alert(lab, capsys):
    mailer = lab.mailer()
    alerts.write_settings(lab.fw.root, mailer.config)  # as the mailer does when it starts
    from_service = mailer.raise_alert("Same format", "body")
    assert lab.cli("Same format", "body") == 0
    from_cli = capsys.readouterr().out.strip()
    env_a, msg_a = alerts.read_alert(lab.fw.root, from_service)
    env_b, msg_b = alerts.read_alert(lab.fw.root, from_cli)
    assert (env_a.sender, env_a.recipient, env_a.server, env_a.attempts) == \
           (env_b.sender, env_b.recipient, env_b.server, env_b.attempts)

    def headers(raw: bytes, alert_id: str) -> list[str]:
        text = raw.decode().replace(alert_id, "ID")
        return [ln for ln in text.splitlines() if not ln.startswith("Date:")]

    assert headers(msg_a, from_service) == headers(msg_b, from_cli)


@pytest.mark.parametrize("args", [[], ["  "], ["--list", "Subject"], ["S", "--to", "nobody"]])
def test_cli_refuses_bad_arguments(lab, args, capsys):
    with pytest.raises(SystemExit) as exc:
        lab.cli(*args)
    assert exc.value.code == 2
    assert "netguard-alert: error:" in capsys.readouterr().err
    assert not lab.fw.path(alerts.ENVELOPE_DIR).exists()


def test_cli_reports_an_unwritable_spool(lab, capsys):
    lab.fw.path("/var/spool").mkdir(parents=True)
    lab.fw.path("/var/spool/mailq").write_text("not a directory")
    assert lab.cli("Subject") == 1
    assert "cannot write the spool" in capsys.readouterr().err


def test_cli_list_empty(lab, capsys):
    assert lab.cli("--list") == 0
    assert capsys.readouterr().out == "Alert spool is empty\n"


@pytest.mark.parametrize("attempts, last_error, age, shown_age", [
    (0, "", timedelta(seconds=5), "5s"),
    (1, "connect to 127.0.0.99:25: Connection timed out", timedelta(minutes=3, seconds=7),
     "3m07s"),
    (12, ("Host or domain name not found. Name service error for name=mail.example.net "
         "type=A: Host not found, try again"), timedelta(hours=2, minutes=1), "2h01m"),
])
def test_cli_list_shows_id_age_attempts_last_error(lab, capsys, attempts, last_error, age,
                                                   shown_age):
    created = datetime.now().astimezone() - age
    alert_id = alerts.write_alert(lab.fw.root, "S", "", sender="a@example.net",
                                  recipient="b@example.net", server="mail.example.net",
                                  helo="fw.example.net", when=created)
    env = lab.envelope(alert_id)
    env.attempts, env.last_error = attempts, last_error
    alerts.write_envelope(lab.fw.root, env)
    assert lab.cli("--list") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["ID", "AGE", "ATTEMPTS", "LAST", "ERROR"]
    row = out[1].split(None, 3)
    assert [row[0], *row[2:]] == [alert_id, str(attempts), last_error or "-"]
    # the age is read when the list is made: a slow machine may add a second or two
    assert row[1] == shown_age or age_seconds(shown_age) <= age_seconds(row[1]) <= (
        age_seconds(shown_age) + 2), row[1]
    assert out[2] == f"-- 1 alert in {alerts.ENVELOPE_DIR}"


def age_seconds(text: str) -> int:
    """"5s", "3m07s", "2h01m" as seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([hms])", text))


def test_cli_list_flags_a_malformed_file(lab, capsys):
    good = alerts.write_alert(lab.fw.root, "S", "", sender="a@example.net",
                              recipient="b@example.net", server="mail.example.net",
                              helo="fw.example.net")
    lab.fw.path(f"{alerts.ENVELOPE_DIR}/junk").write_text("garbage\n")
    assert lab.cli("--list") == 0
    out = capsys.readouterr().out
    assert re.search(rf"^{good} +\d+s +0 +-$", out, re.MULTILINE)
    assert re.search(r"^junk +- +- +malformed spool file: line 1: unexpected 'garbage'$", out,
                     re.MULTILINE)
    assert "-- 2 alerts in" in out


# --------------------------------------------------------------------------------------
# Malformed spool files
# --------------------------------------------------------------------------------------

GOOD_ENVELOPE = ("from: netguard@fw.example.net\nto: admin@example.net\n"
                 "server: mail.example.net\ncreated: 2026-11-25T16:50:01+00:00\nattempts: 0\n")


@pytest.mark.parametrize("envelope, data, reason", [
    (b"garbage without a colon\n", b"Subject: x\n\nbody\n", "line 1: unexpected"),
    (GOOD_ENVELOPE.replace("attempts: 0", "attempts: many").encode(), b"Subject: x\n\nx\n",
     "attempts: 'many' is not a number"),
    (GOOD_ENVELOPE.replace("to: admin@example.net\n", "").encode(), b"Subject: x\n\nx\n",
     "missing to"),
    (GOOD_ENVELOPE.encode(), None, "no message file /var/spool/mailq/data/bad1"),
    (GOOD_ENVELOPE.encode(), b"\n", "message file /var/spool/mailq/data/bad1 is empty"),
    (b"\xff\xfe\x00binary", b"Subject: x\n\nx\n", "envelope is not UTF-8 text"),
])
def test_malformed_spool_file_is_logged_once_and_skipped(lab, envelope, data, reason):
    lab.fw.path(f"{alerts.ENVELOPE_DIR}/bad1").parent.mkdir(parents=True)
    lab.fw.path(f"{alerts.ENVELOPE_DIR}/bad1").write_bytes(envelope)
    if data is not None:
        lab.fw.path(f"{alerts.DATA_DIR}/bad1").parent.mkdir(parents=True)
        lab.fw.path(f"{alerts.DATA_DIR}/bad1").write_bytes(data)

    async def go():
        mta, mailer = lab.mta(), lab.mailer(scan_interval=0.05)
        await mta.start()
        await mailer.start()
        try:
            good = mailer.raise_alert("Still delivered")
            await until(lambda: good not in mailer.spooled(), timeout=5)
            await asyncio.sleep(0.3)  # several more passes over the bad file
            await mailer.flush()
            assert await mailer.healthy()
        finally:
            await mailer.stop()
            await mta.stop()

    run(go())
    assert "Subject: Still delivered" in lab.mbox("admin")
    warnings = [ln for ln in lab.log().splitlines() if "malformed" in ln]
    assert len(warnings) == 1, lab.log()
    assert re.fullmatch(
        rf"{STAMP} warning: alert bad1: malformed spool file "
        rf"/var/spool/mailq/outgoing/smtp/bad1: .*; skipped", warnings[0])
    assert reason in warnings[0]
    assert lab.fw.path(f"{alerts.ENVELOPE_DIR}/bad1").exists()  # left for a person to see


# --------------------------------------------------------------------------------------
# Health, format, config
# --------------------------------------------------------------------------------------


def test_healthy_tracks_runner_and_spool(lab):
    async def go():
        mailer = lab.mailer()
        states = [await mailer.healthy()]
        await mailer.start()
        states.append(await mailer.healthy())
        lab.fw.path(alerts.DATA_DIR).rmdir()
        states.append(await mailer.healthy())
        lab.fw.path(alerts.DATA_DIR).mkdir()
        states.append(await mailer.healthy())
        await mailer.stop()
        states.append(await mailer.healthy())
        return states

    assert run(go()) == [False, True, False, True, False]


@pytest.mark.parametrize("attempts, last_attempt, last_error", [
    (0, None, ""),
    (3, datetime(2026, 11, 25, 16, 50, 11).astimezone(), ("connect to 203.0.113.25:25: "
                                                           "Connection timed out")),
])
def test_envelope_round_trip(attempts, last_attempt, last_error):
    env = Envelope("abc", "netguard@fw.example.net", "admin@example.net", "mail.example.net",
                   datetime(2026, 11, 25, 16, 50, 1).astimezone(), attempts, last_attempt,
                   last_error)
    assert parse_envelope("abc", env.render()) == env


@pytest.mark.parametrize("text, reason", [
    (GOOD_ENVELOPE + "attempts: 1\n", "attempts given twice"),
    (GOOD_ENVELOPE + "colour: blue\n", "unexpected 'colour: blue'"),
    (GOOD_ENVELOPE.replace("2026-11-25T16:50:01+00:00", "yesterday"), "not a timestamp"),
    (GOOD_ENVELOPE.replace("attempts: 0", "attempts: -1"), "negative"),
    (GOOD_ENVELOPE.replace("admin@example.net", "admin"), "not a mail address"),
])
def test_parse_envelope_rejects(text, reason):
    with pytest.raises(SpoolError, match=reason):
        parse_envelope("x", text)


@pytest.mark.parametrize("data, expected", [
    ({}, {"to": "postmaster@localhost", "from_": "netguard@localhost",
          "mail_server": "localhost", "retry_interval": 10, "helo": "localhost"}),
    (REFERENCE, {"to": "admin@example.net", "from_": "netguard@fw.example.net",
                 "mail_server": "mail.example.net", "retry_interval": 10,
                 "helo": "fw.example.net"}),
    ({"from": "FW@Example.NET", "to": "ops@example.org", "mail_server": "MX.example.org.",
      "retry_interval": 2.5, "helo": "gw.example.org"},
     {"to": "ops@example.org", "from_": "FW@example.net", "mail_server": "mx.example.org",
      "retry_interval": 2.5, "helo": "gw.example.org"}),
])
def test_config_defaults_and_from_alias(data, expected):
    assert AlertsConfig.model_validate(data).model_dump() == expected


@pytest.mark.parametrize("data, field", [
    ({"sender": "a@example.net"}, "sender"),
    ({"to": "not-an-address"}, "to"),
    ({"from": "a b@example.net"}, "from"),
    ({"mail_server": "mail_server!"}, "mail_server"),
    ({"retry_interval": 0}, "retry_interval"),
    ({"helo": ""}, "helo"),
])
def test_config_rejects(data, field):
    with pytest.raises(ValidationError) as exc:
        AlertsConfig.model_validate(data)
    assert exc.value.errors()[0]["loc"][0] == field


def test_settings_file_carries_config_to_the_cli(lab):
    cfg = AlertsConfig.model_validate({"to": "ops@example.org", "from": "gw@example.org",
                                       "mail_server": "mx.example.org"})
    alerts.write_settings(lab.fw.root, cfg)
    got = alerts.read_settings(lab.fw.root)
    assert (got.to, got.from_, got.mail_server) == ("ops@example.org", "gw@example.org",
                                                   "mx.example.org")
    lab.fw.path(alerts.SETTINGS).write_text("to: nonsense\n")
    assert alerts.read_settings(lab.fw.root) == AlertsConfig()


def test_a_stalled_session_does_not_hold_up_later_alerts(lab):
    """A mail server that accepts but never answers (a lossy link, a hung server) keeps one
    alert's session open; the next alert still gets its own delivery attempt at once."""
    connections: list[asyncio.StreamWriter] = []

    async def stall(_reader, writer):
        connections.append(writer)  # no banner: the client waits for its session timeout

    async def go():
        server = await asyncio.start_server(stall, MAIL_IP, lab.smtp_port)
        mailer = lab.mailer(scan_interval=0.05)
        await mailer.start()
        try:
            mailer.raise_alert("first")
            await until(lambda: len(connections) == 1, timeout=3)
            mailer.raise_alert("second")
            await until(lambda: len(connections) == 2, timeout=3)
        finally:
            await mailer.stop()
            for writer in connections:
                writer.close()
            server.close()
            await server.wait_closed()

    run(go())
