"""Scoring an attempt against its answer key: one scorer for trainees and playbooks.

``score`` is pure: it reads the attempt record (faults, submissions, commands, hints,
probes, damage, times) and a rubric, and returns a Report whose items explain every
point given or taken. The total is the sum of the items; a final ``floor`` item keeps it
from going below zero.
"""
from __future__ import annotations

import math
import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Literal

from lab.errors import LabError
from lab.model.scenario import Accept, Scenario
from lab.scoring.attempt import Attempt, Command, FaultKey, Submission
from lab.scoring.rubric import Rubric

Verdict = Literal["right", "partial", "wrong", "missing"]
GRADE = {"right": 2, "partial": 1}
SHELLS = {"sh", "bash", "dash", "zsh"}
WRAPPERS = {"sudo", "env", "timeout", "nice", "stdbuf", "time", "watch", "command", "exec"}


@dataclass(frozen=True)
class Item:
    points: int
    reason: str
    category: str


@dataclass(frozen=True)
class FaultVerdict:
    fault: str
    params: dict[str, Any]
    cause: str
    node: str
    verdict: Verdict
    why: str
    submission: Submission | None
    points: int


@dataclass
class Report:
    scenario: str
    lab: str
    trainee: str
    seed: int
    elapsed: float
    time_limit: int
    max_points: int
    verdicts: list[FaultVerdict] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(i.points for i in self.items)


def score_scenario(attempt: Attempt, scenario: Scenario) -> Report:
    return score(attempt, scenario.rubric, scenario.accept)


def score(attempt: Attempt, rubric: Rubric | None = None, accept: Accept | None = None) -> Report:
    """The report for a finished attempt (``attempt.ended`` set)."""
    if attempt.ended is None:
        raise LabError("the attempt has not ended", hint="finish it before scoring")
    rubric = rubric or Rubric()
    accept = accept or Accept()
    report = Report(attempt.scenario, attempt.lab, attempt.trainee, attempt.seed,
                    attempt.ended - attempt.started, attempt.time_limit, rubric.max_points)
    clock = _Clock(attempt.started)
    _diagnosis(attempt, rubric, accept, report, clock)
    report.items += _fix(attempt, rubric)
    report.items += _investigation(attempt, rubric, clock)
    report.items += [Item(-h.cost, f"hint {h.index + 1} taken at {clock(h.t)}", "hints")
                     for h in attempt.hints]
    report.items += [Item(-rubric.damage, f"collateral damage: {d}", "damage")
                     for d in attempt.damage]
    report.items.append(_time(report.elapsed, attempt.time_limit, rubric))
    if report.total < 0:
        report.items.append(Item(-report.total, "the score does not go below 0", "floor"))
    return report


class _Clock:
    def __init__(self, started: float) -> None:
        self.started = started

    def __call__(self, t: float) -> str:
        return mmss(t - self.started)


def mmss(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 60:02d}:{s % 60:02d}"


# --- diagnosis ---------------------------------------------------------------------------

def grade(fault: FaultKey, sub: Submission, accept: Accept) -> tuple[Verdict | None, str]:
    """How far a submission diagnoses a fault: right, partial (with why) or not at all."""
    right_cause = sub.cause == fault.cause or sub.cause in accept.right.get(fault.cause, [])
    if right_cause and sub.node == fault.node:
        return "right", "right cause on the right node"
    if right_cause:
        return "partial", f"right cause, wrong node (the fault is on {fault.node})"
    if sub.node == fault.node:
        return "partial", f"right node, wrong cause (the cause is {fault.cause})"
    if sub.cause in accept.partial.get(fault.cause, []):
        return "partial", f"accepted as partly right (the cause is {fault.cause} on {fault.node})"
    return None, ""


