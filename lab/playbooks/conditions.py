"""Judging conditions on facts, and picking the conclusion: pure functions, no lab needed.

Facts are plain values (str, int, bool). A fact that no step set (its step was skipped,
its regex did not match) is missing: every test but ``exists: false`` is false for it.
"""
from __future__ import annotations

import re
from typing import Any

from lab.model.playbook import REF, Conclusion, Condition

Facts = dict[str, Any]


class MissingFact(LookupError):
    """A ``${fact}`` reference to a fact that no step set."""


def interpolate(value: Any, facts: Facts, escape: bool = False) -> Any:
    """``value`` with every ``${fact}`` in its strings replaced by the fact's value (lists
    and mappings are walked; ``escape``: as a literal inside a regular expression);
    MissingFact for a fact that is not there."""
    if isinstance(value, str):
        def sub(m: re.Match) -> str:
            if m.group(1) not in facts:
                raise MissingFact(m.group(1))
            text = str(facts[m.group(1)])
            return re.escape(text) if escape else text
        return REF.sub(sub, value)
    if isinstance(value, list):
        return [interpolate(v, facts, escape) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, facts, escape) for k, v in value.items()}
    return value


def expand(text: str, facts: Facts) -> str:
    """``text`` with each ``${fact}`` filled in; one that no step set stays as written."""
    return REF.sub(lambda m: str(facts[m.group(1)]) if m.group(1) in facts else m.group(0),
                   text)


def _same(value: Any, expected: Any) -> bool:
    if isinstance(value, bool) or isinstance(expected, bool):
        return str(value).lower() == str(expected).lower()
    return value == expected or str(value) == str(expected)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def holds(cond: Condition, facts: Facts) -> bool:
    """Whether ``cond`` holds for ``facts``."""
    if cond.all_ is not None:
        return all(holds(c, facts) for c in cond.all_)
    if cond.any_ is not None:
        return any(holds(c, facts) for c in cond.any_)
    if cond.not_ is not None:
        return not holds(cond.not_, facts)
    assert cond.fact is not None
    present = cond.fact in facts
    if cond.exists is not None:
        return present == cond.exists
    if not present:
        return False
    value = facts[cond.fact]
    try:
        if cond.equals is not None:
            return _same(value, interpolate(cond.equals, facts))
        if cond.matches is not None:
            return re.search(interpolate(cond.matches, facts), str(value)) is not None
        if cond.in_ is not None:
            return any(_same(value, v) for v in interpolate(cond.in_, facts))
    except (MissingFact, re.error, OverflowError):  # re: a fact made the regex invalid
        return False
    number = _number(value)
    if number is None:
        return False
    if cond.lt is not None:
        return number < cond.lt
    assert cond.gt is not None
    return number > cond.gt


def describe(cond: Condition) -> str:
    """A condition in one line, for skip reasons and reports."""
    if cond.all_ is not None:
        return "(" + " and ".join(describe(c) for c in cond.all_) + ")"
    if cond.any_ is not None:
        return "(" + " or ".join(describe(c) for c in cond.any_) + ")"
    if cond.not_ is not None:
        return f"not {describe(cond.not_)}"
    for key, op in (("equals", "=="), ("matches", "=~"), ("in_", "in"), ("lt", "<"),
                    ("gt", ">")):
        value = getattr(cond, key)
        if value is not None:
            return f"{cond.fact} {op} {value!r}"
    return f"{cond.fact} {'exists' if cond.exists else 'is missing'}"


def conclude(conclusions: list[Conclusion], facts: Facts) -> tuple[int, Conclusion] | None:
    """The first conclusion whose condition holds and whose node is known (a role the
    topology lacks names none), with its index, or None."""
    for i, c in enumerate(conclusions):
        if all(r in facts for r in REF.findall(c.node)) and holds(c.when, facts):
            return i, c
    return None


def extract(spec_regex: str, group: int | str, text: str) -> str | None:
    """A regex fact: the group of the first match in ``text``, None without a match."""
    m = re.search(spec_regex, text, re.MULTILINE)
    if m is None:
        return None
    value = m.group(group) if (isinstance(group, str) or group) else m.group(0)
    return value if value is not None else None
