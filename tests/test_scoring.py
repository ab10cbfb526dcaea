"""Scoring: the cause list, the attempt record, matching, the rubric, golden reports."""
from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.model.scenario import Accept
from lab.scoring import attempt as attempt_mod
from lab.scoring.attempt import Attempt, FaultKey, Probe, Submission
from lab.scoring.causes import CAUSE_IDS, CAUSES, LAYERS, get_cause, render_causes
from lab.scoring.report import render_html, render_text, to_json
from lab.scoring.rubric import Rubric
from lab.scoring.score import grade, match, score, tools_of

GOLDEN = Path(__file__).parent / "golden" / "scoring"
T0 = 1_780_000_000.0  # a fixed start time: 2026-05-28 20:26:40 UTC
ALL_PASS = {"inbound": Probe(True, "delivered"), "outbound": Probe(True, "delivered"),
            "alert": Probe(True, "spool empty")}
EXPECTED_IDS = {
    "dns-wrong-address", "dns-mx-missing", "dns-mx-no-address", "dns-server-down",
    "dns-lame-delegation", "dns-stale-cache", "dns-no-split-view", "nat-static-missing",
    "nat-static-wrong-host", "nat-dynamic-missing", "fw-smtp-permit-missing",
    "fw-alert-permit-missing", "fw-icmp-blocked", "proxy-server-not-listed",
    "proxy-mode-mismatch", "smtp-service-down", "smtp-relay-refused", "host-gateway-wrong",
    "host-resolver-wrong", "link-down", "link-packet-loss",
}


def make(faults: list[FaultKey], *, minutes: float = 15, limit: int = 30,
         commands: list[tuple[float, str, str]] = (), hints: list[tuple[float, int, int]] = (),
         subs: list[tuple[float, str, str]] = (), probes: dict | None = None,
         damage: list[str] = (), herrings: list[FaultKey] = (),
         trainee: str = "ann") -> Attempt:
    """An ended attempt; times are minutes after T0, commands are shell lines."""
    a = Attempt(scenario="inbound-bounces", lab="l1", seed=7, trainee=trainee, started=T0,
                ticket="External senders get bounces from example.net.", time_limit=limit,
                faults=list(faults), red_herrings=list(herrings))
    for t, node, line in commands:
        a.record_command(node, shlex.split(line), T0 + t * 60)
    for t, index, cost in hints:
        a.take_hint(index, cost, T0 + t * 60)
    for t, cause, node in subs:
        a.submit(cause, node, T0 + t * 60)
    a.probes = dict(ALL_PASS if probes is None else probes)
    a.damage = list(damage)
    a.finish(T0 + minutes * 60)
    return a


MX_MISSING = FaultKey("dns-mx-missing", {}, "dns-mx-missing", "ns-ext", ["ext-ws", "ns-ext"])
GOOD_LOOK = [(1, "ext-ws", "dig MX example.net"), (2, "ext-ws", "nslookup -type=soa example.net"),
             (3, "ns-ext", "cat /etc/bind/db.example.net"), (5, "fw", "netguard -An")]

