"""The playbook runner end to end, as root, in real labs: `lab playbook run` acting as a
trainee through the exec, submit and score path; a deliberately wrong playbook misses and
makes the command fail; "no conclusion" is reported as such; Ctrl-C leaves no lab.

Scenarios and broken playbooks are temporary files; every lab is named pb-<pid>-<n> by
the command under test, and each test checks that none of them is left.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]


def scenario(directory: Path, name: str, fault: str, expect: list[str]) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(f"name: {name}\ntitle: t\ntopology: mail-dmz\nfaults:\n  - fault: {fault}\n"
                    f"ticket: mail is broken\ntime_limit: 30\nexpect_playbooks: {json.dumps(expect)}\n")
    return path


WRONG = """name: wrong
description: blames the MX record whatever happens
steps:
  - id: mx
    node: ext-ws
    dns: {name: example.net, type: MX}
conclusions:
  - {when: {fact: mx.rc, equals: 0}, cause: dns-mx-missing, node: ns-ext}
"""
SILENT = """name: silent
steps:
  - id: route
    node: mx
    run: [ip, route]
    facts:
      gw: {regex: 'default via (\\S+)'}
conclusions:
  - {when: {fact: gw, equals: no-such-gateway}, cause: host-gateway-wrong, node: mx}
"""


@pytest.fixture
def matrix(require_root, lab_cli, state_root):
    """``matrix(tmp_path, *args)``: `lab playbook run ARGS` with JSON and JUnit output; the
    completed process and the runs; checks that no run left its lab behind."""
    def run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
        return run_matrix(lab_cli, state_root, tmp_path, *args)
    return run


def run_matrix(run_lab, state_root: Path, tmp_path: Path, *args: str
               ) -> tuple[subprocess.CompletedProcess, list[dict]]:
    out = tmp_path / "out.json"
    p = run_lab("playbook", "run", *args, "--json", str(out), "--junit",
                str(tmp_path / "junit.xml"), "--results", str(tmp_path / "results"), timeout=300)
    runs = json.loads(out.read_text()) if out.exists() else []
    for r in runs:
        assert not (state_root / r["lab"]).exists(), f"lab {r['lab']} was left behind"
    return p, runs


@pytest.mark.parametrize("playbook, fault", [
    ("inbound", "smtp-service-down"),
    ("inbound", "dns-server-down"),
    ("outbound", "host-resolver-wrong"),
    ("alerts", "dns-no-split-view"),
])
def test_reference_playbook_diagnoses(matrix, tmp_path: Path, playbook: str, fault: str) -> None:
    sc = scenario(tmp_path, f"t-{fault}", fault, [playbook])
    p, runs = matrix(tmp_path, playbook, "--scenario", str(sc), "--jobs", "1")
    assert p.returncode == 0, p.stdout + p.stderr
    [run] = runs
    assert run["verdict"] == "right" and run["passed"]
    assert run["concluded"][0] == fault and run["injected"][0][0] == fault
    # the evidence: steps ran in nodes and the attempt was scored by the scorer
    assert run["result"]["score"]["verdicts"][0]["verdict"] == "right"
    assert any(s["commands"] for s in run["result"]["steps"])
    assert f"[1/1] {playbook} x t-{fault}" in p.stderr
    assert "PLAYBOOK" in p.stdout and "1*" in p.stdout


def test_wrong_playbook_misses_and_fails(matrix, tmp_path: Path) -> None:
    (tmp_path / "wrong.yaml").write_text(WRONG)
    a = scenario(tmp_path, "t-down", "smtp-service-down", ["wrong"])
    b = scenario(tmp_path, "t-mx", "dns-mx-missing", ["wrong"])
    p, runs = matrix(tmp_path, str(tmp_path / "wrong.yaml"), "--scenario", str(a),
                         "--scenario", str(b), "--jobs", "2")
    assert p.returncode == 1, p.stdout + p.stderr
    verdicts = {r["scenario"]: r["verdict"] for r in runs}
    assert verdicts == {"t-down": "wrong", "t-mx": "right"}
    assert "MISS  wrong x t-down (seed 0): injected smtp-service-down on mx; wrong: " \
           "dns-mx-missing on ns-ext" in p.stdout
    cases = {c.get("name"): c for c in ET.parse(tmp_path / "junit.xml").iter("testcase")}
    assert cases["t-down[seed=0]"].find("failure") is not None
    assert cases["t-mx[seed=0]"].find("failure") is None
    assert "conclusion #1: dns-mx-missing on ns-ext" in cases["t-mx[seed=0]"].findtext("system-out")


def test_no_conclusion_is_reported_as_such(matrix, tmp_path: Path) -> None:
    (tmp_path / "silent.yaml").write_text(SILENT)
    sc = scenario(tmp_path, "t-gw", "host-gateway-wrong", ["silent"])
    p, runs = matrix(tmp_path, str(tmp_path / "silent.yaml"), "--scenario", str(sc))
    assert p.returncode == 1
    assert runs[0]["verdict"] == "none" and runs[0]["concluded"] is None
    assert "no conclusion" in p.stdout and "no conclusion" in p.stderr
    assert runs[0]["result"]["score"]["verdicts"][0]["verdict"] != "right"


def test_explain_shows_steps_facts_and_score(lab_cli, tmp_path: Path) -> None:
    sc = scenario(tmp_path, "t-split", "dns-no-split-view", ["alerts"])
    p = lab_cli("playbook", "explain", "alerts", "--scenario", str(sc), "--results",
                str(tmp_path), timeout=120)
    assert p.returncode == 0, p.stderr
    for text in ("- mailhost [fw] dns", "$ cat /etc/resolv.conf", "nameserver='203.0.113.9'",
                 "conclusion #1: dns-no-split-view on fw (", "submitted: right", "Score "):
        assert text in p.stdout


def test_ctrl_c_leaves_no_lab(lab_command, state_root: Path, tmp_path: Path) -> None:
    lab_cmd, project_root = lab_command
    sc = scenario(tmp_path, "t-loss", "link-packet-loss", ["inbound"])
    proc = subprocess.Popen([*lab_cmd, "playbook", "run", "inbound", "--scenario", str(sc)],
                            cwd=project_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    lab = None
    deadline = time.monotonic() + 60
    while lab is None and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if " in lab " in line:
            lab = line.split(" in lab ")[1].strip()
    assert lab is not None, "the run never started a lab"
    time.sleep(1.5)  # in the middle of the playbook's steps
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert not (state_root / lab).exists(), f"lab {lab} was left behind after Ctrl-C"


@pytest.fixture(scope="module")
def arp_lab(module_labs) -> str:
    return module_labs.up("t-pb-arp")


@pytest.mark.parametrize("host, result", [
    ("10.1.0.25", "answered"),      # mx, on admin's link
    ("10.1.0.254", "silent"),       # nothing has that address (a wrong gateway, say)
    ("203.0.113.20", "not on link"),  # routed through fw
])
def test_scapy_arp_probe_in_a_node(host, result, arp_lab, node_exec) -> None:
    """The arp probe crafts a who-has with scapy inside the node, through the exec path."""
    p = node_exec(arp_lab, "admin", sys.executable, "-m", "lab.playbooks.probe", "arp",
                  json.dumps({"host": host, "count": 1}))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["result"] == result and out["interface"] == "eth0"
    assert bool(out["mac"]) == (result == "answered")
