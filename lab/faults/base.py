"""What a fault is, and what it may touch in a running lab.

A fault is a named, parameterised change to a running lab with an ``apply`` and a
``revert`` (each idempotent; revert leaves the lab exactly as before), the cause (or
causes) it declares for the menu of diagnoses, the answer key it implies (a cause plus the
node where it lives, read from the topology's roles), the symptom a trainee should be able
to observe, ``check_repaired`` (is its own symptom gone, judged from the lab's state), and
``draw`` (its specifics drawn from a seed). Faults run inside the lab's supervisor.

Rule 4 (docs/design.md): nothing a fault writes may name the fault: no comments, marker
files, process arguments or log lines that give it away. Faults change what a real
outage would change (a zone file's record, a rule missing from the ruleset, a route).
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from lab.model.roles import Roles, derive_roles, render
from lab.model.topology import Topology
from lab.services.base import NodeContext, Service

Layer = Literal["dns", "network", "firewall", "server"]
# the order the method checks them in, and the order of the menu
LAYERS: tuple[Layer, ...] = ("dns", "network", "firewall", "server")


@dataclass(frozen=True)
class Cause:
    """One entry of the menu of diagnoses: a stable id, a short label, a one-line
    description, the layer. Declared by the faults (``Fault.causes``); the menu that
    `lab causes` shows is derived from the catalog (lab/scoring/causes.py)."""

    id: str
    label: str
    description: str
    layer: Layer


@dataclass(frozen=True)
class AnswerKey:
    cause: str  # the id of one of the fault's declared causes
    node: str


@dataclass(frozen=True)
class Repair:
    """Whether a fault's own symptom is gone, and how that was checked, in words
    ("ping from ext-ws to 203.0.113.25 answered")."""

    repaired: bool
    how: str


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class LabContext:
    """The running lab as a fault sees it.

    ``topo`` is the topology as built (the healthy baseline) and ``roles`` what its nodes
    are for; ``service(node, kind)`` the running service objects (their current configs
    may already carry other faults); ``node(name)`` the node's files and sockets;
    ``run(node, argv, stdin)`` runs a command inside a node and returns (rc, stdout,
    stderr). ``run`` blocks: async code that must not stall the lab's services (which
    run on the same loop) goes through ``lab.faults._checks.run_async``.
    """

    topo: Topology
    service: Callable[[str, str], Service]
    node: Callable[[str], NodeContext]
    run: Callable[[str, list[str], str | None], tuple[int, str, str]]

    @cached_property
    def roles(self) -> Roles:
        return derive_roles(self.topo)


class Fault:
    """One entry of the catalog. Subclasses set the class attributes and implement
    ``apply``, ``revert`` and ``check_repaired``.

    ``Params`` is a pydantic model whose fields all default (None meaning "drawn");
    ``where`` names the role whose node the answer key points at; ``key_params`` are the
    params that change *what the trainee must find* (which host, interface, rule, mode):
    ``variants(roles)`` lists their possible values, and the answer keys a scenario can
    give are counted over them. ``drawn(rng, roles)`` draws the other params (which wrong
    address, the loss rate). ``description`` and ``symptom`` are templates with
    ``${roles.NAME}`` and ``${params.NAME}`` placeholders (``render_symptom``).
    """

    name: str = ""
    family: str = ""
    description: str = ""  # for instructors: what is broken
    symptom: str = ""  # what a trainee can observe, in one line
    causes: tuple[Cause, ...] = ()
    where: str = ""  # the role naming the answer key's node
    key_params: tuple[str, ...] = ()
    Params: type[BaseModel] = NoParams

    # --- the answer key --------------------------------------------------------------
    def answer(self, params: Any, roles: Roles) -> AnswerKey:
        return AnswerKey(self.causes[0].id, roles.need(self.where))

    def render_symptom(self, roles: Roles, params: Any | None = None) -> str:
        return render(self.symptom, self.values(roles, params), roles.topology)

    def render_description(self, roles: Roles, params: Any | None = None) -> str:
        return render(self.description, self.values(roles, params), roles.topology)

    @staticmethod
    def values(roles: Roles, params: Any | None) -> dict[str, str]:
        out = roles.vars()
        if params is not None:
            for key, value in params.model_dump(mode="json").items():
                if value is not None:
                    out[f"params.{key}"] = (", ".join(map(str, value)) if isinstance(value, list)
                                            else str(value))
        return out

    # --- drawing the specifics from a seed ---------------------------------------------
    def variants(self, roles: Roles) -> list[dict[str, Any]]:
        """The possible values of ``key_params`` on this topology (at least one)."""
        return [{}]

    def drawn(self, rng: random.Random, roles: Roles) -> dict[str, Any]:
        """The params that vary without changing the answer (default: none)."""
        return {}

    def draw(self, rng: random.Random, roles: Roles, variant: dict[str, Any] | None = None
             ) -> Any:
        """Every param, drawn: ``variant`` (or one drawn from ``variants``) plus ``drawn``."""
        if variant is None:
            variant = rng.choice(self.variants(roles))
        return self.Params.model_validate({**self.drawn(rng, roles), **variant})

    def resolve(self, roles: Roles, explicit: dict[str, Any] | None = None,
                rng: random.Random | None = None, variant: dict[str, Any] | None = None) -> Any:
        """The params to apply: ``explicit`` ones (a scenario's, the command line's) win
        over drawn ones. Without ``rng`` the draw uses seed 0, so that `lab fault apply`
        and `lab fault revert` without params resolve to the same fault."""
        given = self.Params.model_validate(explicit or {})
        fixed = {k: getattr(given, k) for k in given.model_fields_set}
        rng = rng if rng is not None else random.Random(0)
        if variant is None:
            variant = rng.choice(self.compatible_variants(roles, fixed))
        params = self.draw(rng, roles, variant).model_copy(update=fixed)
        self.validate(params, roles)
        return params

    def validate(self, params: Any, roles: Roles) -> None:
        """A LabError if ``params`` cannot apply to this topology (an interface it does
        not have, ...), found before anything is applied."""

    def compatible_variants(self, roles: Roles, fixed: dict[str, Any]) -> list[dict[str, Any]]:
        """The variants that agree with explicitly given params ([{}] if none does)."""
        out = [v for v in self.variants(roles)
               if all(str(fixed[k]) == str(val) for k, val in v.items() if k in fixed)]
        return out or [{}]

    def answer_key(self, params: Any, roles: Roles) -> tuple:
        """(cause, node, key params...): what a trainee must find, for counting variety."""
        key = self.answer(params, roles)
        return (key.cause, key.node, *(str(getattr(params, k)) for k in self.key_params))

    # --- the change itself ---------------------------------------------------------------
    async def apply(self, lab: LabContext, params: Any) -> None:
        raise NotImplementedError

    async def revert(self, lab: LabContext, params: Any) -> None:
        raise NotImplementedError

    async def check_repaired(self, lab: LabContext, params: Any) -> Repair:
        """Is this fault's own symptom gone? Judged from the lab's current state (whoever
        changed it back); ``how`` says what was checked and what it showed."""
        raise NotImplementedError
