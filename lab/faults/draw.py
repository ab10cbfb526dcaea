"""Drawing a scenario's faults, and their specifics, from a seed.

Every entry of a scenario's ``faults`` is a slot: a fixed fault, or a pool from which
``pick`` faults are drawn. A slot's options are its faults (combinations of ``pick`` for a
pool) times their variants (the params that change what the trainee must find: which
link, which rule, which mode; see ``Fault.variants``). The seed indexes the scenario's
combinations of options in an order shuffled once per scenario, so the same seed always
gives the same faults, and N consecutive seeds give N different answer keys before any
repeats (N = the number of combinations): in a class, neighbours' answers differ. The
params that do not change the answer (which wrong address, the loss rate) are then drawn
from the seed by each fault. Explicit params of the scenario win over drawn ones.
"""
from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lab.errors import LabError
from lab.faults import get_fault
from lab.faults.base import Fault
from lab.model.roles import Roles
from lab.model.scenario import FaultItem, FaultRef, Scenario

MAX_COMBINATIONS = 100_000

Option = tuple[tuple[FaultRef, dict[str, Any]], ...]  # (ref, variant) per fault of a slot


@dataclass(frozen=True)
class Drawn:
    """One fault to apply, with every param set."""

    fault: Fault
    params: Any

    def answer_key(self, roles: Roles) -> tuple:
        return self.fault.answer_key(self.params, roles)


def _variants(ref: FaultRef, roles: Roles) -> list[dict[str, Any]]:
    fault = get_fault(ref.fault)
    given = fault.Params.model_validate(ref.params)
    fixed = {k: getattr(given, k) for k in given.model_fields_set}
    return fault.compatible_variants(roles, fixed)


def _options(refs: list[FaultRef], pick: int, roles: Roles) -> list[Option]:
    out: list[Option] = []
    for chosen in itertools.combinations(refs, pick):
        per_fault = [[(ref, v) for v in _variants(ref, roles)] for ref in chosen]
        out += [tuple(combo) for combo in itertools.product(*per_fault)]
    return out


def slots(items: Iterable[FaultItem], roles: Roles) -> list[list[Option]]:
    """Each entry's options (see the module docstring)."""
    out = []
    for item in items:
        if item.from_ is None:
            out.append(_options([item.as_ref()], 1, roles))
        else:
            assert item.pick is not None
            out.append(_options(list(item.from_), item.pick, roles))
    return out


def _combinations(scenario_name: str, all_slots: list[list[Option]]) -> list[tuple[Option, ...]]:
    count = math.prod(len(s) for s in all_slots)
    if count > MAX_COMBINATIONS:
        raise LabError(f"scenario {scenario_name}: {count} combinations of faults are too many "
                       f"to draw from (at most {MAX_COMBINATIONS})")
    combos = list(itertools.product(*all_slots))
    random.Random(f"pools:{scenario_name}").shuffle(combos)
    return combos


def _resolve(ref: FaultRef, variant: dict[str, Any] | None, roles: Roles, seed: int,
             tag: str) -> Drawn:
    fault = get_fault(ref.fault)
    rng = random.Random(f"{seed}:{tag}:{ref.fault}")
    return Drawn(fault, fault.resolve(roles, ref.params, rng, variant))


def draw_faults(scenario: Scenario, seed: int, roles: Roles,
                forced: list[FaultRef] | None = None) -> tuple[list[Drawn], list[Drawn]]:
    """(the faults, the red herrings) for this seed. ``forced`` (an instructor's
    ``--fault``) replaces the scenario's faults and is drawn like fixed entries."""
    items = [FaultItem(fault=r.fault, params=r.params) for r in forced] if forced else \
        list(scenario.faults)
    combos = _combinations(scenario.name, slots(items, roles))
    chosen = [pair for option in combos[seed % len(combos)] for pair in option]
    faults = [_resolve(ref, variant, roles, seed, str(i))
              for i, (ref, variant) in enumerate(chosen)]
    herrings = [_resolve(ref, None, roles, seed, f"herring{k}")
                for k, ref in enumerate(scenario.red_herrings)]
    return faults, herrings


def possible_answer_keys(scenario: Scenario, roles: Roles) -> set[tuple]:
    """Every answer key (one per fault, sorted) the scenario's pools can give."""
    out = set()
    for combo in _combinations(scenario.name, slots(scenario.faults, roles)):
        keys = [_resolve(ref, variant, roles, 0, "key").answer_key(roles)
                for option in combo for ref, variant in option]
        out.add(tuple(sorted(keys)))
    return out


def answer_key(drawn: list[Drawn], roles: Roles) -> tuple:
    return tuple(sorted(d.answer_key(roles) for d in drawn))


def scenario_problems(scenario: Scenario, roles: Roles) -> list[tuple[tuple, str]]:
    """What keeps a scenario's faults from being drawn on its topology, each with the
    location of the fault in the file: bad params, roles the topology lacks."""
    from pydantic import ValidationError

    found: list[tuple[tuple, str]] = []
    for loc, ref in scenario.fault_refs():
        fault = get_fault(ref.fault)
        try:
            for variant in _variants(ref, roles):
                fault.answer(fault.resolve(roles, ref.params, random.Random(0), variant), roles)
        except ValidationError as e:
            found += [((*loc, "params", *err["loc"]), err["msg"]) for err in e.errors()]
        except LabError as e:
            found.append(((*loc, "fault"), e.message))
    return found
