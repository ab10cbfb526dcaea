"""What a fault is, and what it may touch in a running lab.

A fault is a named, parameterised change to a running lab with an ``apply`` and a
``revert`` (each idempotent; revert leaves the lab exactly as before), the answer key it
implies (a cause from lab/scoring/causes.py plus the node where it lives), and the
symptom a trainee should be able to observe. Faults run inside the lab's supervisor.

Rule 4 (DESIGN.md): nothing a fault writes may name the fault: no comments, marker
files, process arguments or log lines that give it away. Faults change what a real
outage would change (a zone file's record, a rule missing from the ruleset, a route).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from lab.model.topology import Topology
from lab.services.base import NodeContext, Service


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class AnswerKey:
    cause: str  # an id from lab.scoring.causes
    node: str


@dataclass
class LabContext:
    """The running lab as a fault sees it.

    ``topo`` is the topology as built (the healthy baseline); ``service(node, kind)`` the
    running service objects (their current configs may already carry other faults);
    ``node(name)`` the node's files and sockets; ``run(node, argv, stdin)`` runs a command
    inside a node and returns (rc, stdout, stderr).
    """

    topo: Topology
    service: Callable[[str, str], Service]
    node: Callable[[str], NodeContext]
    run: Callable[[str, list[str], str | None], tuple[int, str, str]]


class Fault:
    """One entry of the catalog. Subclasses set the class attributes and implement the
    three methods; ``Params`` is a pydantic model with defaults for every field."""

    name: str = ""
    family: str = ""
    description: str = ""  # for instructors: what is broken
    symptom: str = ""  # what a trainee can observe, in one line
    Params: type[BaseModel] = NoParams

    def answer(self, params: Any) -> AnswerKey:
        raise NotImplementedError

    async def apply(self, lab: LabContext, params: Any) -> None:
        raise NotImplementedError

    async def revert(self, lab: LabContext, params: Any) -> None:
        raise NotImplementedError
