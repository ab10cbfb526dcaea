"""One attempt driven through the `lab` CLI as a trainee would drive it.

`lab start` prints the ticket; `lab ticket`, `lab causes`; investigation with `lab exec`
and with `lab shell` typed into through a pseudo-terminal; `lab hint`; a wrong and a
right `lab submit`; a repair with ordinary tools (nft on fw, sed on a zone file);
`lab verify`; `lab score --json --html --results`; and what must be refused.
"""
from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time
from html.parser import HTMLParser

import pytest
from conftest import LAB_CMD, PROJECT_ROOT, run_lab

pytestmark = [pytest.mark.root, pytest.mark.slow]

SMTP_PERMIT = ['ct', 'original', 'ip', 'daddr', '203.0.113.25', 'tcp', 'dport', '25', 'ct',
               'state', 'new', 'log', 'prefix', '"P smtp-in"', 'group', '1', 'accept']


def ok(*args: str, **kw) -> subprocess.CompletedProcess:
    p = run_lab(*args, **kw)
    assert p.returncode == 0, f"lab {' '.join(args)}: rc={p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def one_line_error(p: subprocess.CompletedProcess, *words: str) -> None:
    """A refusal: non-zero exit, one `lab: error:` line naming the problem, one hint line,
    no traceback."""
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert lines and lines[0].startswith("lab: error: "), p.stderr
    assert len(lines) == 2 and lines[1].startswith("hint: "), p.stderr
    assert "Traceback" not in p.stderr
    for word in words:
        assert word in lines[0], p.stderr


def shell_session(lab: str, node: str, lines: list[str], timeout: float = 30) -> str:
    """Type ``lines`` into `lab shell NODE` through a pty, then `exit`; the transcript."""
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(PROJECT_ROOT)
        os.execvp(LAB_CMD[0], [*LAB_CMD, "shell", "--lab", lab, node])
    out = b""
    deadline = time.monotonic() + timeout
    prompt = f"[{lab}:{node}]".encode()

    def pump(done) -> bool:
        """Read until ``done(out)`` or the child closes the terminal or time runs out."""
        nonlocal out
        while not done(out) and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # EIO: the shell has gone
                    return False
                if not chunk:
                    return False
                out += chunk
        return done(out)

    assert pump(lambda o: prompt in o), out
    for line in [*lines, "exit"]:
        seen = out.count(prompt)
        os.write(fd, line.encode() + b"\n")
        if line != "exit":
            assert pump(lambda o, n=seen: o.count(prompt) > n), out
    pump(lambda o: False)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, out.decode(errors="replace")
    return out.decode(errors="replace")


