"""Starting an attempt, for a trainee (`lab start`) and a playbook run alike: bring the
scenario's lab up, then ask its supervisor to apply the faults and start the attempt."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from lab.engine import control, interrupts, lifecycle
from lab.errors import Interrupted, LabError
from lab.model.scenario import FaultRef, Scenario
from lab.model.scenario_check import check_scenario, forced_problems
from lab.model.topology import load_topology
from lab.paths import SCENARIO_DIR

TRAINEE = "playbook"


def scenario_path(ref: str) -> Path:
    return lifecycle.resolve_file(ref, SCENARIO_DIR, "scenario")


def params_models() -> dict[str, type[BaseModel]]:
    """Each fault of the catalog by name, as the model of its parameters."""
    from lab.faults import CATALOG

    return {name: fault.Params for name, fault in CATALOG.items()}


def load(ref: str) -> tuple[Path, Scenario]:
    """A scenario checked as a whole (faults, parameters, topology, variant, overrides)
    without building anything: `lab scenario validate` and, before building, `lab start`."""
    path = scenario_path(ref)
    from lab.faults.draw import scenario_problems
    from lab.model.roles import derive_roles
    from lab.scoring.causes import CAUSE_IDS

    scenario, _ = check_scenario(path, params_models(), lifecycle.resolve_topology, CAUSE_IDS,
                                 lambda sc, topo: scenario_problems(sc, derive_roles(topo)))
    return path, scenario


def check_forced(refs: list[FaultRef], scenario: Scenario) -> None:
    """Faults forced with `--fault NAME:k=v,...`, checked before anything is built."""
    topo = load_topology(lifecycle.resolve_topology(scenario.topology),
                                   scenario.variant, scenario.overrides)
    problems = forced_problems(refs, params_models(), topo)
    if problems:
        raise LabError("\n  ".join(problems), hint="`lab faults` lists every fault and its "
                                                  "parameters")


def start_attempt(path: Path, scenario: Scenario, lab: str, seed: int,
                  trainee: str = TRAINEE, faults: list[FaultRef] | None = None,
                  uid: int | None = None) -> dict[str, Any]:
    """Up the lab and start the attempt (``faults`` forces faults instead of the seed's
    draw); returns the ticket. ``uid``: the Unix user who may work on it without root
    (the trainee channel). A failed start leaves no lab."""
    try:
        state = lifecycle.up(scenario.topology, lab, variant=scenario.variant,
                             overrides=scenario.overrides or None)
    except Interrupted as e:
        if e.lab_is_up is None:
            raise
        take_down(e.lab_is_up)  # up, but no attempt yet: Ctrl-C stops the whole start
        raise Interrupted(f"lab '{lab}' was up but no attempt had started: it is taken "
                          "down again") from None
    try:
        return control.request(state.lab, "attempt_start", timeout=60,
                               scenario=str(path.resolve()), seed=seed,
                               faults=[f.model_dump() for f in faults or []],
                               trainee=trainee, uid=uid)
    except KeyboardInterrupt:
        take_down(state.lab)
        raise Interrupted(f"the start of lab '{state.lab}' was stopped; the lab is taken "
                          "down again") from None
    except BaseException:
        take_down(state.lab)
        raise


def take_down(lab: str) -> None:
    """Down a lab (one whose start failed or was interrupted, a finished one), by
    ownership if its supervisor does not answer; a second Ctrl-C waits for it."""
    with interrupts.held():
        try:
            lifecycle.down(lab)
        except LabError:
            lifecycle.clean_one(lab, force=True)


@contextlib.contextmanager
def attempt_lab(path: Path, scenario: Scenario, lab: str, seed: int) -> Iterator[dict]:
    """A running attempt for the ``with`` block; the lab is down afterwards, whatever
    happened (an error, Ctrl-C)."""
    ticket = start_attempt(path, scenario, lab, seed)
    try:
        yield ticket
    finally:
        take_down(lab)
