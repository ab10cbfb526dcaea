"""Scoring: the cause list, the attempt record, matching, the rubric, golden reports, and
the properties that make a score fair (guessing and damage never pay). Root-free."""
from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from lab.errors import LabError
from lab.faults import CATALOG
from lab.faults.base import Cause
from lab.model.rubric import Rubric
from lab.model.scenario import Accept, Scenario
from lab.model.topology import load_topology
from lab.scoring import attempt as attempt_mod
from lab.scoring.addresses import address_map
from lab.scoring.attempt import Attempt, FaultKey, Probe, RepairResult, Submission
from lab.scoring.causes import CAUSE_IDS, CAUSES, LAYERS, causes_of, get_cause, render_causes
from lab.scoring.damage import Damage
from lab.scoring.report import render_html, render_text, to_json
from lab.scoring.score import grade, match, score

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden" / "scoring"
T0 = 1_780_000_000.0  # a fixed start time: 2026-05-28 20:26:40 UTC
ALL_PASS = {"inbound": Probe(True, "delivered"), "outbound": Probe(True, "delivered"),
            "alert": Probe(True, "spool empty")}
ADDRESSES = address_map(load_topology(ROOT / "topologies" / "mail-dmz.yaml"))
# the menu is what the catalog's faults declare (no list of our own to keep in step)
DECLARED = {c.id: c for f in CATALOG.values() for c in f.causes}


def repaired(fault: FaultKey, ok: bool = True, how: str = "") -> RepairResult:
    return RepairResult(fault.name, fault.cause, fault.node, ok,
                        how or f"{fault.cause}: symptom {'gone' if ok else 'still there'}")


def make(faults: list[FaultKey], *, minutes: float = 15, limit: int = 30,
         commands: list[tuple[float, str, str]] = (), hints: list[tuple[float, int, int]] = (),
         subs: list[tuple[float, str, str]] = (), probes: dict | None = None,
         damage: list[Damage] = (), herrings: list[FaultKey] = (),
         repairs: list[RepairResult] | None = None, trainee: str = "ann") -> Attempt:
    """An ended attempt; times are minutes after T0, commands are lines typed into a
    shell; by default every fault's own check says repaired."""
    a = Attempt(scenario="inbound-bounces", lab="l1", seed=7, trainee=trainee, started=T0,
                ticket="External senders get bounces from example.net.", time_limit=limit,
                faults=list(faults), red_herrings=list(herrings), addresses=ADDRESSES)
    for t, node, line in commands:
        a.record_command(node, shlex.split(line), T0 + t * 60, line=line)
    for t, index, cost in hints:
        a.take_hint(index, cost, T0 + t * 60)
    for t, cause, node in subs:
        a.submit(cause, node, T0 + t * 60)
    a.probes = dict(ALL_PASS if probes is None else probes)
    a.repairs = [repaired(f) for f in faults] if repairs is None else list(repairs)
    a.damage = list(damage)
    a.finish(T0 + minutes * 60)
    return a


MX_MISSING = FaultKey("dns-mx-missing", {}, "dns-mx-missing", "ns-ext", ["ext-ws", "ns-ext"])
SMTP_PERMIT = FaultKey("fw-smtp-permit-missing", {}, "fw-smtp-permit-missing", "fw")
ICMP = FaultKey("fw-icmp-blocked", {}, "fw-icmp-blocked", "fw")
GOOD_LOOK = [(1, "ext-ws", "dig MX example.net"), (2, "ext-ws", "nslookup -type=soa example.net"),
             (3, "ns-ext", "cat /etc/bind/db.example.net"), (5, "fw", "netguard -An")]
ACCEPT_ALL = Damage("a rule now accepts everything", "firewall",
                    "fw: table inet netguard, chain forward", ["accept"])
FLUSHED = Damage("the firewall's whole ruleset was flushed: it filters nothing and "
                 "translates nothing", "firewall", "fw",
                 ["table ip netguard_nat", "table inet netguard"])
