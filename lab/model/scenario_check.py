"""A scenario checked as a whole before anything is built: the file itself, its fault names
and each fault's parameters (against the fault's own ``Params`` model), its topology with
the variant and the overrides applied. Every problem names file, line and field.

The fault catalog and the topology folder come from the caller (``lab.engine.attempt``), so
that the model layer does not depend on the faults.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from lab.errors import LabError
from lab.model.scenario import FaultRef, Scenario, check_cause_names, check_fault_names
from lab.model.source import (
    FileError,
    Lines,
    Loc,
    Pos,
    Problem,
    field_name,
    read_yaml,
    row,
    sort_problems,
    validate,
)
from lab.model.topology import Layer, Topology, load_topology

ParamsModels = Mapping[str, type[BaseModel]]  # fault name -> its Params model
# the faults' own check of a scenario on the topology it builds (which link, host, rule)
OnTopology = Callable[[Scenario, Topology], list[tuple[Loc, str]]]


def params_problems(ref: FaultRef, models: ParamsModels, loc: Loc = ()
                    ) -> list[tuple[Loc, str]]:
    """A fault's parameters checked against its ``Params`` model (fields at ``loc``)."""
    model = models.get(ref.fault)
    if model is None:
        return []
    try:
        model.model_validate(ref.params)
    except ValidationError as e:
        return [((*loc, "params", *err["loc"]), err["msg"].removeprefix("Value error, "))
                for err in e.errors()]
    return []


def node_problems(ref: FaultRef, topo: Topology, loc: Loc = ()) -> list[tuple[Loc, str]]:
    """A ``node`` parameter that names no node of the topology."""
    node = ref.params.get("node")
    if isinstance(node, str) and node not in topo.nodes:
        known = ", ".join(sorted(topo.nodes))
        return [((*loc, "params", "node"), f"unknown node '{node}' (nodes: {known})")]
    return []


def check_scenario(path: Path, models: ParamsModels, topology_path: Callable[[str], Path],
                   causes: set[str] | frozenset[str] = frozenset(),
                   on_topology: OnTopology | None = None) -> tuple[Scenario, Topology]:
    """The scenario and the topology it builds, or a FileError with every problem.

    ``causes`` is the menu (the cause ids ``accept`` may name); ``on_topology`` the faults'
    own check of their parameters against the built topology, run once everything else
    holds."""
    data, lines = read_yaml(path)
    scenario = validate(path, Scenario, data, lines)
    found = check_fault_names(scenario, set(models)) + check_cause_names(scenario, causes)
    for loc, ref in scenario.fault_refs():
        found += params_problems(ref, models, loc)
    problems = [row(lines, loc, msg) for loc, msg in found]
    topo, topo_problems = _topology(path, scenario, data, lines, topology_path)
    problems += topo_problems
    if topo is not None:
        for loc, ref in scenario.fault_refs():
            problems += [row(lines, at, msg) for at, msg in node_problems(ref, topo, loc)]
    if not problems and topo is not None and on_topology is not None:
        problems = [row(lines, at, msg) for at, msg in on_topology(scenario, topo)]
    if problems:
        raise FileError(path, sort_problems(problems))
    assert topo is not None
    return scenario, topo


def _topology(path: Path, scenario: Scenario, data: dict[str, Any], lines: Lines,
              topology_path: Callable[[str], Path]) -> tuple[Topology | None, list[Problem]]:
    """The scenario's topology built on paper: the variant, then the overrides."""
    try:
        topo_file = topology_path(scenario.topology)
    except LabError as e:
        return None, [row(lines, ("topology",), e.message + (f" ({e.hint})" if e.hint else ""))]
    overrides = Layer(data.get("overrides") or {}, path, lines, ("overrides",))
    try:
        base = load_topology(topo_file)
        if scenario.variant is not None and scenario.variant not in base.variants:
            names = ", ".join(sorted(base.variants)) or "none"
            return None, [row(lines, ("variant",), f"topology {scenario.topology} has no "
                                                   f"variant '{scenario.variant}' "
                                                   f"(variants: {names})")]
        return load_topology(topo_file, scenario.variant, overrides), []
    except FileError as e:
        return None, [_in_scenario(path, topo_file, p) for p in e.problems]


def _in_scenario(path: Path, topo_file: Path, problem: Problem) -> Problem:
    """A problem of the topology file, told from the scenario: lines of the topology file
    name it, lines of the scenario (its overrides) are the scenario's own."""
    line, field, message = problem
    if isinstance(line, Pos) and line.path == path:
        return line.line, field, message
    if isinstance(line, int):
        return Pos(line, topo_file), field, message
    return line, field, message


def forced_problems(refs: list[FaultRef], models: ParamsModels,
                    topo: Topology | None = None) -> list[str]:
    """What is wrong with faults forced on the command line (`--fault NAME:k=v,...`)."""
    out = []
    for ref in refs:
        if ref.fault not in models:
            out.append(f"--fault: unknown fault '{ref.fault}' (see `lab faults`)")
            continue
        found = params_problems(ref, models)
        found += node_problems(ref, topo) if topo is not None else []
        for loc, msg in found:
            out.append(f"--fault {ref.fault}: {field_name(loc[1:]) or 'params'}: {msg}")
    return out


def parse_forced(text: str) -> FaultRef:
    """``NAME`` or ``NAME:key=value,key=value`` (a comma-separated part without ``=``
    continues the value before it, so ``servers=10.1.0.26,10.1.0.27`` is one value)."""
    name, _, rest = text.partition(":")
    params: dict[str, str] = {}
    key = None
    for part in rest.split(",") if rest else []:
        k, sep, value = part.partition("=")
        if sep and k.strip():
            key = k.strip()
            params[key] = value
        elif key is not None and not sep:
            params[key] += "," + part
        else:
            key = None
            break
    try:
        if rest and key is None:
            raise ValueError("bad parameters")
        return FaultRef(fault=name, params=params)
    except ValueError:
        raise LabError(f"bad --fault '{text}'",
                       hint="--fault NAME or --fault NAME:key=value,key=value "
                            "(`lab faults` lists names and parameters)") from None
