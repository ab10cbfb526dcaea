"""A lab with history, as a trainee finds it at `lab start`.

For every scenario: the traces its ticket promises (``history.traces``) are there, seen
with the trainee's own tools through `lab exec` (mailq, netguard -An, ls of the alert
spool, grep in the logs and mailboxes), spread over the window the ticket names; a queue
the ticket speaks of holds the drawn fault's own error; and the background traffic is
nobody's doing: the attempt records exactly the test's commands, and no damage. Then,
in the same lab, the search for the answer key of tests/test_answer_key_hidden.py.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
from conftest import node_run, run_lab
from hidden_scan import clean_env, leaks, old_entries

from lab.engine import lifecycle
from lab.history.traces import VIEWS, Seen, local_now, queued
from lab.model.roles import derive_roles
from lab.model.scenario import load_scenario
from lab.model.topology import load_topology

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted(p.stem for p in (ROOT / "scenarios").glob("*.yaml"))
SEED = 1
XDIST_GROUPS = 3  # every scenario's test has its own lab: they share out freely

TIMED_OUT = r"Connection timed out|No route to host"
NOT_FOUND = r"Host or domain name not found"
# what a queue shows for mail stopped by each fault (the last attempt's reason)
QUEUE_ERRORS = {
    "fw-smtp-permit-missing": TIMED_OUT, "nat-static-missing": TIMED_OUT,
    "nat-static-wrong-host": TIMED_OUT, "dns-wrong-address": TIMED_OUT,
    "dns-stale-cache": TIMED_OUT, "link-down": TIMED_OUT + "|" + NOT_FOUND,
    "link-packet-loss": TIMED_OUT + "|" + NOT_FOUND + "|lost connection|timed out",
    "dns-server-down": NOT_FOUND, "dns-lame-delegation": NOT_FOUND,
    "smtp-service-down": r"Connection refused", "smtp-tls-not-offered": r"TLS is required",
    "proxy-mode-mismatch": TIMED_OUT + r"|Connection refused",
    "proxy-server-not-listed": r"451 .*no mail server",
    "nat-dynamic-missing": NOT_FOUND, "host-gateway-wrong": NOT_FOUND,
    "host-resolver-wrong": NOT_FOUND, "fw-dmz-permit-missing": TIMED_OUT,
    "relay-transport-wrong": TIMED_OUT, "dns-forwarder-dead": NOT_FOUND,
}
QUEUES = ("sender-queue", "server-queue", "relay-queue", "backup-mx-queue")


def _seen(scenario_name: str) -> tuple[Seen, list[str]]:
    scenario = load_scenario(ROOT / "scenarios" / f"{scenario_name}.yaml")
    topo = load_topology(lifecycle.resolve_topology(scenario.topology),
                         scenario.variant, scenario.overrides or None)
    return Seen(derive_roles(topo), local_now(), scenario.history.seconds()), \
        scenario.history.traces


def _look(lab: str, seen: Seen, trace: str) -> tuple[str, str | None]:
    """What a trainee's command shows for ``trace``, and what is missing from it."""
    view = VIEWS[trace]
    p = node_run(lab, getattr(seen.roles, view.role), *view.argv)
    return p.stdout, view.judge(p.stdout, seen)


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_tickets_traces_are_there_when_it_is_printed(labs, tmp_path, scenario):
    lab = labs.claim(f"t-hist-{scenario[:8]}")
    seen, promised = _seen(scenario)
    since, old = int(time.time()) - 1, old_entries()
    p = run_lab("start", scenario, "--seed", str(SEED), "--lab", lab, env=clean_env())
    assert p.returncode == 0, p.stderr
    ticket = p.stdout
    shown = {trace: _look(lab, seen, trace) for trace in promised}
    missing = {t: why for t, (_, why) in shown.items() if why is not None}
    assert not missing, missing

    p = run_lab("score", "--lab", lab, "--json", "--results", str(tmp_path))
    assert p.returncode == 0, p.stderr
    record = json.loads(next(tmp_path.rglob("*.json")).read_text())
    # the history's traffic is nobody's command, nobody's damage
    assert [c["argv"] for c in record["commands"]] == [list(VIEWS[t].argv) for t in promised]
    assert record["damage"] == []
    for trace in QUEUES:
        if trace in shown:
            reasons = " | ".join(why for _, why in queued(shown[trace][0]))
            expected = [QUEUE_ERRORS[f["name"]] for f in record["faults"]
                        if f["name"] in QUEUE_ERRORS]
            assert any(re.search(e, reasons) for e in expected), (expected, reasons)

    # and, in the same lab (the attempt scored: the scan's commands are not the trainee's),
    # nothing a node shell reaches names the faults, nor does the ticket
    found = leaks(lab, scenario, None, since, old, ticket)
    assert not found, f"answer key visible to the trainee: {found}"


@pytest.mark.root
def test_without_history_the_lab_starts_with_empty_queues_and_logs(labs):
    lab = labs.claim("t-hist-off")
    env = {**os.environ, "LAB_HISTORY": "off"}
    p = run_lab("start", "nat-inbound", "--seed", str(SEED), "--lab", lab, env=env)
    assert p.returncode == 0, p.stderr
    seen, _ = _seen("nat-inbound")
    assert node_run(lab, seen.roles.sender, "mailq").stdout == "Mail queue is empty\n"
    p = node_run(lab, seen.roles.sender, "cat", "/var/log/mail.log")
    assert p.returncode != 0 and "No such file" in p.stderr
    assert node_run(lab, seen.roles.firewall, "netguard", "-An").stdout == ""
