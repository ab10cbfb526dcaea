"""A lab's history without a lab: the scenario field, the traffic's plan and messages, the
log stamps moved back, and the judges of the traces a ticket promises. Root-free."""
from __future__ import annotations

import asyncio
import email
import random
import re
from datetime import datetime, timedelta
from email.policy import default as default_policy
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from lab.faults import CATALOG
from lab.history import traces
from lab.history.messages import ALERTS, alert_text, business_mail, display_name, people
from lab.history.shift import shift_past
from lab.history.stamps import BIND, ISO, LOGS, SYSLOG
from lab.history.traffic import EARLY, MAX_PLANNED, RATES, RECENT, SETTLE, Traffic, plan
from lab.model.history import TRACES, History, since_seconds
from lab.model.roles import derive_roles
from lab.model.scenario import load_scenario
from lab.model.topology import load_topology
from lab.protocols import mailq
from lab.protocols.clock import LabClock
from lab.protocols.node import NodeContext
from lab.scoring.causes import CAUSE_IDS
from lab.services import alerts

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 30, 14, 10, 0)
FLOWS = list(RATES)


# --- the scenario field ---------------------------------------------------------------------


@pytest.mark.parametrize("since, seconds", [
    ("3h", 3 * 3600), ("90m", 5400), ("1d12h", 36 * 3600), ("7d", 7 * 86400),
    ("09:00", (5 * 60 + 10) * 60), ("9:00", (5 * 60 + 10) * 60),
    ("13:50", (24 * 60 + 20) * 60),  # only 20 minutes ago: yesterday's
    ("14:30", (23 * 60 + 40) * 60),
])
def test_since_is_a_duration_or_a_time_of_day(since, seconds):
    assert History(since=since).seconds(NOW) == seconds


@pytest.mark.parametrize("data, message", [
    ({"since": "8d"}, "longer than 7 days"),
    ({"since": "3 hours"}, "neither a duration"),
    ({"since": "25:00"}, "neither a duration"),
    ({"since": 540}, "YAML reads 9:00 as 540"),
    ({"traces": ["sender-queue", "mailq"]}, "unknown trace 'mailq'"),
    ({"traces": ["alert-spool", "alert-spool"]}, "alert-spool is listed twice"),
    ({"sincе": "3h"}, "Extra inputs are not permitted"),
])
def test_a_bad_history_block_is_refused(data, message):
    with pytest.raises(ValidationError, match=message):
        History.model_validate(data)


def test_every_trace_has_a_view_and_every_view_a_trace():
    assert set(traces.VIEWS) == set(TRACES)


SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_scenario_states_its_window_and_traces(path):
    scenario = load_scenario(path, set(CATALOG), CAUSE_IDS)
    assert "history" in yaml.safe_load(path.read_text())
    assert scenario.history.traces, "a ticket promises something to look at"
    assert since_seconds(scenario.history.since, NOW) >= 3600


def test_a_bad_history_block_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\ntitle: t\ntopology: mail-dmz\nfaults: [{fault: dns-mx-missing}]\n"
                    "ticket: t\ntime_limit: 5\nhistory:\n  since: 3h\n  traces: [nope]\n")
    with pytest.raises(Exception, match=r"bad.yaml:9: history.traces\[0\]: unknown trace"):
        load_scenario(path)


# --- the plan of a replay -------------------------------------------------------------------


def test_a_plan_is_reproducible_and_differs_by_seed():
    a = plan(random.Random("nat-inbound:1"), FLOWS, 3 * 3600, 1800)
    assert a == plan(random.Random("nat-inbound:1"), FLOWS, 3 * 3600, 1800)
    assert a != plan(random.Random("nat-inbound:2"), FLOWS, 3 * 3600, 1800)
    assert a == sorted(a)


