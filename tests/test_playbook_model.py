"""Playbook files, conditions, conclusions and the matrix rendering: root-free.

Golden files: every shipped playbook's validated, expanded form, and every broken
playbook's error text (file:line field: message). Regenerate with ``UPDATE_GOLDEN=1``.
"""
from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.model.playbook import Conclusion, Condition, load_playbook
from lab.model.source import FileError
from lab.playbooks import conditions, hooks
from lab.playbooks.matrix import Outcome
from lab.playbooks.render import render_accuracy, render_junit, render_matrix, render_misses
from lab.playbooks.runner import PlaybookResult, StepResult
from lab.scoring.causes import CAUSE_IDS

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden" / "playbooks"
SHIPPED = sorted((ROOT / "playbooks").glob("*.yaml"))


def check_golden(path: Path, text: str) -> None:
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path} (UPDATE_GOLDEN=1 writes it)"
    assert text == path.read_text(), f"differs from {path} (UPDATE_GOLDEN=1 regenerates)"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_playbook_expands_to_golden(path: Path) -> None:
    pb = load_playbook(path, CAUSE_IDS)
    assert pb.name == path.stem
    data = pb.model_dump(mode="json", by_alias=True, exclude_none=True)
    check_golden(GOLDEN / f"{path.stem}.json", json.dumps(data, indent=1, sort_keys=True) + "\n")


def test_three_reference_playbooks_ship() -> None:
    assert {p.stem for p in SHIPPED} >= {"inbound", "outbound", "alerts"}


HEAD = "name: broken\nsteps:\n"
OK_STEP = "  - id: s1\n    node: ext-ws\n    dns: {name: example.net, type: MX}\n"
OK_END = "conclusions:\n  - {when: {fact: s1.status, equals: NXDOMAIN}, cause: dns-mx-missing, node: ns-ext}\n"