class _Checker(HTMLParser):
    VOID = frozenset({"meta", "br", "hr", "img", "link", "input", "col", "area", "base", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.seen: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.seen.add(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def well_formed(html: str) -> _Checker:
    c = _Checker()
    c.feed(html)
    c.close()
    assert not c.errors and not c.stack, (c.errors, c.stack)
    return c


def items(report: dict, category: str) -> list[dict]:
    return [i for i in report["items"] if i["category"] == category]


# --- the full attempt ----------------------------------------------------------------------

def test_full_attempt(labs, tmp_path):
    lab = labs.claim("att-full")
    results = tmp_path / "results"

    p = ok("start", "ping-red-herring", "--seed", "2", "--lab", lab, "--trainee", "ann")
    assert "TICKET: Mail server unreachable from outside?" in p.stdout
    assert "cannot even ping mail.example.net" in p.stdout
    assert "2 hints left" in p.stdout
    ticket = ok("ticket", "--lab", lab).stdout
    assert ticket.startswith("TICKET: Mail server unreachable from outside?")
    assert "(used 0." in ticket

    causes = ok("causes").stdout
    from lab.scoring.causes import CAUSE_IDS  # the menu, derived from the fault catalog

    for cause in CAUSE_IDS:
        assert re.search(rf"^\s+{cause}\s", causes, re.MULTILINE), cause

    # investigation: DNS first from outside, then the firewall
    dig = ok("exec", "--lab", lab, "ext-ws", "--", "dig", "+short", "mail.example.net")
    assert dig.stdout.strip() == "203.0.113.25"
    nc = run_lab("exec", "--lab", lab, "ext-ws", "--", "nc", "-z", "-w", "2",
                 "203.0.113.25", "25")
    assert nc.returncode != 0  # the symptom: SMTP through the static NAT times out
    transcript = shell_session(lab, "fw", ["nft list chain inet netguard forward",
                                           "netguard -An | tail -3", "cat /etc/hostname"])
    assert "policy drop" in transcript and re.search(r"[\r\n]fw\r\n", transcript)

    hint = ok("hint", "--lab", lab).stdout
    assert re.match(r"hint 1/2 \(-5 points\): Ping needs an ICMP permit", hint), hint

    # a submission is acknowledged, not judged: nothing to bisect the menu with
    wrong = ok("submit", "fw-icmp-blocked", "--node", "fw", "--lab", lab).stdout
    assert wrong.strip() == "diagnosis fw-icmp-blocked on fw: recorded"
    right = ok("submit", "fw-smtp-permit-missing", "--node", "fw", "--lab", lab).stdout
    assert right.strip() == "diagnosis fw-smtp-permit-missing on fw: recorded"

    # repair: put the permit rule back where the healthy policy has it
    listing = ok("exec", "--lab", lab, "fw", "--", "nft", "-a", "list", "chain", "inet",
                 "netguard", "forward").stdout
    handle = re.search(r'prefix "P smtp-out" .*# handle (\d+)', listing).group(1)
    ok("exec", "--lab", lab, "fw", "--", "nft", "insert", "rule", "inet", "netguard",
       "forward", "position", handle, *SMTP_PERMIT)
    verify = ok("verify", "--lab", lab)
    assert verify.stdout.count("PASS") == 3, verify.stdout

    html = tmp_path / "report.html"
    p = ok("score", "--lab", lab, "--json", "--html", str(html), "--results", str(results))
    report = json.loads(p.stdout)
    assert report["scenario"] == "ping-red-herring" and report["trainee"] == "ann"
    [verdict] = report["verdicts"]
    assert (verdict["cause"], verdict["node"], verdict["verdict"]) == (
        "fw-smtp-permit-missing", "fw", "right")
    assert verdict["points"] > 0
    [fix] = items(report, "fix")  # the fault's own repair check decides (the faults' work)
    assert fix["reason"].startswith("fault 1 (fw-smtp-permit-missing on fw)")
    [hint_item] = items(report, "hints")
    assert hint_item["points"] == -5
    wrong_items = items(report, "submissions")
    assert len(wrong_items) == 1 and wrong_items[0]["points"] < 0
    assert "fw-icmp-blocked on fw" in wrong_items[0]["reason"]
    assert items(report, "damage") == []
    method = " ".join(i["reason"] for i in items(report, "investigation"))
    assert "DNS checked first (dig on ext-ws" in method
    for tool in ("dig", "nc", "nft", "netguard"):
        assert re.search(rf"tools used \([^)]*\b{tool}\b", method), (tool, method)
    assert report["total"] == sum(i["points"] for i in report["items"])

    checker = well_formed(html.read_text())
    assert {"html", "body", "table"} <= checker.seen

    # one folder per trainee, the file named by trainee, scenario, time (UTC) and lab
    [record_path] = list(results.glob(f"ann/ann_ping-red-herring_*Z_{lab}.json"))
    record = json.loads(record_path.read_text())
    assert record["ticket"].startswith("Partners say they cannot reach our mail server")
    typed = [(c["node"], c["argv"]) for c in record["commands"]]
    assert ("ext-ws", ["dig", "+short", "mail.example.net"]) in typed
    # the shell's typed lines are recorded, parsed as a shell would
    assert ("fw", ["nft", "list", "chain", "inet", "netguard", "forward"]) in typed
    assert ("fw", ["netguard", "-An", "|", "tail", "-3"]) in typed
    lines = [c["line"] for c in record["commands"] if c.get("line")]
    assert "netguard -An | tail -3" in lines  # the typed line, as typed
    assert ("fw", ["cat", "/etc/hostname"]) in typed
    assert [h["index"] for h in record["hints"]] == [0]
    assert [(s["cause"], s["node"]) for s in record["submissions"]] == [
        ("fw-icmp-blocked", "fw"), ("fw-smtp-permit-missing", "fw")]
    assert set(record["probes"]) == {"inbound", "outbound", "alert"}
    assert all(p["passed"] for p in record["probes"].values())
    assert record["score"] == report
    assert [f["name"] for f in record["faults"]] == ["fw-smtp-permit-missing"]
    assert [f["name"] for f in record["red_herrings"]] == ["fw-icmp-blocked"]
    # each fault's own repair check: the permit is back, the red herring's ICMP is not
    repairs = {r["fault"]: r for r in record["repairs"]}
    assert repairs["fw-smtp-permit-missing"]["repaired"] is True, repairs
    assert "to 203.0.113.25 port 25: connected" in repairs["fw-smtp-permit-missing"]["how"]
    assert repairs["fw-icmp-blocked"]["repaired"] is False, repairs
    assert "ping from ext-ws to 203.0.113.25: 0 of 3 answered" == \
        repairs["fw-icmp-blocked"]["how"]

    # the attempt is over: no more submissions, hints or scoring
    for args in (("submit", "fw-smtp-permit-missing", "--node", "fw"), ("hint",),
                 ("score", "--results", str(results))):
        p = run_lab(*args, "--lab", lab)
        one_line_error(p, "this attempt has been scored")


def test_damaging_fix_scores_damage_even_if_mail_flows(labs, tmp_path):
    lab = labs.claim("att-damage")
    ok("start", "ping-red-herring", "--seed", "2", "--lab", lab)
    ok("submit", "fw-smtp-permit-missing", "--node", "fw", "--lab", lab)
    # the blunt "fix": accept everything that is forwarded
    ok("exec", "--lab", lab, "fw", "--", "nft", "add", "rule", "inet", "netguard", "forward",
       "accept")
    assert ok("verify", "--lab", lab).stdout.count("PASS") == 3
    report = json.loads(ok("score", "--lab", lab, "--json", "--results",
                           str(tmp_path)).stdout)
    [damage] = items(report, "damage")  # mail flows, but the firewall is open
    assert damage["points"] < -items(report, "fix")[0]["points"]
    assert damage["reason"] == "damage: a rule now accepts everything"
    assert damage["rules"] == ["accept"]


def test_flushed_ruleset_is_damage(labs, tmp_path):
    lab = labs.claim("att-flush")
    ok("start", "ping-red-herring", "--seed", "2", "--lab", lab)
    ok("exec", "--lab", lab, "fw", "--", "nft", "flush", "ruleset")
    report = json.loads(ok("score", "--lab", lab, "--json", "--results",
                           str(tmp_path)).stdout)
    reasons = [i["reason"] for i in items(report, "damage")]
    assert reasons == [("damage: the firewall's whole ruleset was flushed: it filters "
                        "nothing and translates nothing")]


def test_zone_file_repair(labs, tmp_path):
    """dns-wrong-address forced by an instructor; the trainee checks the authoritative
    server directly, fixes the A record with sed, and the reload makes mail flow."""
    lab = labs.claim("att-zone")
    ok("start", "inbound-bounces", "--seed", "1", "--fault", "dns-wrong-address", "--lab", lab)
    auth = ["dig", "+short", "@203.0.113.53", "mail.example.net"]
    wrong = ok("exec", "--lab", lab, "ext-ws", "--", *auth).stdout.strip()  # drawn by the seed
    assert wrong.startswith("203.0.113.") and wrong != "203.0.113.25"
    ok("exec", "--lab", lab, "ns-ext", "--", "sed", "-i",
       rf"s/^\(mail .*A \+\){re.escape(wrong)}$/\1203.0.113.25/", "/etc/bind/db.example.net")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if ok("exec", "--lab", lab, "ext-ws", "--", *auth).stdout.strip() == "203.0.113.25":
            break
        time.sleep(0.2)
    else:
        pytest.fail("ns-ext did not reload the edited zone")
    assert ok("verify", "--lab", lab).stdout.count("PASS") == 3
    ok("submit", "dns-wrong-address", "--node", "ns-ext", "--lab", lab)
    report = json.loads(ok("score", "--lab", lab, "--json", "--results",
                           str(tmp_path)).stdout)
    assert [v["fault"] for v in report["verdicts"]] == ["dns-wrong-address"]
    assert report["verdicts"][0]["verdict"] == "right"
    assert items(report, "fix")[0]["points"] > 0 and items(report, "damage") == []
    # the attempt record says the fault was repaired, and how that was seen
    [record] = [json.loads(f.read_text()) for f in tmp_path.glob("*/*_inbound-bounces_*.json")]
    [repair] = record["repairs"]
    assert (repair["fault"], repair["node"], repair["repaired"]) == (
        "dns-wrong-address", "ns-ext", True)
    assert "ns-ext (authoritative): 203.0.113.25" in repair["how"], repair


def test_lab_fault_acts_on_the_fault_the_attempt_applied(labs):
    """After `lab start --fault NAME`, `lab fault check|revert NAME` without params concern
    the fault as the seed drew it (its wrong address), not a fresh draw."""
    lab = labs.claim("att-hand")
    ok("start", "inbound-bounces", "--seed", "3", "--fault", "dns-wrong-address", "--lab", lab)
    auth = ["dig", "+short", "@203.0.113.53", "mail.example.net"]
    wrong = ok("exec", "--lab", lab, "ext-ws", "--", *auth).stdout.strip()
    check = json.loads(ok("fault", "check", "dns-wrong-address", "--lab", lab).stdout)
    assert check["params"] == {"address": wrong} and check["repair"]["repaired"] is False
    assert f"ns-ext (authoritative): {wrong}" in check["repair"]["how"]
    ok("fault", "revert", "dns-wrong-address", "--lab", lab)
    assert ok("exec", "--lab", lab, "ext-ws", "--", *auth).stdout.strip() == "203.0.113.25"
    check = json.loads(ok("fault", "check", "dns-wrong-address", "--lab", lab).stdout)
    assert check["repair"]["repaired"] is True, check


def test_zone_repair_after_lookup_through_resolver(labs):
    lab = labs.claim("att-cache")
    ok("start", "inbound-bounces", "--seed", "1", "--fault", "dns-wrong-address", "--lab", lab)
    dig = ["dig", "+short", "mail.example.net"]
    wrong = ok("exec", "--lab", lab, "ext-ws", "--", *dig).stdout.strip()
    assert wrong.startswith("203.0.113.") and wrong != "203.0.113.25"
    ok("exec", "--lab", lab, "ns-ext", "--", "sed", "-i", f"s/{re.escape(wrong)}$/203.0.113.25/",
       "/etc/bind/db.example.net")
    ok("service", "resolver", "dns", "restart", "--lab", lab)
    assert ok("exec", "--lab", lab, "ext-ws", "--", *dig).stdout.strip() == "203.0.113.25"


# --- refusals ------------------------------------------------------------------------------

@pytest.mark.parametrize("args,words", [
    pytest.param(["start", "no-such-scenario"], ["unknown scenario 'no-such-scenario'"],
                 id="unknown-scenario"),
    pytest.param(["start", "inbound-bounces", "--fault", "no-such-fault"],
                 ["unknown fault 'no-such-fault'"], id="unknown-fault"),
    # the cause is checked by the lab's supervisor (tested below, in a running attempt)
    pytest.param(["submit", "no-such-cause", "--node", "fw"], ["unknown lab"],
                 id="submit-without-lab"),
])
def test_refused_without_lab(args, words, unique_name, state_root):
    lab = unique_name("att-none")
    p = run_lab(*args, "--lab", lab)
    one_line_error(p, *words)
    assert not (state_root / lab).exists()  # nothing half built


@pytest.fixture(scope="module")
def started(module_labs) -> str:
    lab = module_labs.claim("att-refuse")
    ok("start", "ping-red-herring", "--seed", "2", "--lab", lab)
    return lab


@pytest.mark.parametrize("args,words", [
    pytest.param(["submit", "no-such-cause", "--node", "fw"], ["unknown cause"],
                 id="unknown-cause"),
    pytest.param(["submit", "fw-smtp-permit-missing", "--node", "no-such-node"],
                 ["unknown node 'no-such-node'"], id="submit-unknown-node"),
    pytest.param(["exec", "no-such-node", "--", "true"], ["unknown node 'no-such-node'"],
                 id="exec-unknown-node"),
    pytest.param(["shell", "no-such-node"], ["unknown node 'no-such-node'"],
                 id="shell-unknown-node"),
])
def test_refused_in_running_attempt(started, args, words):
    # --lab before the node: after `--` everything belongs to the command
    one_line_error(run_lab(args[0], "--lab", started, *args[1:]), *words)


def test_forced_faults_replace_the_draw(started, labs, tmp_path):
    """`--fault` (repeatable) applies exactly the named faults instead of the scenario's."""
    lab = labs.claim("att-forced")
    ok("start", "inbound-bounces", "--seed", "1", "--lab", lab,
       "--fault", "smtp-service-down", "--fault", "fw-alert-permit-missing")
    nc = run_lab("exec", "--lab", lab, "fw", "--", "nc", "-z", "-w", "2", "10.1.0.25", "25")
    assert nc.returncode != 0
    report = json.loads(ok("score", "--lab", lab, "--json", "--results",
                           str(tmp_path)).stdout)
    assert sorted(v["fault"] for v in report["verdicts"]) == [
        "fw-alert-permit-missing", "smtp-service-down"]
    assert {v["verdict"] for v in report["verdicts"]} == {"missing"}