@pytest.mark.parametrize("window", [3600, 3 * 3600, 3 * 86400])
@pytest.mark.parametrize("seed", range(5))
def test_every_flow_appears_before_at_the_start_and_at_the_end_of_the_window(window, seed):
    lead = 1800
    events = plan(random.Random(seed), FLOWS, window, lead)
    span = lead + window
    assert len(events) <= MAX_PLANNED * 1.5 + 3 * len(FLOWS)
    for flow in FLOWS:
        times = [t for t, f in events if f == flow]
        assert any(t < lead for t in times)
        assert any(lead <= t <= lead + window * EARLY for t in times)
        assert any(span - RECENT <= t <= span - min(SETTLE, RECENT / 2) for t in times)
    assert all(0 <= t < span for t, _ in events)


def test_long_windows_are_quieter_not_longer_to_replay():
    day = plan(random.Random(1), FLOWS, 86400)
    week = plan(random.Random(1), FLOWS, 7 * 86400)
    assert abs(len(week) - len(day)) < MAX_PLANNED / 2


# --- what the messages look like ------------------------------------------------------------


FAULT_WORDS = sorted({n for name in CATALOG for n in name.split("-") if len(n) > 4}
                     | {"fault", "scenario", "history", "replay", "lab"})


@pytest.mark.parametrize("seed", range(20))
def test_business_mail_is_ordinary_mail_that_names_no_fault(seed):
    raw = business_mail(random.Random(seed), "jsmith@example.com", "admin@example.net", NOW)
    msg = email.message_from_bytes(raw, policy=default_policy)
    assert msg["From"].addresses[0].addr_spec == "jsmith@example.com"
    assert msg["To"] == "admin@example.net"
    assert re.fullmatch(r"<[0-9a-f-]{36}@example\.com>", msg["Message-ID"])
    assert msg["Date"].datetime == NOW.replace()  # the clock's time, not the machine's
    text = msg.get_body(("plain",)).get_content() + " ".join(str(v) for v in msg.values())
    words = set(re.findall(r"[a-z]+", text.lower()))
    assert not words & set(FAULT_WORDS)


def test_some_mail_carries_an_attachment():
    sizes = [len(business_mail(random.Random(s), "a@example.com", "b@example.net", NOW))
             for s in range(40)]
    assert min(sizes) < 2000
    assert max(sizes) > 5000


def test_alerts_are_ordinary_and_use_documentation_addresses():
    subjects = {alert_text(random.Random(s), "10.1.0.100")[0] for s in range(60)}
    assert len(subjects) > len(ALERTS)
    for subject in subjects:
        for address in re.findall(r"\d+\.\d+\.\d+\.\d+", subject):
            assert address.startswith("198.51.100.") or address == "10.1.0.100"


def test_role_accounts_do_not_write_personal_mail():
    assert people(["jsmith", "admin", "postmaster"]) == ["jsmith"]
    assert people(["admin", "postmaster"]) == ["admin", "postmaster"]
    assert display_name("jsmith") == "J. Smith"


# --- the lab's past moved back --------------------------------------------------------------


@pytest.mark.parametrize("stamp, line", [
    (SYSLOG, "Nov 30 14:09:59 mx postfix/qmgr[123]: ABC: removed"),
    (SYSLOG, "Dec  1 00:30:00 mx postfix/qmgr[123]: ABC: removed"),
    (BIND, "30-Nov-2026 14:09:59.123 zone example.net/IN: loaded serial 1"),
    (ISO, "2026-11-30T14:09:59 D tcp 203.0.113.20:4000 203.0.113.25:25 rule=default"),
])
def test_a_stamp_moves_back_and_the_rest_of_the_line_stays(stamp, line):
    now = datetime(2026, 12, 1, 1, 0)
    moved = stamp.shifted(line, 3 * 3600, now)
    assert stamp.when(moved, now) == stamp.when(line, now) - timedelta(hours=3)
    assert moved[stamp.pattern.match(moved).end():] == line[stamp.pattern.match(line).end():]


def test_syslog_stamps_ahead_of_now_are_last_years():
    assert SYSLOG.when("Dec 31 23:00:00 mx x", datetime(2027, 1, 1, 1, 0)).year == 2026