def match(grades: list[list[int]]) -> list[int | None]:
    """For each fault, the submission it is matched to (or None): each submission matches
    at most one fault, the total grade is the highest possible, earlier submissions win
    ties. ``grades[f][s]`` is 2 for right, 1 for partial, 0 for no match."""
    best: tuple[tuple[int, int], list[int | None]] = ((-1, 0), [])

    def walk(i: int, used: frozenset[int], chosen: list[int | None]) -> None:
        nonlocal best
        if i == len(grades):
            key = (sum(grades[f][s] for f, s in enumerate(chosen) if s is not None),
                   -sum(s for s in chosen if s is not None))
            if key > best[0]:
                best = (key, list(chosen))
            return
        for s, g in enumerate(grades[i]):
            if g and s not in used:
                walk(i + 1, used | {s}, chosen + [s])
        walk(i + 1, used, chosen + [None])

    walk(0, frozenset(), [])
    return best[1]


def _diagnosis(attempt: Attempt, rubric: Rubric, accept: Accept, report: Report,
               clock: _Clock) -> None:
    subs = sorted(attempt.submissions, key=lambda s: s.t)
    real = {f.cause for f in attempt.faults}
    herring = {f.cause for f in attempt.red_herrings} - real
    # a red herring's cause never earns credit, not even as "right node"
    candidates = [s for s in subs if s.cause not in herring]
    table = [[(grade(f, s, accept), s) for s in candidates] for f in attempt.faults]
    chosen = match([[GRADE.get(g[0] or "", 0) for g, _ in row] for row in table])
    matched = {(candidates[s].cause, candidates[s].node) for s in chosen if s is not None}
    used: set[int] = {id(candidates[s]) for s in chosen if s is not None}
    leftovers = [s for s in subs if id(s) not in used]
    # unmatched faults are "wrong" while unmatched attempts remain to pin on them, one each
    spare = [s for s in leftovers if (s.cause, s.node) not in matched]
    shares = _shares(rubric.diagnosis, len(attempt.faults))
    for n, (fault, pick) in enumerate(zip(attempt.faults, chosen)):
        label = f"fault {n + 1} ({fault.cause} on {fault.node})"
        sub: Submission | None
        if pick is not None:
            (verdict, why), sub = table[n][pick]
            assert verdict is not None
            points = shares[n] if verdict == "right" else round(shares[n] * rubric.partial_fraction)
            reason = (f"{label}: {verdict}, {why}; "
                      f"submitted {sub.cause} on {sub.node} at {clock(sub.t)}")
        else:
            sub = spare.pop(0) if spare else None
            verdict, why = ("wrong", "the submission does not diagnose it") if sub else (
                "missing", "no diagnosis submitted for it")
            points, reason = 0, f"{label}: {verdict}, {why}"
        report.verdicts.append(FaultVerdict(fault.name, fault.params, fault.cause, fault.node,
                                            verdict, why, sub, points))
        report.items.append(Item(points, reason, "diagnosis"))
    for sub in leftovers:
        what = f"{sub.cause} on {sub.node} at {clock(sub.t)}"
        if sub.cause in herring:
            report.items.append(Item(-rubric.red_herring,
                                     f"blamed a red herring: {what} (a symptom, not the cause)",
                                     "submissions"))
        elif (sub.cause, sub.node) not in matched:
            report.items.append(Item(-rubric.wrong_submission, f"wrong submission: {what}",
                                     "submissions"))


def _shares(total: int, count: int) -> list[int]:
    """``total`` split into ``count`` integer shares that add up exactly."""
    if count == 0:
        return []
    base, extra = divmod(total, count)
    return [base + (1 if i >= count - extra else 0) for i in range(count)]


# --- fix, time ---------------------------------------------------------------------------

def _fix(attempt: Attempt, rubric: Rubric) -> list[Item]:
    if not attempt.probes:
        return [Item(0, "fix not verified: no probe results", "fix")]
    failed = [f"{name} ({p.detail})" if p.detail else name
              for name, p in sorted(attempt.probes.items()) if not p.passed]
    if failed:
        return [Item(0, "fix not verified: probes failing at the end: " + ", ".join(failed),
                     "fix")]
    names = ", ".join(sorted(attempt.probes))
    return [Item(rubric.fix, f"fix verified: every probe passes at the end ({names})", "fix")]


