"""The playbook file: ordered diagnostic steps that extract facts, and conclusions that map
conditions on those facts to a cause from the cause list and a node.

Plain data. Facts referenced by conditions are checked against what earlier steps can
produce, cause ids against the menu the caller passes (``load_playbook(path, causes)``,
so that the model does not depend on the fault catalog) and node names against the playbook's
topologies, so that a broken playbook fails with file, line and field before any lab starts.

A playbook may run on several topologies, or on any (``topologies: any``) that has the
roles it ``needs``: then it names nodes, addresses and domains by their roles,
``${roles.NAME}`` (lab/model/roles.py), anywhere a ``${fact}`` may stand, and in a step's
or a conclusion's ``node``. A step that needs a role the lab's topology lacks is skipped.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lab.model.roles import ROLE_FIELDS
from lab.model.source import Loc, load_checked, raise_found

NAME_PATTERN = r"^[a-z][a-z0-9-]*$"
STEP_PATTERN = r"^[a-z][a-z0-9_-]*$"
FACT_PATTERN = r"^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)?$"

# what each built-in probe reports, as `<step id>.<field>` (see lab/playbooks/probe.py);
# every probe also sets `error` when it could not run at all (hooks.parse_probe)
PROBE_FIELDS: dict[str, tuple[str, ...]] = {
    "dns": ("status", "rcode", "aa", "answers", "count", "ttl", "ns", "glue", "error"),
    "tcp": ("result", "error"),
    "smtp": ("result", "stage", "banner", "helo", "mail", "rcpt", "data", "body", "last",
             "reply", "error"),
    "ping": ("sent", "received", "loss", "error"),
    "arp": ("result", "mac", "interface", "error"),
}
ACTIONS = ("run", "dns", "tcp", "smtp", "ping", "arp", "hook")
# facts every step sets: its exit code; `output` (the text) for run and hook steps only
STEP_FACTS = ("rc",)
TEXT_FACTS = ("output",)
# facts a step with `until` sets: whether the condition held, after how long, how many runs
UNTIL_FACTS = ("held", "waited", "tries")
UNTIL_EVERY = 1.0  # seconds between two runs of a step with `until`
UNTIL_WITHIN = 30.0  # seconds after which it gives up (`<id>.held` false)


def _valid_regex(text: str) -> str:
    try:
        re.compile(text)
    except (re.error, OverflowError, RecursionError) as e:
        raise ValueError(f"not a regular expression: {e}") from None
    return text


# a fact named in a string: ``${step.fact}`` (run arguments, hook args, ``because``), or a
# role of the lab's topology: ``${roles.mail_host}``
REF = re.compile(r"\$\{([a-z][a-z0-9_.-]*)\}")
ROLE_PREFIX = "roles."
DEFAULT_TOPOLOGY = "mail-dmz"  # a playbook that names no topology: the reference


def role_of(reference: str) -> str | None:
    """``mail_host`` for ``roles.mail_host``; None for a fact."""
    return reference[len(ROLE_PREFIX):] if reference.startswith(ROLE_PREFIX) else None


def regex_with_placeholders(text: str) -> str:
    """A fact's regex checked with each ``${...}`` standing for plain text."""
    return REF.sub("x", text)


def references(value: Any) -> list[str]:
    """The fact names a value refers to with ``${fact}``."""
    if isinstance(value, str):
        return REF.findall(value)
    if isinstance(value, list):
        return [r for v in value for r in references(v)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in references(v)]
    return []


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- conditions -------------------------------------------------------------------------


