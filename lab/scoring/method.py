"""Method credit: did the attempt follow the troubleshooting method?

Three items, each read from the programs the recorded commands ran
(lab/scoring/commands.py), so pipelines, loops, ``sh -c`` and wrappers count as what they
run and a playbook's probes count as the tool they stand for:

- DNS first: the first *diagnostic* command is a DNS query (dig, nslookup, host...).
  Every command is diagnostic except shell housekeeping (``cd``, ``echo``, ``clear``,
  ``man``, ``sleep``...): reading a file, listing the ruleset or a repair all count.
- Tools: at least ``min_tools`` distinct programs (builtins and keywords are not).
- Path: each node on the faults' paths was examined: a command ran on it, or a command
  addressed it by address or name (``dig @203.0.113.53``, ``telnet 10.1.0.25 25``,
  ``swaks --server mail.example.net``), looked up in the topology's address map.
"""
from __future__ import annotations

from dataclasses import dataclass

from lab.model.rubric import Rubric
from lab.scoring.addresses import AddressMap, nodes_addressed
from lab.scoring.attempt import Attempt
from lab.scoring.commands import Invocation, invocations
from lab.scoring.items import Clock, Item

CATEGORY = "investigation"
# executables that look at nothing in the lab: shell housekeeping, not diagnosis
NEUTRAL = {"clear", "reset", "man", "info", "whatis", "apropos", "whoami", "id", "hostname",
           "sleep", "date", "tty", "stty", "which", "tput"}
# DNS tools that name their server as @SERVER, and those that take it after the name
DNS_AT = {"dig", "kdig", "delv", "drill"}
DNS_AFTER_NAME = {"nslookup": set(), "host": {"-t", "-c", "-W", "-R", "-N", "-m"}}
# programs whose arguments name the host they talk to
NETWORK_TOOLS = {"ping", "ping6", "fping", "arping", "traceroute", "tracepath", "mtr",
                 "telnet", "nc", "ncat", "netcat", "socat", "swaks", "openssl", "curl",
                 "wget", "ssh", "nmap", "hping3", "tcptraceroute", "smtp-source"}


@dataclass(frozen=True)
class Run:
    """One program run during the attempt: when, on which node, what."""

    t: float
    node: str
    inv: Invocation

    def label(self) -> str:
        via = f" ({self.inv.via})" if self.inv.via else ""
        return f"{self.inv.program}{via} on {self.node}"


def runs(attempt: Attempt) -> list[Run]:
    return [Run(c.t, c.node, inv) for c in sorted(attempt.commands, key=lambda c: c.t)
            for inv in invocations(c.argv, c.line)]


def addressed(inv: Invocation, addresses: AddressMap) -> list[str]:
    """The nodes a program run talked to, by the address or name it was given."""
    args = [a for a in inv.args if a is not None]
    if inv.program in DNS_AT:
        words = [a for a in args if a.startswith("@")]
    elif inv.program in DNS_AFTER_NAME:
        words = _positional(args, DNS_AFTER_NAME[inv.program])[1:2]
    elif inv.program in NETWORK_TOOLS:
        words = args
    else:
        return []
    found: list[str] = []
    for word in words:
        found += [n for n in nodes_addressed(word, addresses) if n not in found]
    return found


def _positional(args: list[str], with_value: set[str]) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a.startswith("-"):
            skip = a in with_value
        else:
            out.append(a)
    return out


def investigation(attempt: Attempt, rubric: Rubric, clock: Clock) -> list[Item]:
    done = runs(attempt)
    return [dns_first(done, rubric, clock), tool_count(done, rubric),
            path_nodes(attempt, done, rubric)]


def dns_first(done: list[Run], rubric: Rubric, clock: Clock) -> Item:
    first = next((r for r in done if r.inv.program not in NEUTRAL), None)
    if first is None:
        return Item(0, "method: no diagnostic command was run", CATEGORY)
    at = f"{first.label()} at {clock(first.t)}"
    if first.inv.program in rubric.dns_tools:
        return Item(rubric.dns_first, f"method: DNS checked first ({at})", CATEGORY,
                    data={"first": first.inv.program, "node": first.node})
    dns = next((r for r in done if r.inv.program in rubric.dns_tools), None)
    later = f"; first DNS query: {dns.label()} at {clock(dns.t)}" if dns else \
        "; no DNS query at all"
    return Item(0, f"method: the first diagnostic command was not a DNS query ({at}{later})",
                CATEGORY, data={"first": first.inv.program, "node": first.node})


def tool_count(done: list[Run], rubric: Rubric) -> Item:
    tools = sorted({r.inv.program for r in done})
    listed = ", ".join(tools) if tools else "none"
    data = {"tools": tools}
    if len(tools) >= rubric.min_tools:
        return Item(rubric.tools, f"method: {len(tools)} distinct tools used ({listed})",
                    CATEGORY, data=data)
    return Item(0, f"method: {len(tools)} distinct tool(s) used, {rubric.min_tools} expected "
                f"({listed})", CATEGORY, data=data)


def path_nodes(attempt: Attempt, done: list[Run], rubric: Rubric) -> Item:
    path = list(dict.fromkeys(n for f in attempt.faults for n in f.path_nodes()))
    how: dict[str, str] = {}
    for r in done:
        how.setdefault(r.node, "ran commands there")
        for node in addressed(r.inv, attempt.addresses):
            how.setdefault(node, f"addressed by {r.inv.program} from {r.node}")
    seen = [n for n in path if n in how]
    points = round(rubric.path_nodes * len(seen) / len(path)) if path else 0
    missed = [n for n in path if n not in how]
    reason = f"method: {len(seen)} of {len(path)} nodes on the faults' path examined"
    if missed:
        reason += " (not: " + ", ".join(missed) + ")"
    return Item(points, reason, CATEGORY, tuple(f"{n}: {how[n]}" for n in seen),
                {"examined": {n: how[n] for n in seen}, "missed": missed})
