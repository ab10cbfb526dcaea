"""Damage: what the trainee changed for the worse, judged against the lab as the faults
left it.

Three snapshots of the lab go in: before the faults (the healthy policy), right after the
faults (where the trainee started) and at scoring (where the trainee left it). Each
snapshot is the firewall's `nft list ruleset` text and whether each service runs. Only
the difference between the second and the third is the trainee's; within it:

- undoing a fault (a change back to the healthy state) is a repair, never damage;
- damage is a change that makes the firewall wider than the healthy policy (a permit, a
  NAT or a policy it does not have, a block rule or a whole table removed, the ruleset
  flushed) or takes away something the healthy lab has (a healthy permit or NAT rule
  removed, dynamic NAT disabled, a service stopped);
- a narrower change (an extra block rule) is not damage: the end-to-end probes judge it.

Pure functions over texts and dicts: the engine takes the snapshots.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from lab.scoring import ruleset as rs

FIREWALL, NAT, SERVICE = "firewall", "nat", "service"


@dataclass
class Damage:
    """One change for the worse: what it is in words, its kind (firewall, nat,
    service), where it is (node, table, chain) and the rule text behind it."""

    what: str
    kind: str = FIREWALL
    where: str = ""
    rules: list[str] = field(default_factory=list)

    @classmethod
    def from_record(cls, data: dict | str) -> Damage:
        """A record's entry; older records kept only the sentence."""
        return cls(what=data) if isinstance(data, str) else cls(**data)


@dataclass
class LabState:
    """A snapshot of what damage compares: the firewall's ruleset text and, per
    service ("mx/smtp"), whether it is running."""

    ruleset: str = ""
    services: dict[str, bool] = field(default_factory=dict)


def find_damage(healthy: LabState, faulted: LabState, now: LabState,
                firewall: str) -> list[Damage]:
    """Every change from ``faulted`` to ``now`` that is damage, in a stable order."""
    return (ruleset_damage(healthy.ruleset, faulted.ruleset, now.ruleset, firewall)
            + service_damage(faulted.services, now.services))


def service_damage(faulted: dict[str, bool], now: dict[str, bool]) -> list[Damage]:
    return [Damage(f"the {svc.split('/')[1]} service on {svc.split('/')[0]} was stopped",
                   SERVICE, svc.split("/")[0])
            for svc, running in sorted(faulted.items()) if running and not now.get(svc, False)]


def ruleset_damage(healthy: str, faulted: str, now: str, firewall: str) -> list[Damage]:
    h, f, n = rs.parse(healthy), rs.parse(faulted), rs.parse(now)
    gone = [t for t in f if t not in n]
    if f and len(gone) == len(f):
        return [Damage("the firewall's whole ruleset was flushed: it filters nothing and "
                       "translates nothing", FIREWALL, firewall, [f"table {t}" for t in gone])]
    found = [_table_gone(t, f[t], firewall) for t in gone]
    for table, chains in n.items():
        for name, chain in chains.items():
            where = f"{firewall}: table {table}, chain {name}"
            before = f.get(table, {}).get(name)
            if before is None and chain.hook:
                # a base chain of the trainee's own: its accepts cannot override a drop of
                # the firewall's chains on the same hook, only its NAT rules take effect
                before = rs.Chain(chain.hook, chain.policy)
                chain = rs.Chain(chain.hook, chain.policy,
                                 [r for r in chain.rules if rs.verdict(r) != "accept"])
            found += _chain_damage(where, h.get(table, {}).get(name) or rs.Chain(),
                                   before or rs.Chain(), chain)
        for name in f.get(table, {}):
            if name not in chains:
                found.append(Damage(f"chain {name} of the firewall was deleted", FIREWALL,
                                    f"{firewall}: table {table}", [f"chain {name}"]))
    return found


def _table_gone(table: str, chains: dict[str, rs.Chain], firewall: str) -> Damage:
    if any(c.hook in ("prerouting", "postrouting") for c in chains.values()):
        return Damage("the firewall's NAT table was deleted: no static or dynamic NAT", NAT,
                      firewall, [f"table {table}"])
    return Damage("the firewall's filter table was deleted: it accepts and forwards every "
                  "connection", FIREWALL, firewall, [f"table {table}"])