CASES: dict[str, Attempt] = {
    "right": make([MX_MISSING], commands=GOOD_LOOK, subs=[(6, "dns-mx-missing", "ns-ext")]),
    "partial": make(
        [FaultKey("nat-static-wrong-host", {"to": "10.1.0.99"}, "nat-static-wrong-host", "fw",
                  ["ext-ws", "fw", "mx"])],
        commands=[(1, "fw", "nft list ruleset"), (3, "ext-ws", "dig mail.example.net"),
                  (4, "fw", "sh -c 'netguard -An | grep 10.1.0.25'")],
        subs=[(8, "nat-static-missing", "fw")],
        probes={"inbound": Probe(False, "connection timed out"), "outbound": Probe(True),
                "alert": Probe(True)}),
    "wrong": make(
        [FaultKey("smtp-service-down", {}, "smtp-service-down", "mx")],
        commands=[(1, "ext-ws", "ping -c1 203.0.113.25")],
        subs=[(5, "dns-mx-missing", "ns-ext"), (9, "link-down", "fw")], probes={}),
    "damaging": make(
        [FaultKey("fw-smtp-permit-missing", {}, "fw-smtp-permit-missing", "fw")],
        minutes=44, commands=GOOD_LOOK + [(20, "fw", "nft flush ruleset")],
        subs=[(12, "fw-smtp-permit-missing", "fw")],
        damage=["forward chain policy changed to accept", "ruleset flushed",
                "dynamic NAT removed"]),
    "hint-heavy": make([MX_MISSING], commands=GOOD_LOOK,
                       hints=[(2, 0, 5), (4, 1, 10), (6, 2, 15)],
                       subs=[(7, "dns-mx-missing", "ns-ext")]),
    "two-fault": make(
        [FaultKey("dns-wrong-address", {"address": "203.0.113.99"}, "dns-wrong-address",
                  "ns-ext", ["ext-ws", "ns-ext"]),
         FaultKey("nat-dynamic-missing", {}, "nat-dynamic-missing", "fw", ["mx", "fw"])],
        minutes=25, commands=GOOD_LOOK + [(10, "mx", "sudo timeout 5 ping -c1 10.1.0.1")],
        subs=[(8, "nat-dynamic-missing", "fw"), (9, "dns-stale-cache", "ns-ext"),
              (11, "dns-wrong-address", "ns-ext"), (12, "dns-wrong-address", "ns-ext")],
        trainee="Ann <ann@example.org> & \"co\""),
    "red-herring": make(
        [FaultKey("proxy-server-not-listed", {}, "proxy-server-not-listed", "fw",
                  ["ext-ws", "fw", "mx"])],
        herrings=[FaultKey("fw-icmp-blocked", {}, "fw-icmp-blocked", "fw")],
        commands=[(1, "ext-ws", "ping -c3 203.0.113.1"), (2, "ext-ws", "dig mail.example.net"),
                  (4, "fw", "netguard -An"), (6, "mx", "ss -ltn")],
        subs=[(5, "fw-icmp-blocked", "fw"), (10, "proxy-server-not-listed", "fw")]),
}
HTML_CASES = ["two-fault", "damaging"]


def check_golden(path: Path, text: str) -> None:
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"differs from {path} (UPDATE_GOLDEN=1 regenerates)"


@pytest.mark.parametrize("case", sorted(CASES))
def test_text_report_golden(case: str) -> None:
    check_golden(GOLDEN / f"{case}.txt", render_text(score(CASES[case])))


@pytest.mark.parametrize("case", sorted(CASES))
def test_json_report_golden(case: str) -> None:
    data = to_json(score(CASES[case]))
    check_golden(GOLDEN / f"{case}.json", json.dumps(data, indent=2, sort_keys=True) + "\n")


@pytest.mark.parametrize("case", HTML_CASES)
def test_html_report_golden(case: str) -> None:
    check_golden(GOLDEN / f"{case}.html", render_html(score(CASES[case])))


@pytest.mark.parametrize("case", sorted(CASES))
def test_total_is_the_sum_of_explained_items(case: str) -> None:
    report = score(CASES[case])
    assert report.total == sum(i.points for i in report.items) >= 0
    assert all(i.reason for i in report.items)
    assert report.max_points == 100


@pytest.mark.parametrize(("case", "verdicts", "total"), [
    ("right", ["right"], 100),
    ("partial", ["partial"], 37),
    ("wrong", ["wrong"], 0),
    ("damaging", ["right"], 60),
    ("hint-heavy", ["right"], 70),
    ("two-fault", ["right", "right"], 95),
    ("red-herring", ["right"], 85),
])
def test_verdicts_and_totals(case: str, verdicts: list[str], total: int) -> None:
    report = score(CASES[case])
    assert [v.verdict for v in report.verdicts] == verdicts
    assert report.total == total