WRONG_NAT = FaultKey("nat-static-wrong-host", {"private": "10.1.0.26"},
                     "nat-static-wrong-host", "fw", ["ext-ws", "fw", "mx"])

CASES: dict[str, Attempt] = {
    "right": make([MX_MISSING], commands=GOOD_LOOK, subs=[(6, "dns-mx-missing", "ns-ext")]),
    # the right cause on a wrong node; the fix is not in place
    "partial": make(
        [WRONG_NAT],
        commands=[(1, "fw", "nft list ruleset"), (3, "ext-ws", "dig mail.example.net"),
                  (4, "fw", "netguard -An | grep 10.1.0.25")],
        subs=[(8, "nat-static-wrong-host", "mx")], repairs=[repaired(WRONG_NAT, False)],
        probes={"inbound": Probe(False, "connection timed out"), "outbound": Probe(True),
                "alert": Probe(True)}),
    "wrong": make(
        [FaultKey("smtp-service-down", {}, "smtp-service-down", "mx")],
        commands=[(1, "ext-ws", "ping -c1 203.0.113.25")],
        subs=[(5, "dns-mx-missing", "ns-ext"), (9, "link-down", "fw")], probes={},
        repairs=[]),
    "damaging": make(
        [SMTP_PERMIT], minutes=44, commands=GOOD_LOOK + [(20, "fw", "nft flush ruleset")],
        subs=[(12, "fw-smtp-permit-missing", "fw")], damage=[FLUSHED],
        repairs=[repaired(SMTP_PERMIT, False, "SMTP to 203.0.113.25:25 from ext-ws: timeout")],
        probes={"inbound": Probe(False, "timeout"), "outbound": Probe(False, "timeout"),
                "alert": Probe(True)}),
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
        herrings=[ICMP],
        commands=[(1, "ext-ws", "ping -c3 203.0.113.1"), (2, "ext-ws", "dig mail.example.net"),
                  (4, "fw", "netguard -An"), (6, "fw", "ss -ltn")],
        subs=[(5, "fw-icmp-blocked", "fw"), (10, "proxy-server-not-listed", "fw")]),
    # the open-everything "repair": mail flows, the fault's own check passes, the lab is open
    "accept-all": make([SMTP_PERMIT], commands=GOOD_LOOK + [
        (8, "fw", "nft add rule inet netguard forward accept")],
        subs=[(9, "fw-smtp-permit-missing", "fw")], damage=[ACCEPT_ALL]),
    # a right diagnosis after the time limit, and the attempt scored even later
    "late": make([MX_MISSING], minutes=34, limit=20, commands=GOOD_LOOK,
                 subs=[(19, "dns-stale-cache", "resolver"), (22, "dns-mx-missing", "ns-ext")]),
    # nothing done about ICMP: mail flows anyway, but the fault's own check says no
    "icmp-untouched": make([ICMP], commands=[(1, "ext-ws", "ping -c2 mail.example.net")],
                           subs=[(4, "fw-icmp-blocked", "fw")],
                           repairs=[repaired(ICMP, False, "ping 203.0.113.25 from ext-ws: "
                                                          "no reply")]),
}
HTML_CASES = ["two-fault", "damaging", "accept-all"]


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
    ("partial", ["partial"], 34),
    ("wrong", ["wrong"], 0),
    ("damaging", ["right"], 33),
    ("hint-heavy", ["right"], 70),
    ("two-fault", ["right", "right"], 95),
    ("red-herring", ["right"], 74),
    ("accept-all", ["right"], 63),
    ("late", ["right"], 75),
    ("icmp-untouched", ["right"], 68),
])
def test_verdicts_and_totals(case: str, verdicts: list[str], total: int) -> None:
    report = score(CASES[case])
    assert [v.verdict for v in report.verdicts] == verdicts
    assert report.total == total


