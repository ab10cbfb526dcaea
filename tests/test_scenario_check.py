"""`lab scenario validate` and `lab start`'s check before building: faults, their
parameters (each against the fault's own Params model), the topology, its variant and the
scenario's overrides, every error at the line that is wrong; `--fault NAME:k=v,...`."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.engine.attempt import params_models
from lab.engine.lifecycle import resolve_topology
from lab.errors import LabError
from lab.model.scenario import FaultRef
from lab.model.scenario_check import check_scenario, forced_problems, parse_forced
from lab.model.source import FileError, Pos
from lab.model.topology import load_topology

ROOT = Path(__file__).resolve().parents[1]
MAIL_DMZ = ROOT / "topologies" / "mail-dmz.yaml"

SCENARIO = """\
name: hd-check
title: a scenario to break
topology: mail-dmz
variant: inbound-to
overrides:
  nodes:
    fw:
      services:
        firewall:
          proxy:
            mode: inbound-to
faults:
  - {fault: proxy-mode-mismatch, params: {dns_points_at: firewall}}
  - pick: 1
    from:
      - {fault: dns-wrong-address, params: {address: 203.0.113.77}}
      - {fault: link-down, params: {node: mx}}
ticket: mail is broken
time_limit: 20
red_herrings:
  - {fault: fw-icmp-blocked}