BROKEN = {
    "two-actions": HEAD + "  - id: s1\n    node: fw\n    run: [hostname]\n    ping: {host: 10.1.0.25}\n" + OK_END,
    "no-action": HEAD + "  - id: s1\n    node: fw\n" + OK_END,
    "unknown-key": HEAD + OK_STEP + "    retries: 3\n" + OK_END,
    "unknown-node": HEAD + "  - id: s1\n    node: mars\n    run: [hostname]\n" + OK_END,
    "unknown-cause": HEAD + OK_STEP + "conclusions:\n  - {when: {fact: s1.rc, equals: 0}, cause: gremlins, node: fw}\n",
    "unknown-conclusion-node": HEAD + OK_STEP + "conclusions:\n  - {when: {fact: s1.rc, equals: 0}, cause: link-down, node: pluto}\n",
    "unknown-fact": HEAD + OK_STEP + "conclusions:\n  - {when: {fact: s9.status, equals: x}, cause: link-down, node: mx}\n",
    "fact-from-later-step": HEAD + OK_STEP.replace("    dns", "    when: {fact: s2.rc, equals: 0}\n    dns")
    + "  - id: s2\n    node: fw\n    run: [hostname]\n" + OK_END,
    "bad-regex": HEAD + OK_STEP + "    facts:\n      x: {regex: '(unclosed'}\n" + OK_END,
    "missing-group": HEAD + OK_STEP + "    facts:\n      x: {regex: 'no groups', group: 2}\n" + OK_END,
    "condition-two-tests": HEAD + OK_STEP + "conclusions:\n  - {when: {fact: s1.rc, equals: 0, exists: true}, cause: link-down, node: mx}\n",
    "condition-empty": HEAD + OK_STEP + "conclusions:\n  - {when: {}, cause: link-down, node: mx}\n",
    "duplicate-step": HEAD + OK_STEP + OK_STEP + OK_END,
    "interpolated-unknown": HEAD + "  - id: s1\n    node: fw\n    run: [ping, '${nowhere}']\n" + OK_END,
    "bad-port": HEAD + "  - id: s1\n    node: fw\n    tcp: {host: 10.1.0.25, port: 70000}\n" + OK_END,
    "yaml-syntax": HEAD + "  - id: s1\n    node: [fw\n",
    "no-steps": "name: broken\nsteps: []\n" + OK_END,
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_playbook_error_is_golden(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(BROKEN[name])
    with pytest.raises(FileError) as err:
        load_playbook(path, CAUSE_IDS)
    text = err.value.message.replace(str(path), "<file>") + "\n"
    assert "<file>:" in text, "every error names the file and a line"
    check_golden(GOLDEN / "errors" / f"{name}.txt", text)


def cond(data: dict) -> Condition:
    return Condition.model_validate(data)


FACTS = {"a.status": "NOERROR", "a.count": 2, "a.aa": True, "answer": "203.0.113.25",
         "other": "203.0.113.25", "loss": 60}


@pytest.mark.parametrize("data, expected", [
    ({"fact": "a.status", "equals": "NOERROR"}, True),
    ({"fact": "a.status", "equals": "SERVFAIL"}, False),
    ({"fact": "a.count", "equals": "2"}, True),
    ({"fact": "a.aa", "equals": True}, True),
    ({"fact": "a.aa", "equals": "false"}, False),
    ({"fact": "answer", "matches": r"^203\.0\.113\."}, True),
    ({"fact": "answer", "matches": r"^10\."}, False),
    ({"fact": "a.status", "in": ["SERVFAIL", "NOERROR"]}, True),
    ({"fact": "a.status", "in": ["SERVFAIL", "timeout"]}, False),
    ({"fact": "missing", "exists": True}, False),
    ({"fact": "missing", "exists": False}, True),
    ({"fact": "missing", "equals": "x"}, False),
    ({"fact": "loss", "gt": 0}, True),
    ({"fact": "loss", "lt": 50}, False),
    ({"fact": "a.status", "lt": 5}, False),
    ({"fact": "answer", "equals": "${other}"}, True),
    ({"fact": "answer", "equals": "${missing}"}, False),
    ({"all": [{"fact": "a.count", "gt": 1}, {"fact": "loss", "lt": 100}]}, True),
    ({"all": [{"fact": "a.count", "gt": 1}, {"fact": "missing", "exists": True}]}, False),
    ({"any": [{"fact": "missing", "exists": True}, {"fact": "loss", "equals": 60}]}, True),
    ({"not": {"fact": "a.status", "equals": "NOERROR"}}, False),
    ({"not": {"fact": "missing", "equals": "x"}}, True),
])
def test_condition(data: dict, expected: bool) -> None:
    assert conditions.holds(cond(data), FACTS) is expected


@pytest.mark.parametrize("facts, expected", [
    ({"s.status": "timeout"}, 0),
    ({"s.status": "NOERROR", "answer": "203.0.113.26"}, 1),
    ({"s.status": "NOERROR", "answer": "203.0.113.25"}, None),
    ({}, None),
])
def test_first_matching_conclusion_wins(facts: dict, expected: int | None) -> None:
    rules = [Conclusion(when=cond({"fact": "s.status", "equals": "timeout"}),
                        cause="dns-server-down", node="ns-ext"),
             Conclusion(when=cond({"fact": "answer", "matches": "26$"}),
                        cause="dns-wrong-address", node="ns-ext"),
             Conclusion(when=cond({"fact": "s.status", "equals": "timeout"}),
                        cause="link-down", node="mx")]
    found = conditions.conclude(rules, facts)
    assert (found[0] if found else None) == expected


@pytest.mark.parametrize("regex, group, text, expected", [
    (r"status: (\w+)", 1, ";; status: NXDOMAIN, id", "NXDOMAIN"),
    (r"^nameserver\s+(\S+)", 1, "search x\nnameserver 10.1.0.54\n", "10.1.0.54"),
    (r"(?P<gw>via \S+)", "gw", "default via 10.1.0.1 dev eth0", "via 10.1.0.1"),
    (r"state (\w+)", 1, "no such thing", None),
])
def test_regex_fact(regex: str, group, text: str, expected: str | None) -> None:
    assert conditions.extract(regex, group, text) == expected


@pytest.mark.parametrize("value, facts, expected", [
    ("${a}", {"a": "10.1.0.1"}, "10.1.0.1"),
    (["ping", "-c1", "${a}"], {"a": 5}, ["ping", "-c1", "5"]),
    ({"host": "${h}:25"}, {"h": "x"}, {"host": "x:25"}),
    ("plain", {}, "plain"),
])
def test_interpolate(value, facts, expected) -> None:
    assert conditions.interpolate(value, facts) == expected


def test_interpolate_missing_fact() -> None:
    with pytest.raises(conditions.MissingFact):
        conditions.interpolate("${gone}", {})


# --- hooks ---------------------------------------------------------------------------------


def test_hook_registry_and_env_module(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "team_hooks_pb.py").write_text(textwrap.dedent("""
        from lab.playbooks.hooks import HookResult, hook

        @hook("team-check")
        def team_check(ctx, answer):
            return HookResult(facts={"answer": answer})
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(hooks.ENV, "team_hooks_pb")
    hooks.load_hook_modules([])
    fn = hooks.get_hook("team-check")
    assert fn(None, answer=42).facts == {"answer": 42}
    assert "dns-trace" in hooks.HOOKS


def test_hook_twice_and_unknown_are_errors() -> None:
    hooks.load_hook_modules([])
    with pytest.raises(LabError, match="registered twice"):
        hooks.hook("dns-trace")(lambda ctx: hooks.HookResult())
    with pytest.raises(LabError, match="unknown playbook hook 'nope'"):
        hooks.get_hook("nope")


def test_hook_module_that_does_not_import() -> None:
    with pytest.raises(LabError, match="cannot import playbook hook module"):
        hooks.load_hook_modules(["no_such_module_pb_xyz"])


@pytest.mark.parametrize("stdout, rc, expected", [
    ('{"result": "open"}\n', 0, {"result": "open"}),
    ("", 1, {"error": "probe failed (rc 1): boom"}),
    ("not json", 0, {"error": "probe failed (rc 0): boom"}),
])
def test_parse_probe(stdout: str, rc: int, expected: dict) -> None:
    assert hooks.parse_probe(stdout, rc, "trace\nboom") == expected


def test_probe_argv_runs_the_labs_python() -> None:
    argv = hooks.probe_argv("tcp", {"host": "10.1.0.25", "port": 25, "x": None})
    assert argv[:4] == [sys.executable, "-m", "lab.playbooks.probe", "tcp"]
    assert json.loads(argv[4]) == {"host": "10.1.0.25", "port": 25}


# --- rendering -----------------------------------------------------------------------------


def outcome(pb: str, sc: str, injected: list, concluded, verdict: str, expected: bool) -> Outcome:
    result = PlaybookResult(pb, "pb-1-1", steps=[StepResult("s1", "fw", "run",
                                                            commands=[["nft", "list", "ruleset"]],
                                                            rc=0, stdout="table ip x\n",
                                                            facts={"s1.rc": 0})],
                            facts={"s1.rc": 0},
                            conclusion=None if concluded is None else
                            {"index": 0, "cause": concluded[0], "node": concluded[1], "because": ""})
    return Outcome(pb, sc, 0, "pb-1-1", expected, injected=injected, concluded=concluded,
                   verdict=verdict, seconds=1.5, result=result)


OUTCOMES = [
    outcome("inbound", "dns-outage", [("dns-server-down", "ns-ext")],
            ("dns-server-down", "ns-ext"), "right", True),
    outcome("inbound", "stale", [("dns-stale-cache", "resolver")],
            ("dns-wrong-address", "ns-ext"), "partial", True),
    outcome("alerts", "stale", [("dns-stale-cache", "resolver")], None, "none", False),
    outcome("outbound", "relay", [("smtp-relay-refused", "mx")], None, "none", True),
    outcome("inbound", "double", [("link-down", "mx"), ("nat-static-missing", "fw")],
            ("nat-static-missing", "fw"), "right", True),
]


@pytest.mark.parametrize("name, render", [
    ("matrix", render_matrix), ("accuracy", render_accuracy), ("misses", render_misses),
    ("junit", render_junit),
])
def test_render_golden(name: str, render) -> None:
    check_golden(GOLDEN / f"render-{name}.txt", render(OUTCOMES))


def test_no_conclusion_is_never_a_pass() -> None:
    o = OUTCOMES[3]
    assert not o.passed and o.missed
    assert "no conclusion" in render_misses([o])
    assert "<failure" in render_junit([o]) and "NO CONCLUSION" in render_junit([o])
