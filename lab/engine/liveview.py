"""The instructor's live view of a running attempt (the supervisor's ``live`` op).

What a classroom dashboard shows while a trainee works: commands run, hints taken, each
submission with its grade (right, partial, wrong, red herring), time used, and the score
once the attempt is scored. The grades are the answer key's business: this view is served
on the root-only control socket and never on the trainee channel (lab.engine.channel's
TRAINEE_OPS does not name it).
"""
from __future__ import annotations

import shlex
import time
from typing import Any

from lab.model.scenario import Accept
from lab.scoring.attempt import Attempt, Submission
from lab.scoring.score import grade

RED_HERRING = "red herring"


def submission_grade(attempt: Attempt, sub: Submission, accept: Accept) -> str:
    """The best grade a submission earns against any fault of the attempt: right,
    partial or wrong; a red herring's cause (and not a fault's) says so."""
    herrings = {f.cause for f in attempt.red_herrings} - {f.cause for f in attempt.faults}
    if sub.cause in herrings:
        return RED_HERRING
    grades = {grade(f, sub, accept)[0] for f in attempt.faults}
    for verdict in ("right", "partial"):
        if verdict in grades:
            return verdict
    return "wrong"


def live_view(attempt: Attempt, accept: Accept, title: str, scored: bool,
              detail: bool = True, now: float | None = None) -> dict[str, Any]:
    """The attempt as the instructor follows it; ``detail`` adds every command line
    (without it, their count only). Times are seconds since the attempt started."""
    now = time.time() if now is None else now
    start = attempt.started
    used = (attempt.ended if attempt.ended is not None else now) - start
    view: dict[str, Any] = {
        "trainee": attempt.trainee, "scenario": attempt.scenario, "title": title,
        "lab": attempt.lab, "started": start, "time_limit": attempt.time_limit,
        "seconds_used": round(used, 1), "scored": scored,
        "command_count": len(attempt.commands),
        "hints": [{"t": round(h.t - start, 1), "index": h.index + 1, "cost": h.cost}
                  for h in attempt.hints],
        "submissions": [{"t": round(s.t - start, 1), "cause": s.cause, "node": s.node,
                         "grade": submission_grade(attempt, s, accept)}
                        for s in attempt.submissions],
        "score": attempt.score if scored else None,
    }
    if detail:
        view["commands"] = [{"t": round(c.t - start, 1), "node": c.node,
                             "line": c.line if c.line is not None else shlex.join(c.argv)}
                            for c in attempt.commands]
    return view