def test_html_is_self_contained_and_escaped() -> None:
    page = render_html(score(CASES["two-fault"]))
    assert "<ann@" not in page and "&lt;ann@example.org&gt; &amp; &quot;co&quot;" in page
    assert "http" not in page and "<link" not in page and "<script" not in page


def items(report, category: str) -> list:
    return [i for i in report.items if i.category == category]


def test_damage_lines_fold_the_rule_text() -> None:
    report = score(CASES["accept-all"])
    [item] = items(report, "damage")
    assert item.reason == "damage: a rule now accepts everything"
    assert item.details == ("fw: table inet netguard, chain forward:", "  accept")
    text = render_text(report)
    assert "  -37  damage: a rule now accepts everything\n" \
           "          fw: table inet netguard, chain forward:\n            accept\n" in text
    assert "<details><summary>damage: a rule now accepts everything</summary>" \
           "<pre>fw: table inet netguard, chain forward:\n  accept</pre></details>" \
           in render_html(report)
    [entry] = [i for i in to_json(report)["items"] if i["category"] == "damage"]
    assert (entry["what"], entry["kind"], entry["where"], entry["rules"]) == (
        "a rule now accepts everything", "firewall", "fw: table inet netguard, chain forward",
        ["accept"])


# --- guessing does not pay ---------------------------------------------------------------

def diagnosis_points(report) -> int:
    return sum(i.points for i in report.items if i.category in ("diagnosis", "submissions"))


@pytest.mark.parametrize("fault", [MX_MISSING, SMTP_PERMIT, WRONG_NAT], ids=lambda f: f.name)
def test_submitting_the_whole_menu_earns_at_most_one_nth(fault: FaultKey) -> None:
    """A guesser who submits every cause of the menu on the fault's node (the best a
    guesser can do: the node is named in the ticket's symptoms) earns at most 1/N."""
    n = len(CAUSES)
    menu = [c.id for c in CAUSES]
    report = score(make([fault], subs=[(1 + i / 60, c, fault.node) for i, c in enumerate(menu)]))
    assert diagnosis_points(report) <= Rubric().diagnosis / n


@pytest.mark.parametrize("fault", [MX_MISSING, SMTP_PERMIT], ids=lambda f: f.name)
def test_guessing_in_turn_with_immediate_feedback_does_not_pay(fault: FaultKey) -> None:
    """With `feedback: immediate` a guesser can stop at the first "right": averaged over
    where the right cause sits in the order of guessing, at most 1/N."""
    menu = [c.id for c in CAUSES if c.id != fault.cause]
    outcomes = []
    for k in range(len(menu) + 1):  # the right cause comes (k+1)th
        order = menu[:k] + [fault.cause]
        subs = [(1 + i / 60, c, fault.node) for i, c in enumerate(order)]
        outcomes.append(diagnosis_points(score(make([fault], subs=subs))))
    assert sum(outcomes) / len(outcomes) <= Rubric().diagnosis / len(CAUSES)


def test_every_cause_on_every_node_costs() -> None:
    nodes = sorted({n for ns in ADDRESSES.values() for n in ns})
    subs = [(1 + i / 600, c.id, node)
            for i, (c, node) in enumerate((c, n) for c in CAUSES for n in nodes)]
    report = score(make([SMTP_PERMIT], subs=subs))
    assert diagnosis_points(report) < 0 and report.total == 0


@pytest.mark.parametrize(("cause", "node", "accept", "expected"), [
    ("nat-static-missing", "fw", Accept(), "right"),
    ("nat-static-missing", "mx", Accept(), "partial"),
    ("fw-smtp-permit-missing", "fw", Accept(), None),  # the right node alone: nothing
    ("dns-mx-missing", "ns-ext", Accept(), None),
    ("dns-mx-missing", "ns-ext", Accept(partial={"nat-static-missing": ["dns-mx-missing"]}),
     "partial"),
    ("proxy-mode-mismatch", "fw", Accept(right={"nat-static-missing": ["proxy-mode-mismatch"]}),
     "right"),
])
def test_grade(cause: str, node: str, accept: Accept, expected: str | None) -> None:
    assert grade(FaultKey("x", {}, "nat-static-missing", "fw"), Submission(0, cause, node),
                 accept)[0] == expected