class Condition(Strict):
    """One test on facts: a leaf (``fact`` plus one test) or a combination
    (``all``, ``any``, ``not``). One model rather than a union so that errors point at the
    condition's own fields."""

    fact: str | None = Field(None, pattern=FACT_PATTERN)
    equals: str | int | bool | None = None
    matches: str | None = None
    in_: list[str | int] | None = Field(None, alias="in", min_length=1)
    exists: bool | None = None
    lt: float | None = None
    gt: float | None = None
    all_: list[Condition] | None = Field(None, alias="all", min_length=1)
    any_: list[Condition] | None = Field(None, alias="any", min_length=1)
    not_: Condition | None = Field(None, alias="not")

    @field_validator("matches")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        return v if v is None else _valid_regex(v)

    @model_validator(mode="after")
    def _one_shape(self) -> Condition:
        tests = [k for k in ("equals", "matches", "in_", "exists", "lt", "gt")
                 if getattr(self, k) is not None]
        combos = [k for k in ("all_", "any_", "not_") if getattr(self, k) is not None]
        if self.fact is not None:
            if combos:
                raise ValueError("a condition is either a test on a fact or all/any/not, "
                                 "not both")
            if len(tests) != 1:
                raise ValueError("a test on a fact needs exactly one of equals, matches, in, "
                                 "exists, lt, gt")
        else:
            if tests:
                raise ValueError(f"'{tests[0].rstrip('_')}' needs 'fact'")
            if len(combos) != 1:
                raise ValueError("a condition needs 'fact' with a test, or exactly one of "
                                 "all, any, not")
        return self

    def facts(self, loc: Loc) -> list[tuple[Loc, str]]:
        """Every fact name this condition reads, with its location."""
        if self.fact is not None:
            out = [((*loc, "fact"), self.fact)]
            for key, alias in (("equals", "equals"), ("matches", "matches"), ("in_", "in")):
                out += [((*loc, alias), r) for r in references(getattr(self, key))]
            return out
        out: list[tuple[Loc, str]] = []
        for key in ("all", "any"):
            for i, sub in enumerate(getattr(self, key + "_") or []):
                out += sub.facts((*loc, key, i))
        if self.not_ is not None:
            out += self.not_.facts((*loc, "not"))
        return out


# --- steps ------------------------------------------------------------------------------


class FactSpec(Strict):
    """A fact taken from a step's output by a regular expression."""

    regex: str
    group: int | str = 1
    from_: Literal["stdout", "stderr"] = Field("stdout", alias="from")

    @field_validator("regex")
    @classmethod
    def _regex(cls, v: str) -> str:
        _valid_regex(regex_with_placeholders(v))
        return v

    @model_validator(mode="after")
    def _group(self) -> FactSpec:
        pattern = re.compile(regex_with_placeholders(self.regex))
        if isinstance(self.group, int) and self.group > pattern.groups:
            raise ValueError(f"group {self.group} does not exist: the regex has "
                             f"{pattern.groups} group(s)")
        if isinstance(self.group, str) and self.group not in pattern.groupindex:
            raise ValueError(f"the regex has no group named '{self.group}'")
        return self


class DnsProbe(Strict):
    server: str | None = None  # None: the node's own resolver (its /etc/resolv.conf)
    name: str
    type: str = "A"
    recurse: bool = True


class TcpProbe(Strict):
    host: str
    port: int = Field(ge=1, le=65535)


class SmtpProbe(Strict):
    host: str
    port: int = Field(25, ge=1, le=65535)
    helo: str = "probe.example"
    mail_from: str = "probe@probe.example"
    rcpt_to: str
    data: bool = False


class PingProbe(Strict):
    host: str
    count: int = Field(3, ge=1, le=50)
    interval: float = Field(0.05, ge=0.01, le=2)


class ArpProbe(Strict):
    host: str
    count: int = Field(2, ge=1, le=10)