def test_html_is_self_contained_and_escaped() -> None:
    page = render_html(score(CASES["two-fault"]))
    assert "<ann@" not in page and "&lt;ann@example.org&gt; &amp; &quot;co&quot;" in page
    assert "http" not in page and "<link" not in page and "<script" not in page


def test_red_herring_is_never_partial_credit() -> None:
    a = make([FaultKey("fw-smtp-permit-missing", {}, "fw-smtp-permit-missing", "fw")],
             herrings=[FaultKey("fw-icmp-blocked", {}, "fw-icmp-blocked", "fw")],
             subs=[(5, "fw-icmp-blocked", "fw")])
    report = score(a)
    assert report.verdicts[0].verdict == "wrong"
    assert [i.points for i in report.items if i.category == "submissions"] == [-15]


# --- matching ----------------------------------------------------------------------------

FW_FAULT = FaultKey("x", {}, "nat-static-missing", "fw")


@pytest.mark.parametrize(("cause", "node", "accept", "expected"), [
    ("nat-static-missing", "fw", Accept(), "right"),
    ("nat-static-missing", "mx", Accept(), "partial"),
    ("fw-smtp-permit-missing", "fw", Accept(), "partial"),
    ("dns-mx-missing", "ns-ext", Accept(), None),
    ("dns-mx-missing", "ns-ext", Accept(partial={"nat-static-missing": ["dns-mx-missing"]}),
     "partial"),
    ("proxy-mode-mismatch", "fw", Accept(right={"nat-static-missing": ["proxy-mode-mismatch"]}),
     "right"),
])
def test_grade(cause: str, node: str, accept: Accept, expected: str | None) -> None:
    assert grade(FW_FAULT, Submission(0, cause, node), accept)[0] == expected


@pytest.mark.parametrize(("grades", "expected"), [
    ([[2]], [0]),
    ([[0]], [None]),
    ([[1, 2]], [1]),
    ([[2], [2]], [0, None]),            # one submission diagnoses one fault only
    ([[2, 1], [2, 0]], [1, 0]),         # the best total, not the first fault's best
    ([[2, 2], [0, 0]], [0, None]),      # earlier submission wins a tie
    ([[1, 1, 0], [0, 2, 2]], [0, 1]),
])
def test_match(grades: list[list[int]], expected: list[int | None]) -> None:
    assert match(grades) == expected


def test_two_faults_on_one_node_need_two_submissions() -> None:
    faults = [FaultKey("a", {}, "nat-static-missing", "fw"),
              FaultKey("b", {}, "fw-smtp-permit-missing", "fw")]
    report = score(make(faults, subs=[(3, "nat-static-missing", "fw")]))
    assert [v.verdict for v in report.verdicts] == ["right", "missing"]
    report = score(make(faults, subs=[(3, "nat-static-missing", "fw"),
                                      (4, "fw-smtp-permit-missing", "fw")]))
    assert [v.verdict for v in report.verdicts] == ["right", "right"]


# --- rubric parts ------------------------------------------------------------------------

@pytest.mark.parametrize(("minutes", "points"), [(29, 0), (30, 0), (30.5, -1), (34, -4),
                                                  (120, -10)])
def test_overtime_is_linear_and_capped(minutes: float, points: int) -> None:
    report = score(make([MX_MISSING], minutes=minutes))
    assert [i.points for i in report.items if i.category == "time"] == [points]


@pytest.mark.parametrize(("commands", "points"), [
    ([(1, "ext-ws", "dig MX example.net"), (2, "fw", "nft list ruleset")], 10),
    ([(1, "fw", "nft list ruleset"), (2, "ext-ws", "dig MX example.net")], 0),
    ([(1, "ext-ws", "host example.net")], 10),
    ([(1, "fw", "netguard -An")], 0),
    ([], 0),
])
def test_dns_before_firewall(commands: list, points: int) -> None:
    report = score(make([MX_MISSING], commands=commands))
    dns_first = next(i for i in report.items if i.category == "investigation")
    assert "DNS" in dns_first.reason and dns_first.points == points