def _time(elapsed: float, limit: int, rubric: Rubric) -> Item:
    allowed = limit * 60
    if elapsed <= allowed:
        return Item(0, f"time: {mmss(elapsed)} used of {mmss(allowed)}", "time")
    over = math.ceil((elapsed - allowed) / 60)
    cost = min(over * rubric.overtime_per_minute, rubric.overtime_max)
    return Item(-cost, f"time: {over} min over the {mmss(allowed)} limit "
                f"({rubric.overtime_per_minute} per minute, at most {rubric.overtime_max})",
                "time")


# --- investigation (the method) ----------------------------------------------------------

def tools_of(argv: list[str]) -> list[str]:
    """The programs a recorded command ran: ``sudo timeout 5 dig`` is dig, and
    ``sh -c 'netguard -An | grep 10.1.0.25'`` is netguard and grep."""
    if argv and os.path.basename(argv[0]) in SHELLS and "-c" in argv[:-1]:
        script = argv[argv.index("-c") + 1]
        segments = [_split(seg) for seg in re.split(r"\|\|?|&&|;|&|\n", script)]
    else:
        segments = [argv]
    out = []
    for words in segments:
        tool = _program(words)
        if tool:
            out.append(tool)
    return out


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def _program(words: list[str]) -> str | None:
    for word in words:
        name = os.path.basename(word)
        if name in WRAPPERS or word.startswith("-") or "=" in word or word.isdigit():
            continue
        return name or None
    return None


def _investigation(attempt: Attempt, rubric: Rubric, clock: _Clock) -> list[Item]:
    commands = sorted(attempt.commands, key=lambda c: c.t)
    used = [(c, tool) for c in commands for tool in tools_of(c.argv)]
    return [_dns_first(used, rubric, clock), _tool_count(used, rubric),
            _path_nodes(attempt, commands, rubric)]


def _dns_first(used: list[tuple[Command, str]], rubric: Rubric, clock: _Clock) -> Item:
    dns = next(((c, t) for c, t in used if t in rubric.dns_tools), None)
    fw = next(((c, t) for c, t in used if t in rubric.firewall_tools), None)
    if dns is None:
        return Item(0, "method: no DNS lookup (" + "/".join(rubric.dns_tools[:3]) + ")",
                    "investigation")
    if fw is not None and fw[0].t < dns[0].t:
        return Item(0, f"method: firewall inspected ({fw[1]} at {clock(fw[0].t)}) before "
                    f"DNS ({dns[1]} at {clock(dns[0].t)})", "investigation")
    return Item(rubric.dns_first, f"method: DNS checked first ({dns[1]} on {dns[0].node} at "
                f"{clock(dns[0].t)})", "investigation")


def _tool_count(used: list[tuple[Command, str]], rubric: Rubric) -> Item:
    tools = sorted({t for _, t in used})
    listed = ", ".join(tools) if tools else "none"
    if len(tools) >= rubric.min_tools:
        return Item(rubric.tools, f"method: {len(tools)} distinct tools used ({listed})",
                    "investigation")
    return Item(0, f"method: {len(tools)} distinct tool(s) used, {rubric.min_tools} expected "
                f"({listed})", "investigation")


def _path_nodes(attempt: Attempt, commands: list[Command], rubric: Rubric) -> Item:
    path = list(dict.fromkeys(n for f in attempt.faults for n in f.path_nodes()))
    visited = {c.node for c in commands}
    seen = [n for n in path if n in visited]
    points = round(rubric.path_nodes * len(seen) / len(path)) if path else 0
    missed = [n for n in path if n not in visited]
    reason = f"method: {len(seen)} of {len(path)} nodes on the faults' path examined"
    if missed:
        reason += " (not: " + ", ".join(missed) + ")"
    return Item(points, reason, "investigation")
