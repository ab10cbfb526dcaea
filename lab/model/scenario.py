"""The scenario file: a topology, its faults, a trouble ticket, hints, what counts as right.

Plain data. The variant and overrides are checked by ``load_topology`` when the engine
builds the lab. Fault names are checked against the fault catalog by the caller
(``load_scenario(path, known_faults, known_causes)``, ``check_fault_names``,
``check_cause_names``) so that this model depends neither on the catalog nor on the menu of
causes derived from it.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lab.model.history import History
from lab.model.rubric import Rubric
from lab.model.source import (
    FileError,
    Loc,
    field_name,
    line_for,
    read_yaml,
    row,
    sort_problems,
    validate,
)

NAME_PATTERN = r"^[a-z][a-z0-9-]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FaultRef(Strict):
    """One fault to apply: a catalog name and its parameters."""

    fault: str = Field(pattern=NAME_PATTERN)
    params: dict[str, Any] = {}

    def key(self) -> tuple[str, str]:
        return self.fault, repr(sorted(self.params.items()))


class FaultItem(Strict):
    """An entry of ``faults``: a fixed fault (``fault``, ``params``) or a pool
    (``pick``, ``from``) from which ``pick`` faults are drawn by the seed.

    One model rather than a union so that errors point at the entry's own fields.
    """

    fault: str | None = Field(None, pattern=NAME_PATTERN)
    params: dict[str, Any] = {}
    pick: int | None = Field(None, ge=1)
    from_: list[FaultRef] | None = Field(None, alias="from", min_length=1)

    @model_validator(mode="after")
    def _one_shape(self) -> FaultItem:
        pool = self.pick is not None or self.from_ is not None
        if pool and (self.fault is not None or self.params):
            raise ValueError("an entry is either a fault (fault, params) or a pool "
                             "(pick, from), not both")
        if pool and (self.pick is None or self.from_ is None):
            raise ValueError("a pool needs both 'pick' and 'from'")
        if not pool and self.fault is None:
            raise ValueError("an entry needs 'fault' (a fixed fault) or 'pick' and 'from' "
                             "(a pool)")
        return self

    @property
    def is_pool(self) -> bool:
        return self.from_ is not None

    def as_ref(self) -> FaultRef:
        assert self.fault is not None
        return FaultRef(fault=self.fault, params=self.params)


class Hint(Strict):
    text: str = Field(min_length=1)
    cost: int = Field(ge=0)


class Accept(Strict):
    """Per-cause overrides: for a fault whose true cause is the key, the listed causes
    count as right (``right``) or partially right (``partial``) at any node."""

    right: dict[str, list[str]] = {}
    partial: dict[str, list[str]] = {}


class Scenario(Strict):
    name: str = Field(pattern=NAME_PATTERN, max_length=40)
    title: str = Field(min_length=1)
    topology: str = Field(pattern=NAME_PATTERN)
    # a variant of the topology file (e.g. "inbound-to"), then ``overrides`` laid over it:
    # both go to ``load_topology(path, variant, overrides)``, which validates them
    variant: str | None = Field(None, pattern=NAME_PATTERN)
    overrides: dict[str, Any] = {}
    faults: list[FaultItem] = Field(min_length=1)
    ticket: str = Field(min_length=1)
    hints: list[Hint] = []
    time_limit: int = Field(ge=1, description="minutes")
    accept: Accept = Accept()
    rubric: Rubric = Rubric()
    expect_playbooks: list[str] = []
    red_herrings: list[FaultRef] = []
    # what `lab submit` answers: "recorded" only (the default: nothing to bisect the menu
    # with), or with "immediate" right or wrong (never "partly")
    feedback: Literal["recorded", "immediate"] = "recorded"
    # how long the trouble has lasted ("since this morning") and which of its traces the
    # ticket promises: lab start replays that much traffic under the faults
    history: History = History()

    def fault_refs(self) -> Iterator[tuple[Loc, FaultRef]]:
        """Every fault the file names (fixed, in pools, red herrings) with its location."""
        for i, item in enumerate(self.faults):
            if item.from_ is not None:
                for j, ref in enumerate(item.from_):
                    yield ("faults", i, "from", j), ref
            else:
                yield ("faults", i), item.as_ref()
        for k, ref in enumerate(self.red_herrings):
            yield ("red_herrings", k), ref

    def problems(self, known_faults: set[str] | None = None,
                 known_causes: set[str] | frozenset[str] | None = None
                 ) -> list[tuple[Loc, str]]:
        """Checks across fields; with ``known_faults`` / ``known_causes`` also the fault
        names and the cause ids of ``accept``."""
        found = self._pool_problems() + self._duplicate_problems()
        seen: set[str] = set()
        for i, name in enumerate(self.expect_playbooks):
            if name in seen:
                found.append((("expect_playbooks", i), f"playbook '{name}' is listed twice"))
            seen.add(name)
        if known_faults is not None:
            found += check_fault_names(self, known_faults)
        if known_causes is not None:
            found += check_cause_names(self, known_causes)
        return found

    def _pool_problems(self) -> list[tuple[Loc, str]]:
        found: list[tuple[Loc, str]] = []
        for i, item in enumerate(self.faults):
            if item.from_ is not None and item.pick is not None and item.pick > len(item.from_):
                found.append((("faults", i, "pick"),
                              f"cannot pick {item.pick} from a pool of {len(item.from_)}"))
        return found

    def _duplicate_problems(self) -> list[tuple[Loc, str]]:
        found: list[tuple[Loc, str]] = []
        seen: dict[tuple[str, str], str] = {}
        for loc, ref in self.fault_refs():
            where = field_name(loc)
            if ref.key() in seen:
                msg = f"'{ref.fault}' with these params is already listed at {seen[ref.key()]}"
                found.append(((*loc, "fault"), msg))
            seen.setdefault(ref.key(), where)
        return found


def check_cause_names(scenario: Scenario, known: set[str] | frozenset[str]
                      ) -> list[tuple[Loc, str]]:
    """Cause ids in ``accept`` that the menu does not know, each with its location."""
    found: list[tuple[Loc, str]] = []
    for kind in ("right", "partial"):
        table: dict[str, list[str]] = getattr(scenario.accept, kind)
        for cause, others in table.items():
            loc: Loc = ("accept", kind, cause)
            if cause not in known:
                found.append((loc, f"unknown cause '{cause}' (see `lab causes`)"))
            for j, other in enumerate(others):
                if other not in known:
                    found.append(((*loc, j), f"unknown cause '{other}' (see `lab causes`)"))
                elif other == cause:
                    found.append(((*loc, j), f"'{other}' is the cause itself"))
    return found


def check_fault_names(scenario: Scenario, known: set[str]) -> list[tuple[Loc, str]]:
    """Fault names the catalog does not know, each with its location."""
    return [((*loc, "fault"), f"unknown fault '{ref.fault}' (see `lab faults`)")
            for loc, ref in scenario.fault_refs() if ref.fault not in known]


def load_scenario(path: Path, known_faults: set[str] | None = None,
                  known_causes: set[str] | frozenset[str] | None = None) -> Scenario:
    """A validated scenario, or a FileError listing every problem with line and field.

    Fault names and cause ids are checked (when ``known_faults`` / ``known_causes`` are
    given) once the file is otherwise valid, since they need a parsed model to be found.
    The whole check, parameters and topology included, is
    ``lab.model.scenario_check.check_scenario``.
    """
    data, lines = read_yaml(path)
    scenario = validate(path, Scenario, data, lines)
    found = []
    if known_faults is not None:
        found += check_fault_names(scenario, known_faults)
    if known_causes is not None:
        found += check_cause_names(scenario, known_causes)
    if found:
        raise FileError(path, sort_problems(row(lines, loc, msg) for loc, msg in found))
    return scenario


def load_scenarios(directory: Path, known_faults: set[str] | None = None,
                   known_causes: set[str] | frozenset[str] | None = None
                   ) -> dict[str, Scenario]:
    """Every ``*.yaml`` scenario in a directory by name; names must be unique and match
    their file name so that ``lab start NAME`` finds the file."""
    out: dict[str, Scenario] = {}
    for path in sorted(directory.glob("*.yaml")):
        scenario = load_scenario(path, known_faults, known_causes)
        if scenario.name != path.stem:
            _, lines = read_yaml(path)
            msg = f"'{scenario.name}' does not match the file name '{path.stem}'"
            raise FileError(path, [(line_for(lines, ("name",)), "name", msg)])
        out[scenario.name] = scenario
    return out