def test_red_herring_is_never_credit() -> None:
    a = make([SMTP_PERMIT], herrings=[ICMP], subs=[(5, "fw-icmp-blocked", "fw")])
    report = score(a)
    assert report.verdicts[0].verdict == "wrong"
    assert [i.points for i in items(report, "submissions")] == [-15]
    assert "blamed a red herring: fw-icmp-blocked on fw" in items(report, "submissions")[0].reason


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


def test_the_issue_attempt_kinds_in_order() -> None:
    """The attempts the issue tried, same investigation: right beats wrong-then-right,
    which beats the right cause on a wrong node, which beats a bare wrong submission."""
    right = (10, "fw-smtp-permit-missing", "fw")
    kinds = {
        "right": [right],
        "wrong-then-right": [(8, "nat-static-missing", "fw"), right],
        "right-cause-wrong-node": [(10, "fw-smtp-permit-missing", "mx")],
        "bare-wrong": [(10, "smtp-relay-refused", "fw")],
    }
    totals = [score(make([SMTP_PERMIT], commands=GOOD_LOOK, subs=subs,
                         repairs=[repaired(SMTP_PERMIT, False)])).total
              for subs in kinds.values()]
    assert totals == sorted(totals, reverse=True) and len(set(totals)) == len(totals), totals


# --- damage never pays -------------------------------------------------------------------

INVESTIGATIONS = {
    "none": [],
    "dns-only": [(1, "ext-ws", "dig mail.example.net")],
    "thorough": GOOD_LOOK + [(6, "fw", "nft list ruleset")],
}
REPAIRS = {
    "accept-all": (8, "fw", "nft add rule inet netguard forward accept"),
    "flush": (8, "fw", "nft flush ruleset"),
    "policy": (8, "fw", "nft chain inet netguard forward '{ policy accept; }'"),
}


@pytest.mark.parametrize("rubric", [Rubric(), Rubric(fix=40, damage=60, tools=10),
                                    Rubric(diagnosis=30, fix=5, path_nodes=0, damage=10)],
                         ids=["default", "big-fix", "small"])
@pytest.mark.parametrize("look", sorted(INVESTIGATIONS))
@pytest.mark.parametrize("how", sorted(REPAIRS))
def test_opening_the_firewall_never_beats_no_repair(rubric: Rubric, look: str, how: str) -> None:
    """The same trainee, once with a right diagnosis and no repair, once with the same
    plus a damaging "repair" that makes mail flow and every check pass (the most it can
    earn: the fix, and the method points its command adds)."""
    looked = INVESTIGATIONS[look]
    sub = [(10, "fw-smtp-permit-missing", "fw")]
    careful = make([SMTP_PERMIT], commands=looked, subs=sub, repairs=[repaired(SMTP_PERMIT,
                                                                               False)],
                   probes={"inbound": Probe(False, "timeout")})
    opened = make([SMTP_PERMIT], commands=looked + [REPAIRS[how]], subs=sub,
                  damage=[ACCEPT_ALL])
    assert score(opened, rubric).total < score(careful, rubric).total


def test_rubric_refuses_damage_that_could_pay() -> None:
    with pytest.raises(ValidationError, match="must cost more than a change can earn"):
        Rubric(fix=30, damage=30)


# --- repairs -----------------------------------------------------------------------------

