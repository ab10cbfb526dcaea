"""The scenario file model: loading, validation errors with file/line/field. (Drawing a
scenario's faults from a seed is the fault layer's: tests/test_draw.py.)"""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from lab.model.rubric import Rubric
from lab.model.scenario import (
    FaultItem,
    Scenario,
    check_cause_names,
    check_fault_names,
    load_scenario,
    load_scenarios,
)
from lab.model.source import FileError
from lab.scoring.causes import CAUSE_IDS

GOLDEN = Path(__file__).parent / "golden" / "scoring"
KNOWN = {"dns-mx-missing", "nat-static-missing", "fw-smtp-permit-missing", "fw-icmp-blocked",
         "link-down", "smtp-service-down"}

VALID = """\
name: inbound-bounces
title: External senders get bounces
topology: mail-dmz
variant: inbound-to
overrides:
  nodes: {fw: {services: {firewall: {proxy: {mode: inbound-to}}}}}
faults:
  - fault: dns-mx-missing
  - pick: 1
    from:
      - fault: nat-static-missing
      - fault: fw-smtp-permit-missing
      - fault: link-down
        params: {segment: lan}
ticket: External senders get bounces from example.net since this morning.
hints:
  - {text: Start with DNS., cost: 5}
  - {text: Look at the firewall's NAT., cost: 10}
time_limit: 30
accept:
  partial:
    nat-static-missing: [fw-smtp-permit-missing]
rubric:
  fix: 30
expect_playbooks: [inbound]
red_herrings:
  - fault: fw-icmp-blocked
"""

# each broken file differs from VALID by a few lines; its golden file holds the error text
BROKEN = {
    "unknown-cause": VALID.replace("    nat-static-missing: [fw-smtp-permit-missing]",
                                   "    nat-static-gone: [fw-smtp-permit-missing, dns-typo]"),
    "negative-cost": VALID.replace("cost: 10}", "cost: -10}"),
    "pick-too-many": VALID.replace("  - pick: 1", "  - pick: 4"),
    "duplicate-fault": VALID.replace("      - fault: fw-smtp-permit-missing",
                                     "      - fault: dns-mx-missing"),
    "mixed-entry": VALID.replace("  - pick: 1", "  - pick: 1\n    fault: link-down"),
    "pool-without-from": VALID.replace("  - fault: dns-mx-missing",
                                       "  - fault: dns-mx-missing\n  - pick: 2"),
    "extra-and-missing": VALID.replace("time_limit: 30\n", "timelimit: 30\n")
                              .replace("title: External senders get bounces\n", ""),
    "bad-rubric": VALID.replace("  fix: 30", "  fix: 30\n  bonus: 5\n  partial_fraction: 2"),
    "duplicate-playbook": VALID.replace("[inbound]", "[inbound, outbound, inbound]"),
}


def write(tmp_path: Path, text: str, name: str = "inbound-bounces.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_scenario_loads(tmp_path: Path) -> None:
    sc = load_scenario(write(tmp_path, VALID), KNOWN)
    assert sc.name == "inbound-bounces"
    assert sc.variant == "inbound-to"
    assert sc.overrides == {"nodes": {"fw": {"services": {"firewall": {"proxy": {
        "mode": "inbound-to"}}}}}}
    assert [h.cost for h in sc.hints] == [5, 10]
    assert sc.faults[1].is_pool and sc.faults[1].pick == 1
    assert sc.accept.partial == {"nat-static-missing": ["fw-smtp-permit-missing"]}
    assert sc.rubric == Rubric(fix=30)
    assert sc.red_herrings[0].fault == "fw-icmp-blocked"


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_scenario_errors_golden(tmp_path: Path, case: str) -> None:
    path = write(tmp_path, BROKEN[case])
    with pytest.raises(FileError) as err:
        load_scenario(path, known_causes=CAUSE_IDS)
    text = str(err.value).replace(str(path), "<file>") + "\n"
    golden = GOLDEN / f"scenario-{case}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_unknown_fault_names_name_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    with pytest.raises(FileError) as err:
        load_scenario(path, KNOWN - {"link-down", "fw-icmp-blocked"})
    assert err.value.problems == [
        (13, "faults[1].from[2].fault", "unknown fault 'link-down' (see `lab faults`)"),
        (27, "red_herrings[0].fault", "unknown fault 'fw-icmp-blocked' (see `lab faults`)"),
    ]


def test_fault_names_are_not_checked_without_a_catalog(tmp_path: Path) -> None:
    sc = load_scenario(write(tmp_path, VALID))
    assert check_fault_names(sc, set()) and sc.problems() == []


def test_cause_ids_are_checked_against_the_menu_the_caller_gives(tmp_path: Path) -> None:
    """The model knows no menu of its own (it is derived from the fault catalog, a layer
    above): without one, accept's causes are not checked; with one, they are."""
    sc = load_scenario(write(tmp_path, BROKEN["unknown-cause"]))
    assert sc.problems() == []
    found = check_cause_names(sc, CAUSE_IDS)
    assert [msg for _, msg in found] == ["unknown cause 'nat-static-gone' (see `lab causes`)",
                                         "unknown cause 'dns-typo' (see `lab causes`)"]
    assert sc.problems(known_causes=CAUSE_IDS) == found


@pytest.mark.parametrize("data", [
    {"fault": "link-down", "pick": 1, "from": [{"fault": "link-down"}]},
    {"pick": 1},
    {"from": [{"fault": "link-down"}]},
    {"params": {"a": 1}},
    {"pick": 0, "from": [{"fault": "link-down"}]},
    {"pick": 1, "from": []},
])
def test_fault_item_shapes_refused(data: dict) -> None:
    with pytest.raises(ValidationError):
        FaultItem.model_validate(data)


def _scenario(**changes) -> Scenario:
    import yaml
    data = yaml.safe_load(VALID)
    data.update(changes)
    return Scenario.model_validate(data)


def test_load_scenarios_requires_name_to_match_file(tmp_path: Path) -> None:
    write(tmp_path, VALID)
    assert list(load_scenarios(tmp_path, KNOWN)) == ["inbound-bounces"]
    write(tmp_path, VALID, "other.yaml")
    with pytest.raises(FileError, match="does not match the file name 'other'"):
        load_scenarios(tmp_path)


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, textwrap.dedent("""\
        name: x
        faults: [
        """))
    with pytest.raises(FileError) as err:
        load_scenario(path)
    assert err.value.problems[0][0] == 3


def test_variant_and_overrides_apply_to_the_reference_topology(tmp_path: Path) -> None:
    from lab.model.topology import load_topology

    sc = load_scenario(write(tmp_path, VALID))
    topo_file = Path(__file__).parent.parent / "topologies" / f"{sc.topology}.yaml"
    topo = load_topology(topo_file, sc.variant, sc.overrides)
    assert topo.nodes["fw"].services["firewall"]["proxy"]["mode"] == "inbound-to"
