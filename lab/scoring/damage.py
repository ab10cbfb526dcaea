"""Collateral damage: a "fix" that leaves the firewall weaker than the healthy policy.

A command plus a pure judge: the engine lists fw's ruleset (`nft list ruleset`) once
before any fault is applied and again when the attempt is scored; ``find_damage``
compares the two texts. Opening the firewall wider (a new accept rule, an accepting
forward policy), flushing the ruleset or disabling NAT is damage even if mail flows.
Rules that are missing are not damage by themselves: a fault removed them, and the
probes tell whether the trainee put them back.
"""
from __future__ import annotations

import re

FILTER_TABLE = "table inet netguard"
_COUNTER = re.compile(r"\s*counter packets \d+ bytes \d+")
# logging changes what is recorded, not what is allowed: ignored when comparing rules
_LOG = re.compile(r'\s*log (?:group \d+ )?(?:prefix "[^"]*" ?)?(?:group \d+)?')
_CHAIN = re.compile(r"^\s*chain (\S+) \{")
_POLICY = re.compile(r"policy (\w+);")


def _normal(line: str) -> str:
    return " ".join(_LOG.sub(" ", _COUNTER.sub("", line)).split())


def _tables(ruleset: str) -> dict[str, dict[str, list[str]]]:
    """table header -> chain name -> normalized statement lines (incl. the hook line)."""
    tables: dict[str, dict[str, list[str]]] = {}
    table = chain = None
    for raw in ruleset.splitlines():
        line = raw.strip()
        if line.startswith("table "):
            table, chain = line.rstrip("{ ").strip(), None
            tables.setdefault(table, {})
        elif (m := _CHAIN.match(raw)) and table:
            chain = m.group(1)
            tables[table].setdefault(chain, [])
        elif line and line != "}" and table and chain:
            tables[table][chain].append(_normal(line))
    return tables


def _policy(lines: list[str]) -> str | None:
    for line in lines:
        if m := _POLICY.search(line):
            return m.group(1)
    return None


def find_damage(healthy: str, current: str, fault_causes: set[str] = frozenset()) -> list[str]:
    """What the current ruleset opens or disables compared with the healthy one.

    ``fault_causes`` are the causes of the faults applied in this attempt: what a fault
    removed on purpose (NAT) is not counted against the trainee.
    """
    before, after = _tables(healthy), _tables(current)
    if FILTER_TABLE in before and FILTER_TABLE not in after:
        return ["the firewall's filter table is gone (ruleset flushed)"]
    found: list[str] = []
    for table, chains in after.items():
        for chain, lines in chains.items():
            old = before.get(table, {}).get(chain)
            if old is not None and _policy(old) == "drop" and _policy(lines) == "accept":
                found.append(f"{table} chain {chain}: default policy changed to accept")
            known = set(old or [])
            for line in lines:
                if line not in known and re.search(r"\baccept\b", line) and "policy" not in line:
                    found.append(f"{table} chain {chain}: rule added beyond the healthy "
                                 f"policy: {line}")
    found += _nat_damage(healthy, current, fault_causes)
    return found


def _nat_damage(healthy: str, current: str, fault_causes: set[str]) -> list[str]:
    found = []
    if ("masquerade" in healthy and "masquerade" not in current
            and "nat-dynamic-missing" not in fault_causes):
        found.append("dynamic NAT (masquerade) disabled")
    static_faults = {"nat-static-missing", "nat-static-wrong-host"}
    if "dnat to" in healthy and "dnat to" not in current and not static_faults & fault_causes:
        found.append("static NAT removed")
    return found