def test_shift_past_moves_logs_queue_and_alert_spool(tmp_path):
    node = NodeContext("mx", tmp_path)
    log = node.path("/var/log/mail.log")
    log.parent.mkdir(parents=True)
    log.write_text("Nov 30 14:00:00 mx postfix/qmgr[1]: A: removed\nno stamp here\n")
    spool = mailq.spool_path(tmp_path)
    mailq.write_entry(spool, mailq.QueueEntry("ABCDEF0123", "a@b", ["c@d"], 1000.0, 10,
                                              queue="deferred", attempts=1,
                                              next_attempt=1500.0), b"x\n")
    alert_id = alerts.write_alert(tmp_path, "s", "b", sender="a@example.org",
                                  recipient="b@example.org", server="mail.example.org",
                                  helo="example.org", when=NOW.astimezone())
    assert shift_past([node], 600) == 4
    assert log.read_text() == "Nov 30 13:50:00 mx postfix/qmgr[1]: A: removed\nno stamp here\n"
    entry, message = mailq.read_entry(spool / "deferred" / "ABCDEF0123")
    assert (entry.arrival, entry.next_attempt, message) == (400.0, 900.0, b"x\n")
    envelope, _ = alerts.read_alert(tmp_path, alert_id)
    assert envelope.created == NOW.astimezone() - timedelta(minutes=10)


def test_shift_past_moves_each_messages_delivery_date_and_received_but_not_its_body(tmp_path):
    from lab.protocols.mbox import mbox_entry, received_header
    from lab.services.mta import MAIL_DIR

    node = NodeContext("mx", tmp_path)
    box = node.path(f"{MAIL_DIR}/jsmith")
    box.parent.mkdir(parents=True)
    when = NOW.astimezone()
    header = received_header("mx.example.com", "203.0.113.20", "mail.example.net", "ABC",
                             "ESMTP", ["jsmith@example.net"], when)
    said = f"Date: {format_datetime(when)}"  # a body's words are the sender's, not the lab's
    message = (f"{header}Date: {format_datetime(when)}\nSubject: x\n\n{said}\n").encode()
    box.write_bytes(mbox_entry("a@example.com", "jsmith@example.net", message,
                               when.timestamp()) * 2)
    assert shift_past([node], 600) == 2
    earlier = when - timedelta(minutes=10)
    text = box.read_bytes()
    assert text.startswith(f"From a@example.com  {earlier.ctime()}\n".encode())
    msgs = [email.message_from_bytes(b"From " + m, policy=default_policy)
            for m in text.split(b"\nFrom ")]
    assert len(msgs) == 2
    for msg in msgs:
        assert msg["Date"].datetime == earlier
        assert parsedate_to_datetime(msg["Received"].rpartition(";")[2]) == earlier
        assert msg.get_content().strip() == said


def test_every_log_the_services_write_has_a_stamp_format():
    from lab.protocols.dnszones import NAMED_LOG
    from lab.protocols.fwlog import CONN_LOG, ERROR_LOG
    from lab.services.mta import MAIL_LOG

    assert set(LOGS) == {MAIL_LOG, NAMED_LOG, CONN_LOG, ERROR_LOG, alerts.ALERT_LOG}


# --- judging what a trainee sees ------------------------------------------------------------


@pytest.fixture(scope="module")
def seen() -> traces.Seen:
    roles = derive_roles(load_topology(ROOT / "topologies" / "mail-dmz.yaml"))
    return traces.Seen(roles, NOW, 3 * 3600)


def _mailq(*rcpts_reasons: tuple[str, str]) -> str:
    entries = [mailq.QueueEntry(f"{i:010X}", "jsmith@example.com", [r], 1.0, 500,
                                queue="deferred", reasons={r: why})
               for i, (r, why) in enumerate(rcpts_reasons)]
    return mailq.format_mailq(entries)


def test_queued_reads_mailq_as_postfix_prints_it():
    long = ("Host or domain name not found. Name service error for name=example.net type=MX: "
            "Host not found, try again")
    text = _mailq(("admin@example.net", "connect to x[1.2.3.4]:25: Connection timed out"),
                  ("jsmith@example.net", long))
    assert traces.queued(text) == [
        ("admin@example.net", "connect to x[1.2.3.4]:25: Connection timed out"),
        ("jsmith@example.net", long)]


