"""Reading `nft list ruleset` text: tables, chains, policies and rules, and each rule in
words a trainee understands.

Only what judging a change needs: a rule is kept as its normalized text (counters,
logging, comments and handles dropped: they change what is recorded, not what passes)
and compared by its ``key`` (the text without ``ct state new``, which every permit of
the healthy policy carries and a hand-written equivalent may leave out).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

_COUNTER = re.compile(r"\s*counter(?: packets \d+ bytes \d+)?")
_LOG = re.compile(r'\s*log(?: prefix "[^"]*"| group \d+| level \w+| flags \w+)*')
_COMMENT = re.compile(r'\s*comment "[^"]*"')
_HANDLE = re.compile(r"\s*# handle \d+")
_NEW = re.compile(r"\s*ct state new\b")
_CHAIN = re.compile(r"^chain (\S+) \{")
_HOOK = re.compile(r"type (\w+) hook (\w+)")
_POLICY = re.compile(r"policy (\w+);")
_VERDICTS = ("accept", "drop", "reject", "masquerade", "dnat", "snat", "redirect", "jump",
             "goto", "return", "queue")


@dataclass
class Chain:
    hook: str = ""  # input, forward, output, prerouting, postrouting ('' for a regular chain)
    policy: str = ""
    rules: list[str] = field(default_factory=list)  # normalized rule texts


Ruleset = dict[str, dict[str, Chain]]  # "inet netguard" -> chain name -> chain


def parse(text: str) -> Ruleset:
    """The tables of an `nft list ruleset` text (family and name) and their chains."""
    tables: Ruleset = {}
    table = chain = None
    for raw in text.splitlines():
        line = _HANDLE.sub("", raw).strip()
        if line.startswith("table ") and line.endswith("{"):
            table, chain = line[len("table "):-1].strip(), None
            tables.setdefault(table, {})
        elif (m := _CHAIN.match(line)) and table is not None:
            chain = m.group(1)
            tables[table].setdefault(chain, Chain())
        elif table is not None and chain is not None and line and line != "}":
            _add_line(tables[table][chain], line)
    return tables


def _add_line(chain: Chain, line: str) -> None:
    if m := _HOOK.search(line):
        chain.hook = m.group(2)
        if p := _POLICY.search(line):
            chain.policy = p.group(1)
        return
    rule = normalize(line)
    if rule:
        chain.rules.append(rule)


def normalize(rule: str) -> str:
    text = _COMMENT.sub("", _LOG.sub("", _COUNTER.sub("", _HANDLE.sub("", rule))))
    return " ".join(text.split())


def key(rule: str) -> str:
    return " ".join(_NEW.sub("", rule).split())


def verdict(rule: str) -> str:
    """What the rule does with a packet it matches: accept, drop, dnat, masquerade...;
    '' for a rule that only logs or marks."""
    words = rule.split()
    for word in reversed(words):
        if word in _VERDICTS:
            return word
    return ""


def target(rule: str) -> str:
    """The address a NAT rule translates to (``dnat to 10.1.0.25`` -> 10.1.0.25)."""
    m = re.search(r"\b(?:dnat|snat|redirect) to (\S+)", rule)
    return m.group(1) if m else ""


def address(rule: str, which: str) -> str:
    """The address a rule matches as ``saddr`` or ``daddr`` ('' if none)."""
    m = re.search(rf"\bip {which} (\S+)", rule)
    return m.group(1) if m else ""


def narrower(rule: str, than: str) -> bool:
    """Does ``rule`` match a subset of what ``than`` matches: every condition of ``than``
    is in it, in order, and nothing is negated (a rough, text-level test)?"""
    if "!=" in rule or verdict(rule) != verdict(than):
        return False
    have = iter(key(rule).split()[:-1])
    return all(word in have for word in key(than).split()[:-1])


_WHERE = {"forward": "through the firewall", "input": "to the firewall itself",
          "output": "from the firewall", "prerouting": "arriving", "postrouting": "leaving"}


def describe(rule: str, hook: str = "") -> str:
    """A rule in words: 'TCP port 25 to 203.0.113.25, from anywhere'."""
    proto = re.search(r"\b(?:meta l4proto|ip protocol) (\w+)|\b(tcp|udp|icmp)\b", rule)
    port = re.search(r"\b(?:tcp|udp|th) dport (\S+)", rule)
    src = re.search(r"\bip saddr (!= )?(\S+)", rule)
    dst = re.search(r"\bip daddr (!= )?(\S+)", rule)
    what = (proto.group(1) or proto.group(2)).upper() if proto else "all traffic"
    if port:
        what += f" port {port.group(1)}"
    what += f" to {_addr(dst)}" if dst else ""
    what += f" from {_addr(src)}" if src else ", from anywhere"
    iface = re.search(r'\b([io])ifname "?([\w.-]+)"?', rule)
    if iface:
        what += f" ({'in on' if iface.group(1) == 'i' else 'out of'} {iface.group(2)})"
    where = _WHERE.get(hook, "")
    return f"{what} {where}".strip()


def _addr(m: re.Match) -> str:
    return ("anything but " if m.group(1) else "") + m.group(2)
