"""Playbooks that name nodes, addresses and domains by role (``${roles.NAME}``) and run on
several topologies: the model's checks, which (playbook, scenario) pairs a run plans, a
step or fact about a role the topology lacks, regexes with role values, conclusions whose
node is a role; and a one-fault run on isp-relay."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lab.engine.attempt import load as load_scenario
from lab.errors import LabError
from lab.model.playbook import Step, load_playbook
from lab.model.roles import derive_roles
from lab.model.source import FileError
from lab.model.topology import load_topology
from lab.playbooks import conditions
from lab.playbooks.adhoc import ticket_for, topology_of
from lab.playbooks.matrix import load_playbook_ref, plan
from lab.playbooks.runner import _skip_reason
from lab.scoring.causes import CAUSE_IDS

ROOT = Path(__file__).resolve().parents[1]
MAIL_DMZ = derive_roles(load_topology(ROOT / "topologies" / "mail-dmz.yaml"))
ISP = derive_roles(load_topology(ROOT / "topologies" / "isp-relay.yaml"))

ANY = """\
name: hd-roles
topologies: any
needs: [mail_server]
steps:
  - id: q
    node: ${roles.mail_server}
    run: [mailq]
    facts:
      held: {regex: '(${roles.mail_private})'}
conclusions:
  - when: {fact: held, exists: true}
    cause: smtp-service-down
    node: ${roles.mail_server}
    because: held at ${roles.mail_private}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hd-roles.yaml"
    path.write_text(text)
    return path


def test_a_playbook_by_role_loads(tmp_path):
    pb = load_playbook(write(tmp_path, ANY), CAUSE_IDS)
    assert pb.topology_names() is None and pb.needs == ["mail_server"]


@pytest.mark.parametrize(("old", "new", "field", "message"), [
    ("    node: ${roles.mail_server}\n    run", "    node: mx\n    run", "steps[0].node",
     "'mx': a playbook for any topology names nodes by their roles (${roles.NAME})"),
    ("${roles.mail_private})'}", "${roles.mail_privat})'}", "steps[0].facts.held",
     "unknown role 'mail_privat' (see docs/roles.md)"),
    ("needs: [mail_server]", "needs: [mail_servers]", "needs[0]",
     "unknown role 'mail_servers' (see docs/roles.md)"),
    ("    node: ${roles.mail_server}\n    because", "    node: x${roles.mail_server}\n    because",
     "conclusions[0].node", "a node is a node name or one role, ${roles.NAME}"),
    ("topologies: any", "topologies: [mail-dmz, nowhere]", "topologies[1]",
     "unknown topology 'nowhere' (no topologies/nowhere.yaml)"),
    ("topologies: any", "topology: mail-dmz\ntopologies: any", "topologies",
     "give either topology or topologies, not both"),
])
def test_what_a_playbook_by_role_may_not_say(tmp_path, old, new, field, message):
    with pytest.raises(FileError) as err:
        load_playbook(write(tmp_path, ANY.replace(old, new, 1)))
    assert any(f == field and m == message for _, f, m in err.value.problems), err.value.problems


def test_a_literal_node_must_be_in_every_listed_topology(tmp_path):
    text = ANY.replace("topologies: any", "topologies: [mail-dmz, isp-relay]").replace(
        "    node: ${roles.mail_server}\n    run", "    node: mx\n    run")
    with pytest.raises(FileError, match=r"steps\[0\].node: unknown node 'mx'"):
        load_playbook(write(tmp_path, text))
    load_playbook(write(tmp_path, text.replace("node: mx\n", "node: admin\n")))  # in both


@pytest.mark.parametrize(("name", "topology", "runs"), [
    ("inbound", "mail-dmz", True), ("inbound", "isp-relay", True),
    ("outbound", "isp-relay", True), ("alerts", "isp-relay", True),
])
def test_the_reference_playbooks_run_on_both_topologies(name, topology, runs):
    _path, pb = load_playbook_ref(name)
    roles = MAIL_DMZ if topology == "mail-dmz" else ISP
    assert pb.runs_on(topology, roles) is runs


def test_needs_and_topologies_decide_where_a_playbook_runs(tmp_path):
    relay = load_playbook(write(tmp_path, ANY.replace("[mail_server]", "[inbound_relay]")))
    assert relay.runs_on("isp-relay", ISP) and not relay.runs_on("mail-dmz", MAIL_DMZ)
    only = load_playbook(write(tmp_path, ANY.replace("topologies: any",
                                                     "topologies: [mail-dmz]")))
    assert only.runs_on("mail-dmz", MAIL_DMZ) and not only.runs_on("isp-relay", ISP)


