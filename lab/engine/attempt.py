"""Starting an attempt, for a trainee (`lab start`) and a playbook run alike: bring the
scenario's lab up, then ask its supervisor to apply the faults and start the attempt.

The models and the fault catalog are imported where they are used: `lab start` has the
scenario checked by the launcher (``checked``), which holds them, and does not import
them itself (about 0.25 s of CPU per `lab start`)."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.engine import control, interrupts, lifecycle
from lab.errors import Interrupted, LabError
from lab.paths import SCENARIO_DIR

if TYPE_CHECKING:
    from pydantic import BaseModel

    from lab.model.scenario import FaultRef, Scenario

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
    from lab.model.scenario_check import check_scenario
    from lab.scoring.causes import CAUSE_IDS

    scenario, _ = check_scenario(path, params_models(), lifecycle.resolve_topology, CAUSE_IDS,
                                 lambda sc, topo: scenario_problems(sc, derive_roles(topo)))
    return path, scenario


def check_forced(refs: list[FaultRef], scenario: Scenario) -> None:
    """Faults forced with `--fault NAME:k=v,...`, checked before anything is built."""
    from lab.model.scenario_check import forced_problems
    from lab.model.topology import load_topology

    topo = load_topology(lifecycle.resolve_topology(scenario.topology),
                                   scenario.variant, scenario.overrides)
    problems = forced_problems(refs, params_models(), topo)
    if problems:
        raise LabError("\n  ".join(problems), hint="`lab faults` lists every fault and its "
                                                  "parameters")


@dataclass
class Planned:
    """What starting a checked scenario needs of it (a Scenario has the same fields)."""

    name: str
    topology: str
    variant: str | None
    overrides: dict[str, Any] | None


def checked(ref: str, fault_texts: list[str]) -> tuple[Path, Planned | Scenario, list[dict]]:
    """`lab start`'s checks: the scenario as a whole (``load``) and the faults forced with
    `--fault` (``check_forced``); the scenario's path, what starting it needs, and the
    forced faults. Done by the launcher, which has the models imported; here when no
    launcher is to be had (LAB_LAUNCHER=off)."""
    if os.environ.get("LAB_LAUNCHER") != "off":
        from lab.engine import launcher

        with contextlib.suppress(launcher.Unavailable):
            reply = launcher.check_scenario(ref, fault_texts)
            return Path(reply["path"]), Planned(**reply["plan"]), reply["forced"]
    return check_here(ref, fault_texts)


def check_here(ref: str, fault_texts: list[str]) -> tuple[Path, Scenario, list[dict]]:
    from lab.model.scenario_check import parse_forced

    forced = [parse_forced(text) for text in fault_texts]
    path, scenario = load(ref)
    check_forced(forced, scenario)
    return path, scenario, [f.model_dump() for f in forced]


def start_attempt(path: Path, scenario: Scenario | Planned, lab: str, seed: int,
                  trainee: str = TRAINEE, faults: list[FaultRef | dict] | None = None,
                  uid: int | None = None) -> dict[str, Any]:
    """Up the lab and start the attempt (``faults`` forces faults instead of the seed's
    draw: FaultRefs or their dumps); returns the ticket. ``uid``: the Unix user who may
    work on it without root (the trainee channel). A failed start leaves no lab."""
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
                               faults=[f if isinstance(f, dict) else f.model_dump()
                                       for f in faults or []],
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