"""


def write(tmp_path: Path, text: str, name: str = "hd-check.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def check(path: Path):
    return check_scenario(path, params_models(), resolve_topology)


def problems(tmp_path: Path, old: str, new: str) -> list:
    text = SCENARIO.replace(old, new, 1)
    assert text != SCENARIO
    with pytest.raises(FileError) as err:
        check(write(tmp_path, text))
    return err.value.problems


def test_the_example_is_valid(tmp_path):
    scenario, topo = check(write(tmp_path, SCENARIO))
    assert scenario.name == "hd-check"
    assert topo.nodes["fw"].services["firewall"]["proxy"]["mode"] == "inbound-to"


@pytest.mark.parametrize("old, new, expected", [
    ("dns_points_at: firewall", "dns_points_at: sideways",
     (13, "faults[0].params.dns_points_at", "Input should be 'static-nat' or 'firewall'")),
    ("address: 203.0.113.77", "address: 203.0.113.777",
     (16, "faults[1].from[0].params.address", None)),
    ("{node: mx}", "{node: mx, colour: red}",
     (17, "faults[1].from[1].params.colour", "Extra inputs are not permitted")),
    ("{node: mx}", "{node: nowhere}",
     (17, "faults[1].from[1].params.node", ("unknown node 'nowhere' (nodes: admin, dns-root, "
      "dns-tld, ext-ws, fw, mx, mx-ext, ns-ext, ns-int, resolver)"))),
    ("{fault: fw-icmp-blocked}", "{fault: fw-icmp-blocked, params: {x: 1}}",
     (21, "red_herrings[0].params.x", "Extra inputs are not permitted")),
    ("fault: proxy-mode-mismatch", "fault: no-such-fault",
     (13, "faults[0].fault", "unknown fault 'no-such-fault' (see `lab faults`)")),
    ("topology: mail-dmz", "topology: no-such-net",
     (3, "topology", "unknown topology 'no-such-net' (known: isp-relay, mail-dmz)")),
    ("variant: inbound-to", "variant: sideways",
     (4, "variant", ("topology mail-dmz has no variant 'sideways' (variants: inbound-through, "
      "inbound-to)"))),
])
def test_each_problem_at_its_own_line(tmp_path, old, new, expected):
    """Issue 12: 12 of 42 scenarios built a lab, then failed with a pydantic URL."""
    found = problems(tmp_path, old, new)
    line, field, message = expected
    assert [(p[0], p[1]) for p in found] == [(line, field)]
    if message is not None:
        assert found[0][2] == message
    assert "pydantic" not in found[0][2]


def test_an_override_error_points_at_the_scenario_line(tmp_path):
    """Issue: a scenario override's error pointed at the base topology's line."""
    found = problems(tmp_path, "mode: inbound-to", "mode: sideways")
    assert found == [(11, "overrides.nodes.fw.services.firewall.proxy.mode",
                      "Input should be 'none', 'inbound-through' or 'inbound-to'")]


def test_a_cross_field_error_caused_by_an_override(tmp_path):
    text = SCENARIO.replace("    fw:\n", "    fw:\n      gateway: 10.9.9.9\n", 1)
    with pytest.raises(FileError) as err:
        check(write(tmp_path, text))
    assert err.value.problems == [(8, "overrides.nodes.fw.gateway",
                                   "10.9.9.9 is not on a segment fw is attached to")]


def test_a_broken_topology_is_named_with_its_own_file(tmp_path, monkeypatch):
    topo = tmp_path / "hd-net.yaml"
    topo.write_text(MAIL_DMZ.read_text().replace("name: mail-dmz", "name: hd-net")
                    .replace("address: 10.1.0.25/24", "address: 10.1.0.999/24", 1))
    monkeypatch.setattr("lab.engine.lifecycle.TOPOLOGY_DIR", tmp_path)
    with pytest.raises(FileError) as err:
        check(write(tmp_path, SCENARIO.replace("topology: mail-dmz", "topology: hd-net")))
    (line, field, _), = err.value.problems
    assert isinstance(line, Pos) and line.path == topo and field.endswith(".address")
    assert f"  {topo}:{line.line}: {field}: " in str(err.value)


# --- variants of a topology --------------------------------------------------------------


def broken_variant(tmp_path: Path) -> tuple[Path, int]:
    text = MAIL_DMZ.read_text()
    lines = text.splitlines()
    line = next(i for i, ln in enumerate(lines, 1) if "proxy: {mode: inbound-through}" in ln)
    path = tmp_path / "hd-variant.yaml"
    path.write_text(text.replace("proxy: {mode: inbound-through}", "proxy: {mode: sideways}"))
    return path, line


def test_lab_validate_checks_every_variant(lab_cli, tmp_path):
    """Issue: `lab validate` did not check variants."""
    path, line = broken_variant(tmp_path)
    p = lab_cli("validate", str(path))
    assert p.returncode == 1
    assert (f"  {path}:{line}: variants.inbound-through.nodes.fw.services.firewall.proxy.mode: "
            "Input should be") in p.stderr


def test_a_variant_error_points_at_the_variant_line(tmp_path):
    """Issue: a variant's error pointed at the base topology's line."""
    path, line = broken_variant(tmp_path)
    load_topology(path)  # the base alone is fine
    with pytest.raises(FileError) as err:
        load_topology(path, "inbound-through")
    assert [p[:2] for p in err.value.problems] == [
        (line, "variants.inbound-through.nodes.fw.services.firewall.proxy.mode")]


# --- --fault NAME:key=value,... ----------------------------------------------------------


@pytest.mark.parametrize("text, fault, params", [
    ("link-down", "link-down", {}),
    ("link-down:node=mx", "link-down", {"node": "mx"}),
    ("link-packet-loss:node=mx,percent=80", "link-packet-loss", {"node": "mx", "percent": "80"}),
    ("proxy-server-not-listed:servers=10.1.0.26,10.1.0.27", "proxy-server-not-listed",
     {"servers": "10.1.0.26,10.1.0.27"}),
])
def test_parse_forced(text, fault, params):
    assert parse_forced(text) == FaultRef(fault=fault, params=params)


@pytest.mark.parametrize("text", ["", ":node=mx", "link-down:=mx", "link-down:node", "Link"])
def test_parse_forced_refuses(text):
    with pytest.raises(LabError, match="bad --fault"):
        parse_forced(text)


def test_forced_parameters_are_checked():
    refs = [parse_forced("link-packet-loss:percent=400"), parse_forced("no-such-fault"),
            parse_forced("dns-wrong-address:colour=red"), parse_forced("link-down:node=mx"),
            parse_forced("link-down:node=nowhere")]
    assert forced_problems(refs, params_models(), load_topology(MAIL_DMZ)) == [
        "--fault link-packet-loss: percent: Input should be less than or equal to 100",
        "--fault: unknown fault 'no-such-fault' (see `lab faults`)",
        "--fault dns-wrong-address: colour: Extra inputs are not permitted",
        ("--fault link-down: node: unknown node 'nowhere' (nodes: admin, dns-root, dns-tld, "
         "ext-ws, fw, mx, mx-ext, ns-ext, ns-int, resolver)"),
    ]


# --- the CLI -----------------------------------------------------------------------------


def test_scenario_validate_every_shipped_scenario(lab_cli):
    names = sorted(p.stem for p in (ROOT / "scenarios").glob("*.yaml"))
    p = lab_cli("scenario", "validate", *names)
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.splitlines()) == len(names)


def test_scenario_validate_reports_file_line_field(lab_cli, tmp_path):
    path = write(tmp_path, SCENARIO.replace("dns_points_at: firewall", "dns_points_at: x")
                 .replace("mode: inbound-to", "mode: x"))
    p = lab_cli("scenario", "validate", str(path))
    assert p.returncode == 1 and "Traceback" not in p.stderr and "errors.pydantic" not in p.stderr
    assert re.findall(rf"^  {re.escape(str(path))}:(\d+): (\S+): ", p.stderr, re.MULTILINE) == [
        ("11", "overrides.nodes.fw.services.firewall.proxy.mode"),
        ("13", "faults[0].params.dns_points_at")]


@pytest.mark.root
@pytest.mark.parametrize("args", [
    ["{path}"],
    ["proxy-mismatch", "--fault", "link-packet-loss:percent=400"],
    ["proxy-mismatch", "--fault", "no-such-fault"],
    ["proxy-mismatch", "--fault", "link-down:node=nowhere,"],
])
def test_start_builds_nothing_for_a_bad_scenario_or_fault(lab_cli, tmp_path, state_root,
                                                          unique_name, args):
    """Checked before building: the command fails at once, and no lab state ever appears."""
    path = write(tmp_path, SCENARIO.replace("dns_points_at: firewall", "dns_points_at: x"))
    name = unique_name("hd-nobuild")
    p = lab_cli("start", *[a.format(path=path) for a in args], "--lab", name)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert "errors.pydantic" not in p.stderr
    assert p.stderr.startswith(f"lab: error: {path}: 1 error" if args == ["{path}"]
                               else "lab: error: --fault"), p.stderr
    assert not (state_root / name).exists()


@pytest.mark.root
def test_start_forces_a_fault_with_parameters(labs, lab_cli, node_exec):
    name = labs.claim("hd-forced")
    p = lab_cli("start", "proxy-mismatch", "--lab", name,
                "--fault", "dns-wrong-address:address=203.0.113.77")
    assert p.returncode == 0, p.stderr
    dig = node_exec(name, "ext-ws", "dig", "+short", "mail.example.net", "@203.0.113.53")
    assert dig.stdout.split() == ["203.0.113.77"]