def test_a_run_plans_only_the_pairs_a_playbook_runs_on(tmp_path):
    relay = load_playbook(write(tmp_path, ANY.replace("[mail_server]", "[inbound_relay]")))
    scenarios = [load_scenario("relay-refused"), load_scenario("isp-relay-bounce")]
    skipped: list[tuple[str, str]] = []
    jobs = plan([relay], scenarios, [0, 1], skipped)
    assert [(j.scenario.name, j.seed) for j in jobs] == [("isp-relay-bounce", 0),
                                                        ("isp-relay-bounce", 1)]
    assert skipped == [("hd-roles", "relay-refused")]


def test_a_step_needing_a_missing_role_is_skipped_and_says_so():
    step = Step.model_validate({"id": "r", "node": "${roles.inbound_relay}", "run": ["mailq"],
                                "facts": {"x": {"regex": "(${roles.smarthost})"}}})
    assert _skip_reason(step, MAIL_DMZ.vars()) == ("role inbound_relay is missing (needed by "
                                                   "the step)")
    assert _skip_reason(step, ISP.vars()) == ""
    # a fact regex about a missing role does not stop the step (only that fact stays unset)
    step = step.model_copy(update={"node": "${roles.mail_server}"})
    assert _skip_reason(step, MAIL_DMZ.vars()) == ""


def test_role_values_in_a_regex_are_literal_text():
    regex = conditions.interpolate(r"ip daddr ${roles.inbound_public} .*dnat to (\S+)",
                                   ISP.vars(), escape=True)
    assert regex == r"ip daddr 198\.51\.100\.25 .*dnat to (\S+)"
    assert conditions.extract(regex, 1, "ip daddr 198x51x100x25 dnat to 1.2.3.4") is None


def test_a_conclusion_whose_node_is_a_missing_role_is_passed_over(tmp_path):
    pb = load_playbook(write(tmp_path, ANY.replace(
        "conclusions:\n", "conclusions:\n  - when: {fact: held, exists: true}\n"
        "    cause: relay-domain-missing\n    node: ${roles.inbound_relay}\n")))
    facts = {**MAIL_DMZ.vars(), "held": "10.1.0.25"}
    index, c = conditions.conclude(list(pb.conclusions), facts)
    assert (index, c.cause) == (1, "smtp-service-down")
    facts = {**ISP.vars(), "held": "192.168.10.25"}
    assert conditions.conclude(list(pb.conclusions), facts)[1].cause == "relay-domain-missing"


def test_fault_scenarios_take_a_topology_the_playbooks_run_on():
    pbs = [load_playbook_ref(n)[1] for n in ("inbound", "outbound")]
    assert topology_of(pbs) == "mail-dmz" and topology_of(pbs, "isp-relay") == "isp-relay"
    mail_dmz_only = load_playbook_ref("inbound")[1].model_copy(update={"topologies": ["mail-dmz"]})
    with pytest.raises(LabError, match="do not all run on it"):
        topology_of([mail_dmz_only], "isp-relay")


def test_the_ticket_of_a_fault_made_on_the_fly_names_the_topologys_own_things():
    ticket = ticket_for("fw-dmz-permit-missing", load_topology(ROOT / "topologies" /
                                                               "isp-relay.yaml"))
    assert "172.16.25.25 -> 192.168.10.25:25" in ticket and "${" not in ticket
    assert "<address>" in ticket_for("dns-forwarder-dead", load_topology(
        ROOT / "topologies" / "isp-relay.yaml"))


@pytest.mark.root
@pytest.mark.slow
def test_a_fault_of_the_new_shape_on_the_fly(lab_cli, tmp_path, state_root):
    out = tmp_path / "runs.json"
    p = lab_cli("playbook", "run", "inbound", "--fault", "relay-transport-wrong",
                "--topology", "isp-relay", "--lab-prefix", "hd-isp", "--json", str(out),
                timeout=300)
    assert p.returncode == 0, p.stderr
    assert "on topology isp-relay; ticket: mail from outside is accepted (250) by " \
           "mx.example.org" in p.stderr
    run, = json.loads(out.read_text())
    assert (run["verdict"], run["concluded"]) == ("right", ["relay-transport-wrong", "relay"])
    steps = {s["id"]: s for s in run["result"]["steps"]}
    assert steps["relay_queue"]["node"] == "relay" and not steps["relay_queue"]["skipped"]
    assert re.match(r"192\.168\.10\.\d+$", run["result"]["facts"]["relay_next_hop"])
    assert not (state_root / "hd-isp-1").exists()