class Step(Strict):
    id: str = Field(pattern=STEP_PATTERN)
    node: str
    description: str = ""
    timeout: float = Field(10.0, gt=0, le=300)
    when: Condition | None = None
    skip_when: Condition | None = None
    run: list[str] | None = Field(None, min_length=1)
    stdin: str | None = None
    dns: DnsProbe | None = None
    tcp: TcpProbe | None = None
    smtp: SmtpProbe | None = None
    ping: PingProbe | None = None
    arp: ArpProbe | None = None
    hook: str | None = None
    args: dict[str, Any] = {}
    facts: dict[str, FactSpec] = {}
    # run the action again every `every` s until `until` holds, `within` s at most
    until: Condition | None = None
    every: float | None = Field(None, ge=0.1, le=60, description=f"default {UNTIL_EVERY}")
    within: float | None = Field(None, gt=0, le=600, description=f"default {UNTIL_WITHIN}")

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        actions = [a for a in ACTIONS if getattr(self, a) is not None]
        if len(actions) != 1:
            found = ", ".join(actions) if actions else "none"
            raise ValueError(f"a step needs exactly one action of {', '.join(ACTIONS)} "
                             f"(found: {found})")
        if self.args and self.hook is None:
            raise ValueError("'args' is only for a 'hook' step")
        if self.stdin is not None and self.run is None:
            raise ValueError("'stdin' is only for a 'run' step")
        if self.until is None and (self.every is not None or self.within is not None):
            raise ValueError("'every' and 'within' are only for a step with 'until'")
        return self

    def references(self, loc: Loc) -> list[tuple[Loc, str]]:
        """The ``${fact}`` references of the step's node, action, args and fact regexes,
        with their locations."""
        value = getattr(self, self.action)
        data = value.model_dump() if isinstance(value, BaseModel) else value
        out = [((*loc, "node"), r) for r in references(self.node)]
        out += [((*loc, self.action), r) for r in references(data)]
        out += [((*loc, "args"), r) for r in references(self.args)]
        out += [((*loc, "facts", name), r) for name, spec in self.facts.items()
                for r in references(spec.regex)]
        return out

    @property
    def action(self) -> str:
        return next(a for a in ACTIONS if getattr(self, a) is not None)

    def produces(self) -> set[str]:
        """Fact names this step can set (hook fields are open: ``<id>.*``)."""
        fields = STEP_FACTS + PROBE_FIELDS.get(self.action, ())
        fields += TEXT_FACTS if self.action in ("run", "hook") else ()
        fields += UNTIL_FACTS if self.until is not None else ()
        return {f"{self.id}.{f}" for f in fields} | set(self.facts)


class Conclusion(Strict):
    when: Condition
    cause: str
    node: str
    because: str = ""


class Playbook(Strict):
    name: str = Field(pattern=NAME_PATTERN, max_length=40)
    description: str = ""
    # where it runs: one topology, a list, or "any" (that has the roles it needs);
    # neither given: the reference topology
    topology: str | None = Field(None, pattern=NAME_PATTERN)
    topologies: list[Annotated[str, Field(pattern=NAME_PATTERN)]] | Literal["any"] | None = None
    needs: list[str] = []  # roles a topology must have for the playbook to run on it
    hooks: list[str] = []
    steps: list[Step] = Field(min_length=1)
    conclusions: list[Conclusion] = Field(min_length=1)

    @field_validator("topologies")
    @classmethod
    def _where(cls, value: list[str] | str | None, info: Any) -> list[str] | str | None:
        if value is not None and info.data.get("topology") is not None:
            raise ValueError("give either topology or topologies, not both")
        if value == []:
            raise ValueError("a list of topology names, or any")
        return value

    def topology_names(self) -> list[str] | None:
        """The topologies the playbook runs on; None: any that has the roles it needs."""
        if self.topologies == "any":
            return None
        if self.topologies:
            return list(self.topologies)
        return [self.topology or DEFAULT_TOPOLOGY]

    def runs_on(self, topology: str, roles: Any) -> bool:
        """Does the playbook run on ``topology``, whose roles are ``roles``?"""
        names = self.topology_names()
        if names is not None and topology not in names:
            return False
        return all(getattr(roles, role, None) not in (None, ()) for role in self.needs)

    def problems(self, nodes: set[str] | None = None,
                 causes: set[str] | frozenset[str] | None = None) -> list[tuple[Loc, str]]:
        """Checks across fields: unique step ids and fact names, conditions reading only
        facts of earlier steps, and (given ``nodes`` / ``causes``) known nodes and causes."""
        found: list[tuple[Loc, str]] = [
            (("needs", i), f"unknown role '{r}' (see docs/roles.md)")
            for i, r in enumerate(self.needs) if r not in ROLE_FIELDS]
        known: set[str] = set()
        hook_steps: set[str] = set()
        ids: set[str] = set()
        for i, step in enumerate(self.steps):
            loc: Loc = ("steps", i)
            if step.id in ids:
                found.append(((*loc, "id"), f"step id '{step.id}' is used twice"))
            ids.add(step.id)
            for name in step.facts:
                if name in known:
                    found.append(((*loc, "facts", name), f"fact '{name}' is set twice"))
                if not re.fullmatch(FACT_PATTERN, name):
                    found.append(((*loc, "facts", name), (f"fact name {name!r} does not match "
                                  f"{FACT_PATTERN}, so no condition could read it")))
            found += _node_problems(step.node, (*loc, "node"), nodes, self.topologies)
            for key in ("when", "skip_when"):
                cond = getattr(step, key)
                if cond is not None:
                    found += _unknown_facts(cond.facts((*loc, key)), known, hook_steps)
            found += _unknown_facts(step.references(loc), known, hook_steps)
            if step.hook is not None:
                hook_steps.add(step.id)
            if step.until is not None:  # reads this step's own facts too
                found += _unknown_facts(step.until.facts((*loc, "until")),
                                        known | step.produces(), hook_steps)
            known |= step.produces()
        for i, c in enumerate(self.conclusions):
            loc = ("conclusions", i)
            found += _node_problems(c.node, (*loc, "node"), nodes, self.topologies)
            found += _unknown_facts(c.when.facts((*loc, "when")), known, hook_steps)
            found += _unknown_facts([((*loc, "because"), r) for r in references(c.because)],
                                    known, hook_steps)
        if causes is not None:
            found += check_causes(self, causes)
        return found


