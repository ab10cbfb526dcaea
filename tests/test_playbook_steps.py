"""Playbook additions: a step that waits until a condition holds (bounded), ``${fact}`` in
a conclusion's ``because``, fact names exactly as docs/playbooks.md documents them, and
`lab playbook run|explain --fault NAME[:k=v,...]` with `--lab-prefix`."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from lab.model.playbook import PROBE_FIELDS, Step, load_playbook
from lab.model.source import FileError
from lab.playbooks import conditions

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "playbooks.md").read_text()

WAIT = """\
name: hd-wait
steps:
  - id: flag
    node: mx
    run: [sh, -c, 'if [ -e /var/spool/hd-flag ]; then echo ready; else touch /var/spool/hd-flag; echo wait; fi']
    until: {fact: flag.output, matches: ready}
    every: 0.2
    within: 10
  - id: never
    node: mx
    run: [echo, 'no']
    until: {fact: never.output, matches: 'yes'}
    every: 0.3
    within: 1
conclusions:
  - when: {fact: flag.held, equals: true}
    cause: smtp-service-down
    node: mx
    because: "flag after ${flag.tries} runs, never held: ${never.held}"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hd-wait.yaml"
    path.write_text(text)
    return path


def test_a_waiting_step_loads(tmp_path):
    pb = load_playbook(write(tmp_path, WAIT))
    assert pb.steps[0].until is not None and pb.steps[0].within == 10
    assert {"flag.held", "flag.waited", "flag.tries", "flag.output"} <= pb.steps[0].produces()


@pytest.mark.parametrize("old, new, field, message", [
    ("    every: 0.3\n    within: 1\n", "    within: 601\n", "steps[1].within",
     "Input should be less than or equal to 600"),
    ("    until: {fact: never.output, matches: 'yes'}\n", "", "steps[1]",
     "'every' and 'within' are only for a step with 'until'"),
    ("{fact: flag.output, matches: ready}", "{fact: later.output, matches: ready}",
     "steps[0].until.fact", "unknown fact 'later.output': no earlier step sets it"),
    ("${never.held}", "${nowhere.x}", "conclusions[0].because",
     "unknown fact 'nowhere.x': no earlier step sets it"),
])
def test_waiting_step_and_because_are_checked(tmp_path, old, new, field, message):
    text = WAIT.replace(old, new)
    assert text != WAIT
    with pytest.raises(FileError) as err:
        load_playbook(write(tmp_path, text))
    assert (field, message) in [p[1:] for p in err.value.problems], err.value.problems


def test_a_fact_name_no_condition_could_read_is_refused(tmp_path):
    text = WAIT.replace("    every: 0.2\n", "    every: 0.2\n    facts:\n      'Bad Name': "
                        "{regex: '(x)'}\n", 1)
    with pytest.raises(FileError) as err:
        load_playbook(write(tmp_path, text))
    assert [p[1] for p in err.value.problems] == ["steps[0].facts.'Bad Name'"]


def test_because_expands_facts_and_keeps_missing_ones():
    text = "rc ${a.rc} and ${b.x}"
    assert conditions.expand(text, {"a.rc": 3}) == "rc 3 and ${b.x}"


def _documented(action: str) -> set[str]:
    """The fact names docs/playbooks.md lists after "Facts:" for an action."""
    item = next(it for it in DOC.split("\n- ") if it.startswith(f"`{action}:"))
    return set(re.findall(r"`([a-z]+)`", item.split("Facts:", 1)[1]))


@pytest.mark.parametrize("action", sorted(PROBE_FIELDS))
def test_probe_facts_are_as_documented(action):
    """Fact names exactly as docs/playbooks.md documents them (`error` once for all)."""
    assert set(PROBE_FIELDS[action]) - {"error"} == _documented(action)
    assert "error" in PROBE_FIELDS[action] and "every probe sets `<id>.error`" in DOC


def test_step_facts_are_as_documented():
    run = Step.model_validate({"id": "s", "node": "mx", "run": ["true"]})
    ping = Step.model_validate({"id": "p", "node": "mx", "ping": {"host": "mx"}})
    assert run.produces() == {"s.rc", "s.output"}
    assert ping.produces() == {f"p.{f}" for f in ("rc", *PROBE_FIELDS["ping"])}
    for name in ("`<id>.rc`", "`<id>.output`", "`<id>.held`", "`<id>.waited`", "`<id>.tries`"):
        assert name in DOC


# --- in a lab ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wait_lab(module_labs) -> str:
    return module_labs.up("hd-pb-wait")


@pytest.mark.root
def test_a_step_waits_until_its_condition_holds(wait_lab, tmp_path):
    from lab.playbooks.runner import investigate

    started = time.monotonic()
    result = investigate(wait_lab, load_playbook(write(tmp_path, WAIT)))
    took = time.monotonic() - started
    flag, _ = result.steps
    assert (result.facts["flag.held"], result.facts["flag.tries"]) == (True, 2)
    assert flag.stdout.strip() == "ready"
    assert result.facts["never.held"] is False and result.facts["never.tries"] >= 2
    assert result.facts["never.waited"] >= 1.0
    assert took < 30  # bounded by within (1 s) plus the runs themselves
    assert result.conclusion["because"] == "flag after 2 runs, never held: False"


@pytest.mark.root
@pytest.mark.slow
def test_playbook_run_with_a_fault_made_on_the_fly(lab_cli, tmp_path, state_root):
    out = tmp_path / "runs.json"
    p = lab_cli("playbook", "run", "inbound", "--fault", "dns-wrong-address:address=203.0.113.77",
                "--lab-prefix", "hd-fly", "--json", str(out), timeout=300)
    assert p.returncode == 0, p.stderr
    assert ("scenario fault-dns-wrong-address made on the fly: fault dns-wrong-address "
            "(address=203.0.113.77) on topology mail-dmz; ticket: ") in p.stderr
    assert re.search(r"in lab hd-fly-1\b", p.stderr)
    run, = json.loads(out.read_text())
    assert (run["scenario"], run["lab"], run["verdict"]) == (
        "fault-dns-wrong-address", "hd-fly-1", "right")
    assert not (state_root / "hd-fly-1").exists()
    assert not list(state_root.glob(".adhoc-*"))


@pytest.mark.parametrize("args, words", [
    (["--fault", "link-down:node=nowhere"], "--fault link-down: node: unknown node 'nowhere'"),
    (["--fault", "no-such-fault"], "--fault: unknown fault 'no-such-fault'"),
    (["--fault", "link-down", "--lab-prefix", "Bad"], "--lab-prefix 'Bad': invalid lab name"),
    (["--fault", "link-down", "--lab-prefix", "x" * 31], "invalid lab name"),
])
@pytest.mark.root
def test_playbook_run_checks_faults_and_prefix_first(lab_cli, args, words):
    p = lab_cli("playbook", "run", "inbound", *args)
    assert p.returncode == 1 and words in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_an_unknown_topology_is_named(tmp_path):
    text = WAIT.replace("name: hd-wait\n", "name: hd-wait\ntopology: no-such-net\n")
    with pytest.raises(FileError) as err:
        load_playbook(write(tmp_path, text))
    assert err.value.problems == [(2, "topology", ("unknown topology 'no-such-net' (no "
                                                  "topologies/no-such-net.yaml)"))]
