"""Issue 9's table and cases, in real labs, as a trainee would play them: a forced fault
(`lab start SCENARIO --fault NAME`), investigation and "repairs" through `lab exec` and
`lab shell`, `lab submit`, `lab score --json`. Each test states the expected ORDER of
scores (or the absence of damage) rather than fixed totals, so that reweighting the
rubric keeps them meaningful."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_lab
from test_attempt_cli import shell_session

from lab.model.rubric import Rubric
from lab.scoring.causes import CAUSES

XDIST_GROUPS = 2  # every test has labs of its own: they share out freely

pytestmark = [pytest.mark.root, pytest.mark.slow]

# the same investigation in every attempt of a row: DNS from outside, then the firewall
LOOK = [("ext-ws", "dig", "+short", "mail.example.net"),
        ("fw", "sh", "-c", "netguard -An | tail -5"),
        ("fw", "nft", "list", "ruleset")]
REPAIRS = {
    "none": [],
    "flush": [("fw", "nft", "flush", "ruleset")],
    "accept-all": [("fw", "nft", "add", "rule", "inet", "netguard", "forward", "accept"),
                   ("fw", "nft", "add", "rule", "ip", "netguard_nat", "prerouting",
                    "ip", "daddr", "203.0.113.25", "dnat", "to", "10.1.0.25")],
}


def ok(*args: str) -> subprocess.CompletedProcess:
    p = run_lab(*args)
    assert p.returncode == 0, f"lab {' '.join(args)}: rc={p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def run(lab: str, node: str, *cmd: str) -> subprocess.CompletedProcess:
    return run_lab("exec", "--lab", lab, node, "--", *cmd)


def start(labs, name: str, scenario: str, fault: str | None = None) -> str:
    lab = labs.claim(name)
    ok("start", scenario, "--seed", "1", "--lab", lab, *(["--fault", fault] if fault else []))
    return lab


def submit(lab: str, cause: str, node: str) -> str:
    return ok("submit", cause, "--node", node, "--lab", lab).stdout.strip()


def score(lab: str, tmp_path: Path) -> dict:
    return json.loads(ok("score", "--lab", lab, "--json", "--results", str(tmp_path)).stdout)


def items(report: dict, category: str) -> list[dict]:
    return [i for i in report["items"] if i["category"] == category]


def points(report: dict, *categories: str) -> int:
    return sum(i["points"] for c in categories for i in items(report, c))


def attempt(labs, tmp_path: Path, scenario: str, fault: str, repair: str) -> dict:
    lab = start(labs, f"sc-{fault[:10]}-{repair[:6]}", scenario, fault)
    for node, *cmd in LOOK:
        run(lab, node, *cmd)
    assert submit(lab, fault, "fw") == f"diagnosis {fault} on fw: recorded"
    for node, *cmd in REPAIRS[repair]:
        p = run(lab, node, *cmd)
        assert p.returncode == 0, p.stderr
    return score(lab, tmp_path)


# --- the table: right + right node beats flush + right and accept-all + right ------------

ROWS = [("nat-inbound", "fw-smtp-permit-missing"), ("proxy-mismatch", "proxy-mode-mismatch")]


@pytest.mark.parametrize("scenario,fault", ROWS, ids=[f for _, f in ROWS])
def test_opening_the_firewall_does_not_pay(labs, tmp_path, scenario: str, fault: str) -> None:
    scores = {how: attempt(labs, tmp_path, scenario, fault, how) for how in REPAIRS}
    totals = {how: r["total"] for how, r in scores.items()}
    assert totals["none"] > totals["flush"], totals
    assert totals["none"] > totals["accept-all"], totals
    assert items(scores["none"], "damage") == []
    flush = [i["what"] for i in items(scores["flush"], "damage")]
    assert flush == [("the firewall's whole ruleset was flushed: it filters nothing and "
                      "translates nothing")]
    opened = [i["what"] for i in items(scores["accept-all"], "damage")]
    assert "a rule now accepts everything" in opened
    for how, report in scores.items():
        assert [v["verdict"] for v in report["verdicts"]] == ["right"], how
        print(f"{scenario}/{fault} {how}: {report['total']}")


# --- the fault's own changes are not the trainee's damage --------------------------------

@pytest.mark.parametrize("scenario,fault", [
    ("proxy-mismatch", "proxy-mode-mismatch"),
    ("proxy-servers-list", "proxy-server-not-listed"),
    ("nat-inbound", "nat-static-missing"),
])
def test_an_attempt_that_changed_nothing_has_no_damage(labs, tmp_path, scenario: str,
                                                       fault: str) -> None:
    lab = start(labs, f"sc-nd-{fault[:12]}", scenario, fault)
    for node, *cmd in LOOK:
        run(lab, node, *cmd)
    submit(lab, fault, "fw")
    report = score(lab, tmp_path)
    assert items(report, "damage") == []
    rubric = Rubric()
    # all but the repair points: a right diagnosis, the method, in good time
    assert report["total"] == rubric.max_points - rubric.fix, report["items"]


# --- guessing does not pay ---------------------------------------------------------------

def test_guessing_every_cause_on_the_node_does_not_pay(labs, tmp_path) -> None:
    lab = start(labs, "sc-guess", "nat-inbound", "fw-smtp-permit-missing")
    answers = {submit(lab, c.id, "fw") for c in CAUSES}
    assert answers == {f"diagnosis {c.id} on fw: recorded" for c in CAUSES}
    report = score(lab, tmp_path)
    assert points(report, "diagnosis", "submissions") <= Rubric().diagnosis / len(CAUSES)
    assert report["verdicts"][0]["verdict"] == "right"


def test_a_nonsense_cause_on_the_right_node_earns_nothing(labs, tmp_path) -> None:
    lab = start(labs, "sc-nonsense", "nat-inbound", "fw-smtp-permit-missing")
    assert submit(lab, "smtp-relay-refused", "fw") == "diagnosis smtp-relay-refused on fw: recorded"
    report = score(lab, tmp_path)
    assert report["verdicts"][0]["verdict"] == "wrong"
    assert points(report, "diagnosis") == 0 and points(report, "submissions") < 0


def test_red_herring_is_told_recorded_and_scored_as_a_herring(labs, tmp_path) -> None:
    lab = start(labs, "sc-herring", "ping-red-herring")
    assert submit(lab, "fw-icmp-blocked", "fw") == "diagnosis fw-icmp-blocked on fw: recorded"
    report = score(lab, tmp_path)
    [item] = items(report, "submissions")
    assert item["points"] < 0 and item["reason"].startswith("blamed a red herring")


def test_immediate_feedback_says_right_or_wrong_only(labs, tmp_path) -> None:
    source = Path(__file__).resolve().parents[1] / "scenarios" / "nat-inbound.yaml"
    path = tmp_path / "nat-inbound.yaml"
    path.write_text(source.read_text() + "feedback: immediate\n")
    lab = labs.claim("sc-immediate")
    ok("start", str(path), "--seed", "1", "--lab", lab, "--fault", "fw-smtp-permit-missing")
    assert submit(lab, "nat-static-missing", "fw").endswith(": wrong")  # right node only
    assert submit(lab, "fw-smtp-permit-missing", "mx").endswith(": wrong")  # right cause only
    assert submit(lab, "fw-smtp-permit-missing", "fw").endswith(": right")


# --- no fix points for nothing -----------------------------------------------------------

def test_icmp_blocked_left_alone_earns_no_fix_points(labs, tmp_path) -> None:
    lab = start(labs, "sc-icmp", "nat-inbound", "fw-icmp-blocked")
    submit(lab, "fw-icmp-blocked", "fw")
    report = score(lab, tmp_path)
    assert points(report, "fix") == 0
    assert all(i["points"] == 0 for i in items(report, "fix"))


# --- method credit reads commands --------------------------------------------------------

def test_method_reads_what_was_run_and_addressed(labs, tmp_path) -> None:
    """DNS came fourth (no credit); telnet to mx from fw credits mx, where nothing ran; a
    loop typed into `lab shell` counts its programs, not its keywords."""
    lab = start(labs, "sc-method", "mail-server-down", "smtp-service-down")
    run(lab, "fw", "cat", "/etc/resolv.conf")
    run(lab, "fw", "sh", "-c", "netguard -An | grep 10.1.0.25")
    run(lab, "fw", "sh", "-c", "echo quit | timeout 3 telnet 10.1.0.25 25")
    run(lab, "fw", "dig", "@203.0.113.11", "net", "NS")
    loop = "for i in 1 2; do [ -d /tmp ] && ping -c1 -W1 10.1.0.$i; done"
    shell_session(lab, "fw", [loop, "true"])  # the shell's exit status is its last line's
    submit(lab, "smtp-service-down", "mx")
    report = score(lab, tmp_path)
    first, tools, path = items(report, "investigation")
    assert first["points"] == 0
    assert "not a DNS query (cat on fw" in first["reason"]
    assert "first DNS query: dig on fw" in first["reason"]
    # sh, timeout and echo are not tools of their own; neither are for, do, done, [
    assert tools["tools"] == ["cat", "dig", "grep", "netguard", "ping", "telnet"]
    assert path["examined"] == {"mx": "addressed by telnet from fw"}
    assert path["points"] == Rubric().path_nodes
    record = json.loads(next(tmp_path.glob("*/*_mail-server-down_*.json")).read_text())
    typed = [c["line"] for c in record["commands"] if c.get("line")]
    assert typed == [loop, "true"]


def test_a_playbook_dns_probe_counts_as_a_dns_lookup(labs, tmp_path) -> None:
    """The runner's probe argv, through the same exec path: dig, first, addressing ns-ext."""
    lab = start(labs, "sc-probe", "inbound-bounces", "dns-mx-missing")
    probe = json.dumps({"name": "example.net", "type": "MX", "server": "203.0.113.53"})
    assert run(lab, "ext-ws", sys.executable, "-m", "lab.playbooks.probe", "dns",
               probe).returncode == 0
    run(lab, "ext-ws", "cat", "/etc/resolv.conf")
    submit(lab, "dns-mx-missing", "ns-ext")
    report = score(lab, tmp_path)
    first, _tools, path = items(report, "investigation")
    assert first["points"] == Rubric().dns_first
    assert "dig (dns probe) on ext-ws" in first["reason"]
    assert path["examined"] == {"ns-ext": "addressed by dig from ext-ws"}
    [time_item] = items(report, "time")
    assert time_item["points"] == Rubric().time  # diagnosed within seconds