@pytest.mark.parametrize("trace, text, visible", [
    ("sender-queue", _mailq(("admin@example.net", "timed out")), True),
    ("sender-queue", _mailq(("jsmith@example.com", "timed out")), False),
    ("sender-queue", "Mail queue is empty\n", False),
    ("server-queue", _mailq(("jsmith@example.com", "timed out")), True),
    ("sender-bounces", "Final-Recipient: rfc822; admin@example.net\n", True),
    ("staff-bounces", "Final-Recipient: rfc822; admin@example.net\n", False),
    ("alert-spool", "6fbad1130547455a\n", True),
    ("alert-spool", "", False),
])
def test_judges(seen, trace, text, visible):
    assert (traces.VIEWS[trace].judge(text, seen) is None) == visible


def _syslog(when: datetime, rest: str) -> str:
    return f"{when:%b} {when.day:2d} {when:%H:%M:%S} mx-ext postfix/smtp[1]: {rest}"


def test_a_log_trace_must_span_the_window(seen):
    judge = traces.VIEWS["sender-log"].judge
    line = "A: to=<admin@example.net>, relay=none, delay=30, dsn=4.4.1, status=deferred (x)"
    early, late = NOW - timedelta(hours=2, minutes=50), NOW - timedelta(minutes=5)
    assert judge("\n".join([_syslog(early, line), _syslog(late, line)]), seen) is None
    assert "oldest line" in judge("\n".join([_syslog(late, line)] * 2), seen)
    outside = line.replace("admin@example.net", "jsmith@example.com")
    assert "0 line" in judge("\n".join([_syslog(early, outside), _syslog(late, outside)]), seen)


@pytest.fixture(scope="module")
def isp_seen() -> traces.Seen:
    roles = derive_roles(load_topology(ROOT / "topologies" / "isp-relay.yaml"))
    return traces.Seen(roles, NOW, 3 * 3600)


@pytest.mark.parametrize("trace, rcpt, visible", [
    ("relay-queue", "jsmith@example.org", True),
    ("relay-queue", "jsmith@partner.test", False),  # a bounce stuck on the relay
    ("backup-mx-queue", "admin@example.org", True),
    ("backup-mx-queue", "postmaster@mx2.isp.test", False),
])
def test_the_relay_and_backup_mx_queues_hold_mail_for_the_mail_domain(isp_seen, trace, rcpt,
                                                                      visible):
    text = _mailq((rcpt, "connect to mx.example.org[198.51.100.25]:25: Connection timed out"))
    assert (traces.VIEWS[trace].judge(text, isp_seen) is None) == visible


def _from_line(sender: str, when: datetime) -> str:
    return f"From {sender}  {when:%a %b} {when.day:2d} {when:%H:%M:%S %Y}"


@pytest.mark.parametrize("ago, visible", [
    ([4 * 60, 3 * 60 + 30], True),  # minutes before NOW: both before the 3 h window
    ([4 * 60, 3 * 60 - 10], True),  # ten minutes into it: still its rough start
    ([4 * 60, 60], False),  # one arrived an hour ago
    ([2 * 60], False),  # none from before the window: nothing shows it ever arrived
    ([], False),
])
def test_inbound_stopped_needs_mail_from_before_the_window_and_none_in_it(isp_seen, ago,
                                                                          visible):
    lines = [_from_line("jsmith@partner.test", NOW - timedelta(minutes=m)) for m in ago]
    lines.append(_from_line("admin@example.org", NOW - timedelta(minutes=5)))  # internal
    judged = traces.VIEWS["inbound-stopped"].judge("\n".join(lines), isp_seen)
    assert (judged is None) == visible, judged