def _chain_damage(where: str, healthy: rs.Chain, faulted: rs.Chain,
                  now: rs.Chain) -> list[Damage]:
    found = []
    if now.policy == "accept" and faulted.policy == "drop" and healthy.policy != "accept":
        found.append(Damage(f"the default policy for traffic {_hook_words(now.hook)} was "
                            "changed from drop to accept", FIREWALL, where, ["policy accept"]))
    before, after = Counter(map(rs.key, faulted.rules)), Counter(map(rs.key, now.rules))
    healthy_keys = set(map(rs.key, healthy.rules))
    added, removed = after - before, before - after
    for rule in now.rules:
        k = rs.key(rule)
        if added[k] > 0:
            added[k] -= 1
            if k not in healthy_keys:  # else: a healthy rule put back, a repair
                found += _added(rule, now.hook, healthy, where)
    for rule in faulted.rules:
        k = rs.key(rule)
        if removed[k] > 0:
            removed[k] -= 1
            if k in healthy_keys:  # else: a rule the fault added, taken out: a repair
                found += _removed(rule, now.hook or faulted.hook, where)
    return found


def _added(rule: str, hook: str, healthy: rs.Chain, where: str) -> list[Damage]:
    kind = rs.verdict(rule)
    if kind == "accept":
        if any(rs.narrower(rule, h) for h in healthy.rules if rs.verdict(h) == "accept"):
            return []
        text = ("a rule now accepts everything" if rs.key(rule) == "accept" else
                f"a permit wider than the healthy policy: {rs.describe(rule, hook)}")
        return [Damage(text, FIREWALL, where, [rule])]
    if kind == "dnat":
        same = [h for h in healthy.rules if rs.verdict(h) == "dnat"
                and (rs.address(h, "daddr"), rs.target(h)) == (rs.address(rule, "daddr"),
                                                                 rs.target(rule))]
        return [] if same else [Damage(_dnat_words(rule, healthy), NAT, where, [rule])]
    if kind in ("snat", "masquerade", "redirect"):
        return [Damage(f"a {kind} rule the healthy policy does not have: "
                       f"{rs.describe(rule, hook)}", NAT, where, [rule])]
    return []  # narrower (drop, reject) or only logging: not damage


def _dnat_words(rule: str, healthy: rs.Chain) -> str:
    to, dst = rs.target(rule), rs.address(rule, "daddr")
    for h in healthy.rules:
        if rs.verdict(h) == "dnat" and rs.target(h) != to and f"daddr {dst}" in h:
            return (f"NAT to the wrong place: {dst} now leads to {to} (healthy: "
                    f"{rs.target(h)})")
    return f"a static NAT the healthy policy does not have: {dst} now leads to {to}"


def _removed(rule: str, hook: str, where: str) -> list[Damage]:
    kind = rs.verdict(rule)
    if kind == "masquerade":
        return [Damage("dynamic NAT was disabled: internal hosts can no longer reach the "
                       "internet", NAT, where, [rule])]
    if kind == "dnat":
        return [Damage(f"static NAT was removed: {rs.address(rule, 'daddr')} no longer leads "
                       f"to {rs.target(rule)}", NAT, where, [rule])]
    if kind == "snat":
        return [Damage(f"source NAT was removed: {rs.address(rule, 'saddr')} no longer goes "
                       f"out as {rs.target(rule)}", NAT, where, [rule])]
    if kind in ("drop", "reject"):
        return [Damage(f"a block rule of the healthy policy was removed (it refused "
                       f"{rs.describe(rule, hook)})", FIREWALL, where, [rule])]
    if kind == "accept":
        return [Damage(f"a permit of the healthy policy was removed: {rs.describe(rule, hook)}",
                       FIREWALL, where, [rule])]
    return []


def _hook_words(hook: str) -> str:
    return {"forward": "through the firewall", "input": "to the firewall",
            "output": "from the firewall"}.get(hook, f"in {hook or 'this chain'}")