@pytest.mark.parametrize(("repairs", "probes", "points", "reason"), [
    ([True], ALL_PASS, 20, "repaired"),
    ([False], ALL_PASS, 0, "not repaired"),
    ([True], {"inbound": Probe(False, "timeout")}, 0, "repaired by its own check, but mail"),
    ([True], {}, 0, "repaired by its own check, but mail"),
    ([], ALL_PASS, 0, "not credited, no repair check recorded"),
])
def test_fix_needs_the_fault_check_and_the_probes(repairs, probes, points, reason) -> None:
    a = make([SMTP_PERMIT], repairs=[repaired(SMTP_PERMIT, ok) for ok in repairs],
             probes=probes)
    [item] = items(score(a), "fix")
    assert item.points == points and reason in item.reason


def test_fix_is_shared_per_fault() -> None:
    faults = [SMTP_PERMIT, MX_MISSING]
    report = score(make(faults, repairs=[repaired(SMTP_PERMIT), repaired(MX_MISSING, False)]))
    assert [i.points for i in items(report, "fix")] == [10, 0]
    assert items(report, "fix")[0].details[0] == "checked: fw-smtp-permit-missing: symptom gone"


# --- time --------------------------------------------------------------------------------

@pytest.mark.parametrize(("at", "points"), [(5, 10), (15, 10), (20, 7), (25, 3), (29.9, 0),
                                            (31, 0)])
def test_time_points_for_a_timely_diagnosis(at: float, points: int) -> None:
    report = score(make([MX_MISSING], minutes=at + 0.5, subs=[(at, "dns-mx-missing", "ns-ext")]))
    assert items(report, "time")[0].points == points


def test_no_time_points_without_a_right_diagnosis() -> None:
    report = score(make([MX_MISSING], subs=[(3, "dns-mx-no-address", "ns-ext")]))
    [item] = items(report, "time")
    assert item.points == 0 and "no right diagnosis" in item.reason


@pytest.mark.parametrize(("minutes", "points"), [(29, 0), (30, 0), (30.5, -1), (34, -4),
                                                  (120, -10)])
def test_overtime_is_linear_and_capped(minutes: float, points: int) -> None:
    report = score(make([MX_MISSING], minutes=minutes))
    assert [i.points for i in items(report, "time")][1:] == ([points] if points else [])


def test_late_submission_is_marked() -> None:
    report = score(CASES["late"])
    [v] = report.verdicts
    assert v.late and report.late
    assert "(LATE: 02:00 after the time limit)" in items(report, "diagnosis")[0].reason
    assert "LATE" not in items(report, "submissions")[0].reason  # 19:00, within 20:00
    data = to_json(report)
    assert data["late"] is True and data["verdicts"][0]["late"] is True
    assert "Time 34:00 of 20:00 (LATE)" in render_text(report)


# --- the rubric and the record -----------------------------------------------------------

def test_rubric_overrides_change_the_weights() -> None:
    rubric = Rubric(diagnosis=60, fix=15, wrong_submission=20)
    report = score(CASES["wrong"], rubric)
    assert report.max_points == 60 + 15 + 8 + 4 + 8 + 10
    assert [i.points for i in items(report, "submissions")] == [-20, -20]


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
    a = make([MX_MISSING], damage=[FLUSHED] * 5, probes={})
    report = score(a)
    assert report.total == 0 and report.items[-1].category == "floor"


def test_attempt_json_round_trip(tmp_path: Path) -> None:
    a = CASES["accept-all"]
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


