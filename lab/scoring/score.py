"""Scoring an attempt against its answer key: one scorer for trainees and playbooks.

``score`` is pure: it reads the attempt record (faults, submissions, commands, hints,
probes, repair checks, damage, times) and a rubric, and returns a Report whose items
explain every point given or taken (docs/scoring.md). The total is the sum of the items;
a final ``floor`` item keeps it from going below zero.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from lab.errors import LabError
from lab.model.rubric import Rubric
from lab.model.scenario import Accept, Scenario
from lab.scoring.attempt import Attempt, FaultKey, RepairResult, Submission
from lab.scoring.items import Clock, Item, mmss
from lab.scoring.method import investigation

Verdict = Literal["right", "partial", "wrong", "missing"]
GRADE = {"right": 2, "partial": 1}

__all__ = ["FaultVerdict", "Item", "Report", "grade", "match", "mmss", "score",
           "score_scenario"]


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
    late: bool = False  # the submission came after the time limit


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

    @property
    def late(self) -> bool:
        return self.elapsed > self.time_limit * 60


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
    clock = Clock(attempt.started)
    _diagnosis(attempt, rubric, accept, report, clock)
    report.items += _fix(attempt, rubric)
    report.items += investigation(attempt, rubric, clock)
    report.items += [Item(-h.cost, f"hint {h.index + 1} taken at {clock(h.t)}", "hints")
                     for h in attempt.hints]
    report.items += [Item(-rubric.damage, f"damage: {d.what}", "damage",
                          ((f"{d.where}:",) if d.where else ()) + tuple(f"  {r}" for r in d.rules),
                          asdict(d))
                     for d in attempt.damage]
    report.items += _time(attempt, report, rubric)
    if report.total < 0:
        report.items.append(Item(-report.total, "the score does not go below 0", "floor"))
    return report


# --- diagnosis ---------------------------------------------------------------------------

def grade(fault: FaultKey, sub: Submission, accept: Accept) -> tuple[Verdict | None, str]:
    """How far a submission diagnoses a fault: right, partial (with why) or not at all.
    The right node alone earns nothing: any cause could be named on it."""
    right_cause = sub.cause == fault.cause or sub.cause in accept.right.get(fault.cause, [])
    if right_cause and sub.node == fault.node:
        return "right", "right cause on the right node"
    if right_cause:
        return "partial", f"right cause, wrong node (the fault is on {fault.node})"
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


def _late(attempt: Attempt, sub: Submission, clock: Clock) -> str:
    over = sub.t - attempt.started - attempt.time_limit * 60
    return f" (LATE: {mmss(over)} after the time limit)" if over > 0 else ""


def _diagnosis(attempt: Attempt, rubric: Rubric, accept: Accept, report: Report,
               clock: Clock) -> None:
    subs = sorted(attempt.submissions, key=lambda s: s.t)
    herring = {f.cause for f in attempt.red_herrings} - {f.cause for f in attempt.faults}
    # a red herring's cause never earns credit
    candidates = [s for s in subs if s.cause not in herring]
    table = [[(grade(f, s, accept), s) for s in candidates] for f in attempt.faults]
    chosen = match([[GRADE.get(g[0] or "", 0) for g, _ in row] for row in table])
    matched = {(candidates[s].cause, candidates[s].node) for s in chosen if s is not None}
    used: set[int] = {id(candidates[s]) for s in chosen if s is not None}
    leftovers = [s for s in subs if id(s) not in used]
    # unmatched faults are "wrong" while unmatched attempts remain to pin on them, one each
    spare = [s for s in leftovers if (s.cause, s.node) not in matched]
    shares = shares_of(rubric.diagnosis, len(attempt.faults))
    for n, (fault, pick) in enumerate(zip(attempt.faults, chosen)):
        label = f"fault {n + 1} ({fault.cause} on {fault.node})"
        sub: Submission | None
        if pick is not None:
            (verdict, why), sub = table[n][pick]
            assert verdict is not None
            points = shares[n] if verdict == "right" else round(shares[n] * rubric.partial_fraction)
            reason = (f"{label}: {verdict}, {why}; "
                      f"submitted {sub.cause} on {sub.node} at {clock(sub.t)}"
                      f"{_late(attempt, sub, clock)}")
        else:
            sub = spare.pop(0) if spare else None
            verdict, why = ("wrong", "the submission does not diagnose it") if sub else (
                "missing", "no diagnosis submitted for it")
            points, reason = 0, f"{label}: {verdict}, {why}"
        late = sub is not None and bool(_late(attempt, sub, clock))
        report.verdicts.append(FaultVerdict(fault.name, fault.params, fault.cause, fault.node,
                                            verdict, why, sub, points, late))
        report.items.append(Item(points, reason, "diagnosis"))
    for sub in leftovers:
        what = f"{sub.cause} on {sub.node} at {clock(sub.t)}{_late(attempt, sub, clock)}"
        if sub.cause in herring:
            report.items.append(Item(-rubric.red_herring,
                                     f"blamed a red herring: {what} (a symptom, not the cause)",
                                     "submissions"))
        elif (sub.cause, sub.node) not in matched:
            report.items.append(Item(-rubric.wrong_submission, f"wrong submission: {what}",
                                     "submissions"))


def shares_of(total: int, count: int) -> list[int]:
    """``total`` split into ``count`` integer shares that add up exactly."""
    if count == 0:
        return []
    base, extra = divmod(total, count)
    return [base + (1 if i >= count - extra else 0) for i in range(count)]


# --- repairs -----------------------------------------------------------------------------

def _repair_of(fault: FaultKey, repairs: list[RepairResult], taken: set[int]
               ) -> RepairResult | None:
    for i, r in enumerate(repairs):
        if i not in taken and (r.fault, r.node) == (fault.name, fault.node):
            taken.add(i)
            return r
    return None


def _fix(attempt: Attempt, rubric: Rubric) -> list[Item]:
    """A fault's share of the fix points when its own check says repaired and every
    end-to-end probe passes."""
    failing = [f"{name} ({p.detail})" if p.detail else name
               for name, p in sorted(attempt.probes.items()) if not p.passed]
    flows = bool(attempt.probes) and not failing
    end_to_end = ("end-to-end probes pass: " + ", ".join(sorted(attempt.probes)) if flows
                  else "end-to-end probes failing: " + ", ".join(failing) if failing
                  else "end-to-end probes were not run")
    shares = shares_of(rubric.fix, len(attempt.faults))
    taken: set[int] = set()
    items = []
    for n, fault in enumerate(attempt.faults):
        label = f"fault {n + 1} ({fault.cause} on {fault.node})"
        rep = _repair_of(fault, attempt.repairs, taken)
        data: dict[str, Any] = {"fault": fault.name, "node": fault.node, "flows": flows,
                                "repaired": rep.repaired if rep else None,
                                "how": rep.how if rep else None}
        if rep is None:
            items.append(Item(0, f"{label}: not credited, no repair check recorded", "fix",
                              data=data))
            continue
        checked = f"checked: {rep.how}"
        if not rep.repaired:
            items.append(Item(0, f"{label}: not repaired", "fix", (checked,), data))
        elif not flows:
            items.append(Item(0, f"{label}: repaired by its own check, but mail does not "
                              "flow end to end", "fix", (checked, end_to_end), data))
        else:
            items.append(Item(shares[n], f"{label}: repaired", "fix", (checked, end_to_end),
                              data))
    return items


# --- time --------------------------------------------------------------------------------

def _time(attempt: Attempt, report: Report, rubric: Rubric) -> list[Item]:
    """Points for right diagnoses in good time: a fault's share is full within
    ``time_full`` of the limit and falls to 0 at the limit; time used over the limit costs
    ``overtime_per_minute`` per started minute."""
    limit = attempt.time_limit * 60
    full = rubric.time_full * limit
    shares = shares_of(rubric.time, len(report.verdicts))
    points, when = 0.0, []
    for share, v in zip(shares, report.verdicts):
        if v.verdict == "right" and v.submission is not None:
            t = v.submission.t - attempt.started
            when.append(mmss(t))
            speed = 1.0 if t <= full else max(0.0, (limit - t) / (limit - full))
            points += share * speed
    rule = f"full until {mmss(full)}, none after {mmss(limit)}"
    if not when:
        items = [Item(0, f"time: no right diagnosis to earn time points ({rule})", "time")]
    else:
        items = [Item(round(points), f"time: right diagnosis at {', '.join(when)} ({rule})",
                      "time")]
    if report.elapsed > limit:
        over = math.ceil((report.elapsed - limit) / 60)
        cost = min(over * rubric.overtime_per_minute, rubric.overtime_max)
        items.append(Item(-cost, f"time: LATE, {over} min over the {mmss(limit)} limit "
                          f"({rubric.overtime_per_minute} per minute, at most "
                          f"{rubric.overtime_max})", "time"))
    return items