def test_outbound_refused_is_a_reject_or_a_bounce_to_an_outside_address(isp_seen):
    judge = traces.VIEWS["outbound-refused"].judge
    early, late = NOW - timedelta(hours=2, minutes=50), NOW - timedelta(minutes=5)
    reject = ("NOQUEUE: reject: RCPT from unknown[192.168.10.100]: 554 5.7.1 "
              "<jsmith@partner.test>: Relay access denied; from=<jsmith@example.org> "
              "to=<jsmith@partner.test> proto=ESMTP helo=<[192.168.10.100]>")
    bounced = ("A: to=<jsmith@partner.test>, relay=smtp.isp.test[198.51.100.30]:25, "
               "dsn=5.7.1, status=bounced (host smtp.isp.test[198.51.100.30] said: 554 5.7.1 "
               "<jsmith@partner.test>: Relay access denied (in reply to RCPT TO command))")
    assert judge("\n".join([_syslog(early, reject), _syslog(late, reject)]), isp_seen) is None
    assert judge("\n".join([_syslog(early, bounced), _syslog(late, bounced)]), isp_seen) is None
    inside = reject.replace("partner.test", "example.org")
    assert "0 line" in judge("\n".join([_syslog(early, inside), _syslog(late, inside)]),
                             isp_seen)


# --- the steady traffic ---------------------------------------------------------------------


def test_the_steady_traffic_sends_each_flow_at_its_rate():
    """Ten simulated hours of the traffic's own schedule on a lab loop: every flow at
    about its rate per hour."""
    sent: list[tuple[float, str]] = []

    async def go(clock: LabClock) -> None:
        traffic = Traffic.__new__(Traffic)
        traffic.flows, traffic._task, traffic._sending = FLOWS, None, set()
        traffic.rate_scale = 1.0

        def send(_rng: random.Random, flow: str) -> None:  # stands in for Traffic._send
            sent.append((clock.time(), flow))

        traffic._send = send
        traffic.start("lab:t-steady")
        clock.rewind(10 * 3600)
        await clock.start_replay(0, 1.0).done
        await traffic.stop()

    clock = LabClock()
    with asyncio.Runner(loop_factory=clock.new_loop) as runner:
        runner.run(go(clock))
    for flow, rate in RATES.items():
        count = sum(1 for _, f in sent if f == flow)
        assert rate * 10 * 0.4 <= count <= rate * 10 * 1.8, (flow, count)


def test_a_reloaded_zone_ages_every_resolvers_cache_by_its_longest_ttl(tmp_path):
    from types import SimpleNamespace

    from lab.history.propagate import propagate_zone_changes
    from lab.model.dns import DnsConfig
    from lab.protocols.zonefile import render_zone
    from lab.services.dns import DnsService

    auth = DnsService(NodeContext("ns", tmp_path / "ns"), DnsConfig.model_validate(
        {"mode": "authoritative", "zones": {"example.net": {"ttl": 3600, "records": [
            "@ SOA ns.example.net. h.example.net. 1 3600 600 86400 300",
            "@ NS ns.example.net.", "ns A 203.0.113.53", "mail A 203.0.113.99"]}}}))
    resolver = DnsService(NodeContext("res", tmp_path / "res"), DnsConfig.model_validate(
        {"mode": "recursive", "root_hints": [{"name": "a.root.", "address": "203.0.113.10"}],
         "recursion_from": ["203.0.113.0/24"]}))
    for name, zone in auth.config.zones.items():
        auth.zone_set.install(name, render_zone(name, zone.ttl, zone.records))
    propagate_zone_changes(SimpleNamespace(all=lambda: [("ns", auth), ("res", resolver)]))
    resolver.cache.seed("mail.example.net", "A", "203.0.113.99", ttl=3600)  # the traffic's
    resolver.cache.seed("www.example.net", "A", "203.0.113.98", ttl=86400)  # planted
    slot = auth.zones["example.net"]
    slot.path.write_text(slot.path.read_text().replace("203.0.113.99", "203.0.113.25")
                         .replace(" 1 3600", " 2 3600"))
    auth.reload_zones()
    assert resolver.cache.get("mail.example.net", 1) is None
    assert resolver.cache.get("www.example.net", 1)