def test_older_records_still_load(tmp_path: Path) -> None:
    """Records written before repairs, structured damage, typed lines and the address map
    were kept: damage was a list of sentences."""
    data = CASES["right"].to_dict()
    for key in ("repairs", "addresses"):
        del data[key]
    data["damage"] = ["ruleset flushed"]
    for c in data["commands"]:
        del c["line"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    a = attempt_mod.load(path)
    assert a.repairs == [] and a.addresses == {} and a.commands[0].line is None
    assert a.damage == [Damage("ruleset flushed")]
    assert [i.reason for i in items(score(a), "damage")] == ["damage: ruleset flushed"]


def test_attempt_round_trip_keeps_repairs(tmp_path: Path) -> None:
    a = make([MX_MISSING])
    a.repairs = [RepairResult("dns-mx-missing", "dns-mx-missing", "ns-ext", True,
                              "example.net MX: ns-ext (authoritative): 10 mail.example.net.")]
    path = a.save(tmp_path)
    back = attempt_mod.load(path)
    assert back.repairs == a.repairs and isinstance(back.repairs[0], RepairResult)


@pytest.mark.parametrize("text", ["{", "[]", '{"format": 1}', '{"format": 99, "faults": []}'])
def test_attempt_load_refuses_bad_files(tmp_path: Path, text: str) -> None:
    path = tmp_path / "a.json"
    path.write_text(text)
    with pytest.raises(LabError, match=str(path)):
        attempt_mod.load(path)


def test_submit_refuses_unknown_cause() -> None:
    with pytest.raises(LabError, match="unknown cause 'dns-typo'"):
        make([MX_MISSING]).submit("dns-typo", "ns-ext")


def test_cause_list_is_derived_from_the_catalog() -> None:
    assert CAUSE_IDS == set(DECLARED) and len(CAUSES) == len(DECLARED)
    assert set(CAUSES) == set(DECLARED.values())
    assert [LAYERS.index(c.layer) for c in CAUSES] == sorted(LAYERS.index(c.layer) for c in CAUSES)


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_every_fault_answers_with_a_cause_it_declares(name: str) -> None:
    from lab.model.roles import derive_roles
    from lab.model.topology import load_topology

    fault = CATALOG[name]
    assert fault.causes, f"{name} declares no cause"
    checked = 0
    for topology in ("mail-dmz", "isp-relay"):  # each fault applies to one of them at least
        roles = derive_roles(load_topology(Path(__file__).parents[1] / "topologies" /
                                           f"{topology}.yaml"))
        for variant in fault.variants(roles):
            try:
                key = fault.answer(fault.resolve(roles, variant), roles)
            except LabError:
                continue  # a role this topology lacks (tests/test_isp_model.py)
            assert key.cause in {c.id for c in fault.causes}
            checked += 1
    assert checked


def test_a_cause_declared_twice_must_agree() -> None:
    class Twin:
        def __init__(self, name: str, cause: Cause) -> None:
            self.name, self.causes = name, (cause,)

    same = Cause("x", "x", "x", "dns")
    assert causes_of([Twin("a", same), Twin("b", same)]) == (same,)
    with pytest.raises(RuntimeError, match="declared differently"):
        causes_of([Twin("a", same), Twin("b", Cause("x", "y", "x", "dns"))])


@pytest.mark.parametrize("cause", sorted(DECLARED))
def test_each_cause_is_listed_and_described(cause: str) -> None:
    c = get_cause(cause)
    assert c.label and c.description and c.layer in LAYERS
    assert f"  {cause} " in render_causes()


@pytest.mark.parametrize(("value", "ok"), [(None, "recorded"), ("immediate", "immediate"),
                                           ("partial", None)])
def test_scenario_feedback(value: str | None, ok: str | None) -> None:
    data = yaml.safe_load((ROOT / "scenarios" / "nat-inbound.yaml").read_text())
    if value is not None:
        data["feedback"] = value
    if ok is None:
        with pytest.raises(ValidationError, match="feedback"):
            Scenario.model_validate(data)
    else:
        assert Scenario.model_validate(data).feedback == ok


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_recorded_report_renders_again_as_scored(case: str) -> None:
    """`lab report` rebuilds the report from the record's JSON: the same JSON, text and
    HTML as when it was scored."""
    from lab.scoring.report import from_json

    report = score(CASES[case])
    again = from_json(json.loads(json.dumps(to_json(report))))
    assert to_json(again) == to_json(report)
    assert render_text(again) == render_text(report)
    assert render_html(again) == render_html(report)
