"""Starting an attempt, for a trainee (`lab start`) and a playbook run alike: bring the
scenario's lab up, then ask its supervisor to apply the faults and start the attempt."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lab.engine import control, lifecycle
from lab.errors import LabError
from lab.model.scenario import Scenario, load_scenario

TRAINEE = "playbook"


def scenario_path(ref: str) -> Path:
    return lifecycle.resolve_file(ref, lifecycle.SCENARIO_DIR, "scenario")


def load(ref: str) -> tuple[Path, Scenario]:
    from lab.faults import CATALOG

    path = scenario_path(ref)
    return path, load_scenario(path, set(CATALOG))


def start_attempt(path: Path, scenario: Scenario, lab: str, seed: int,
                  trainee: str = TRAINEE, faults: list[str] | None = None,
                  uid: int | None = None) -> dict[str, Any]:
    """Up the lab and start the attempt (``faults`` forces faults instead of the seed's
    draw); returns the ticket. ``uid``: the Unix user who may work on it without root
    (the trainee channel). A failed start leaves no lab."""
    state = lifecycle.up(scenario.topology, lab, variant=scenario.variant,
                         overrides=scenario.overrides or None)
    try:
        return control.request(state.lab, "attempt_start", timeout=60,
                               scenario=str(path.resolve()), seed=seed, faults=faults or [],
                               trainee=trainee, uid=uid)
    except BaseException:
        lifecycle.down(state.lab)
        raise


@contextlib.contextmanager
def attempt_lab(path: Path, scenario: Scenario, lab: str, seed: int) -> Iterator[dict]:
    """A running attempt for the ``with`` block; the lab is down afterwards, whatever
    happened (an error, Ctrl-C)."""
    ticket = start_attempt(path, scenario, lab, seed)
    try:
        yield ticket
    finally:
        try:
            lifecycle.down(lab)
        except LabError:
            lifecycle.clean_one(lab, force=True)