def check_causes(playbook: Playbook, causes: set[str] | frozenset[str]
                 ) -> list[tuple[Loc, str]]:
    """Conclusions whose cause the menu does not know, each with its location."""
    return [(("conclusions", i, "cause"), f"unknown cause '{c.cause}' (see `lab causes`)")
            for i, c in enumerate(playbook.conclusions) if c.cause not in causes]


def _unknown_node(node: str, nodes: set[str]) -> str:
    return f"unknown node '{node}' (nodes: {', '.join(sorted(nodes))})"


def _unknown_facts(refs: list[tuple[Loc, str]], known: set[str], hook_steps: set[str]
                   ) -> list[tuple[Loc, str]]:
    out = []
    for loc, name in refs:
        role = role_of(name)
        if role is not None:
            if role not in ROLE_FIELDS:
                out.append((loc, f"unknown role '{role}' (see docs/roles.md)"))
            continue
        if name in known or name.partition(".")[0] in hook_steps:
            continue
        out.append((loc, f"unknown fact '{name}': no earlier step sets it"))
    return out


def _node_problems(node: str, loc: Loc, nodes: set[str] | None, where: Any
                   ) -> list[tuple[Loc, str]]:
    """A node written as ``${roles.NAME}`` names a role; a literal one must be a node of
    the playbook's topologies (``nodes``: those of every one of them)."""
    refs = references(node)
    if refs:
        if node != f"${{{refs[0]}}}" or role_of(refs[0]) is None:
            return [(loc, "a node is a node name or one role, ${roles.NAME}")]
        return []  # the role itself is checked with the other references
    if where == "any":
        why = "a playbook for any topology names nodes by their roles (${roles.NAME})"
        return [(loc, f"'{node}': {why}")]
    if nodes is not None and node not in nodes:
        return [(loc, _unknown_node(node, nodes))]
    return []


def topology_nodes(topology: str) -> set[str] | None:
    """The node names of a project topology, or None when it cannot be read."""
    from lab.paths import TOPOLOGY_DIR

    path = TOPOLOGY_DIR / f"{topology}.yaml"
    if not path.is_file():
        return None
    from lab.model.topology import load_topology

    return set(load_topology(path).nodes)


class _Checked(Playbook):
    """The playbook with node names checked against its topologies (for load_checked):
    a literal node name must be a node of every one of them."""

    def problems(self, nodes: set[str] | None = None) -> list[tuple[Loc, str]]:
        names = self.topology_names()
        found: list[tuple[Loc, str]] = []
        known: set[str] | None = None
        for i, name in enumerate(names or []):
            got = topology_nodes(name)
            if got is None:
                loc: Loc = ("topologies", i) if self.topologies else ("topology",)
                found.append((loc, f"unknown topology '{name}' (no topologies/{name}.yaml)"))
                continue
            known = got if known is None else known & got
        return super().problems(known) + found


def load_playbook(path: Path, known_causes: set[str] | frozenset[str] | None = None
                  ) -> Playbook:
    """A validated playbook, or a FileError listing every problem with line and field;
    with ``known_causes`` (the menu, lab.scoring.causes.CAUSE_IDS) the conclusions'
    causes are checked too, once the file is otherwise valid."""
    playbook = load_checked(path, _Checked)
    if known_causes is not None:
        raise_found(path, check_causes(playbook, known_causes))
    return playbook