@pytest.mark.parametrize(("argv", "tools"), [
    (["dig", "MX", "example.net"], ["dig"]),
    (["/usr/bin/nslookup", "-type=mx", "example.net"], ["nslookup"]),
    (["sudo", "timeout", "5", "nft", "list", "ruleset"], ["nft"]),
    (["sh", "-c", "netguard -An | grep 10.1.0.25"], ["netguard", "grep"]),
    (["bash", "-c", "ls /var/spool/mailq/data && cat x; env A=1 ping -c1 h"],
     ["ls", "cat", "ping"]),
    (["bash", "-c", "echo 'unbalanced"], ["echo"]),
    ([], []),
])
def test_tools_of(argv: list[str], tools: list[str]) -> None:
    assert tools_of(argv) == tools


def test_rubric_overrides_change_the_weights() -> None:
    rubric = Rubric(diagnosis=60, fix=15, wrong_submission=20)
    report = score(CASES["wrong"], rubric)
    assert report.max_points == 60 + 15 + 10 + 5 + 10
    assert [i.points for i in report.items if i.category == "submissions"] == [-20, -20]


def test_diagnosis_points_split_exactly_over_three_faults() -> None:
    faults = [FaultKey(str(n), {}, c, "fw") for n, c in
              enumerate(["nat-static-missing", "fw-smtp-permit-missing", "proxy-mode-mismatch"])]
    subs = [(n + 1, f.cause, "fw") for n, f in enumerate(faults)]
    report = score(make(faults, subs=subs))
    assert sorted(v.points for v in report.verdicts) == [16, 17, 17]


def test_score_needs_an_ended_attempt() -> None:
    a = make([MX_MISSING])
    a.ended = None
    with pytest.raises(LabError, match="not ended"):
        score(a)


def test_floor_keeps_the_total_at_zero() -> None:
    a = make([MX_MISSING], damage=["ruleset flushed"] * 5, probes={})
    report = score(a)
    assert report.total == 0 and report.items[-1].category == "floor"


# --- the attempt record and the cause list -----------------------------------------------

def test_attempt_json_round_trip(tmp_path: Path) -> None:
    a = CASES["two-fault"]
    a.score = to_json(score(a))
    path = a.save(tmp_path / "results")
    # one folder per trainee; trainee, scenario, start (UTC) and lab in the name
    folder = a.folder()
    assert path.relative_to(tmp_path / "results").parts == (
        folder, f"{folder}_inbound-bounces_20260528T202640Z_l1.json")
    assert "/" not in folder and " " not in folder and folder.startswith(a.trainee.split()[0])
    assert [oct(x.stat().st_mode & 0o777) for x in (path.parent.parent, path.parent, path)] == [
        "0o700", "0o700", "0o600"]
    assert attempt_mod.load(path) == a
    assert a.save(tmp_path / "results") == path and len(list(path.parent.iterdir())) == 1


@pytest.mark.parametrize("text", ["{", "[]", '{"format": 1}', '{"format": 99, "faults": []}'])
def test_attempt_load_refuses_bad_files(tmp_path: Path, text: str) -> None:
    path = tmp_path / "a.json"
    path.write_text(text)
    with pytest.raises(LabError, match=str(path)):
        attempt_mod.load(path)


def test_submit_refuses_unknown_cause() -> None:
    with pytest.raises(LabError, match="unknown cause 'dns-typo'"):
        make([MX_MISSING]).submit("dns-typo", "ns-ext")


def test_cause_list_is_the_fixed_menu() -> None:
    assert CAUSE_IDS == EXPECTED_IDS and len(CAUSES) == len(EXPECTED_IDS)
    assert [LAYERS.index(c.layer) for c in CAUSES] == sorted(LAYERS.index(c.layer) for c in CAUSES)


@pytest.mark.parametrize("cause", sorted(EXPECTED_IDS))
def test_each_cause_is_listed_and_described(cause: str) -> None:
    c = get_cause(cause)
    assert c.label and c.description and c.layer in LAYERS
    assert f"  {cause} " in render_causes()
