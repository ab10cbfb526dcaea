"""One-fault scenarios made on the fly for `lab playbook run|explain --fault NAME[:k=v,...]`.

Each is an ordinary scenario file (checked like every scenario): the playbooks' topology,
the one fault with its parameters, the fault's symptom as the ticket, and the playbooks run
against it as ``expect_playbooks`` (a miss fails the run). The files live under the lab
state root, which no node can see, and are removed when the run ends.
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from lab.engine import lifecycle
from lab.engine.attempt import load, params_models
from lab.engine.state import state_root
from lab.errors import LabError
from lab.model.playbook import DEFAULT_TOPOLOGY, REF, Playbook
from lab.model.scenario import FaultRef, Scenario
from lab.model.scenario_check import forced_problems, parse_forced
from lab.model.topology import load_topology

TIME_LIMIT = 30  # minutes; a playbook takes seconds


def topology_of(playbooks: list[Playbook], wanted: str | None = None) -> str:
    """The topology for on-the-fly scenarios: ``wanted`` (--topology), which every playbook
    must run on, else the first topology they all run on (the reference, for playbooks
    that run on any)."""
    common: list[str] | None = None
    for pb in playbooks:
        names = pb.topology_names()
        if names is not None:
            common = names if common is None else [n for n in common if n in names]
    if wanted is not None:
        if common is not None and wanted not in common:
            raise LabError(f"--topology {wanted}: the playbooks do not all run on it",
                           hint="they run on: " + (", ".join(common) or "no common topology"))
        return wanted
    if common is None:
        return DEFAULT_TOPOLOGY
    if not common:
        raise LabError("--fault needs playbooks that run on one topology in common",
                       hint="run them separately")
    return common[0]


def scenario_data(ref: FaultRef, topology: str, playbooks: list[str], ticket: str) -> dict:
    return {"name": f"fault-{ref.fault}"[:40], "title": f"one fault: {ref.fault}",
            "topology": topology, "faults": [{"fault": ref.fault, "params": ref.params}],
            "ticket": ticket, "time_limit": TIME_LIMIT, "expect_playbooks": playbooks}


def ticket_for(fault: str, topo) -> str:
    """The fault's symptom as a ticket, with the topology's names (the params it will be
    drawn with are not known yet: they stay as <name>)."""
    from lab.faults import CATALOG
    from lab.model.roles import derive_roles, skeleton

    roles = derive_roles(topo)
    symptom = CATALOG[fault].symptom or f"something is wrong ({fault})"
    return skeleton(REF.sub(lambda m: roles.vars().get(m.group(1), m.group(0)), symptom))


@contextmanager
def fault_scenarios(specs: list[str], playbooks: list[Playbook], wanted: str | None = None
                    ) -> Iterator[list[tuple[Path, Scenario]]]:
    """The scenarios for ``--fault`` options (checked before anything is built), while the
    ``with`` block runs."""
    if not specs:
        yield []
        return
    topology = topology_of(playbooks, wanted)
    refs = [parse_forced(spec) for spec in specs]
    topo = load_topology(lifecycle.resolve_topology(topology))
    problems = forced_problems(refs, params_models(), topo)
    if problems:
        raise LabError("\n  ".join(problems), hint="`lab faults` lists every fault and its "
                                                  "parameters")
    root = state_root()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix=".adhoc-", dir=root))
    try:
        out = []
        for i, ref in enumerate(refs):
            data = scenario_data(ref, topology, [pb.name for pb in playbooks],
                                 ticket_for(ref.fault, topo))
            path = directory / f"{i}-{data['name']}.yaml"
            path.write_text(yaml.safe_dump(data, sort_keys=False))
            out.append(load(str(path)))
        yield out
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def describe(path: Path, scenario: Scenario) -> str:
    """What an on-the-fly scenario is, for the user (stderr)."""
    ref = next(ref for _, ref in scenario.fault_refs())
    params = ",".join(f"{k}={v}" for k, v in ref.params.items())
    return (f"scenario {scenario.name} made on the fly: fault {ref.fault}"
            + (f" ({params})" if params else "") + f" on topology {scenario.topology}; "
            f"ticket: {scenario.ticket}")
