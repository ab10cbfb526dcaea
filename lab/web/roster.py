"""A class as the classroom server holds it: a scenario and its trainees, each with a
secret token, a lab, and what the dashboard shows of their attempt.

Plain data, changed under the class's lock by the operations in lab.web.classops and read
by the pages. A trainee's ``live`` is the supervisor's live view (lab.engine.liveview)
from the last poll; ``score`` the scorer's JSON once the attempt is scored.
"""
from __future__ import annotations

import csv
import io
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.model.topology import Topology
from lab.web import auth

# a lab: queued (waits for a free builder), starting, up, failed, stopping, down
# an attempt: none (not started), open, scoring, scored
LAB_STATES = ("queued", "starting", "up", "failed", "stopping", "down")
EXPORT_FIELDS = ("trainee", "lab", "seed", "lab_state", "attempt", "started_utc",
                 "minutes_used", "commands", "hints", "submissions", "right", "wrong",
                 "score", "max")


@dataclass
class Trainee:
    name: str
    lab: str
    seed: int
    token: str = field(default_factory=auth.new_token, repr=False)
    lab_state: str = "queued"
    attempt: str = "none"
    error: str = ""
    ticket: dict[str, Any] | None = None
    topology: Topology | None = field(default=None, repr=False)
    live: dict[str, Any] | None = None
    score: dict[str, Any] | None = None
    shown_hints: list[dict[str, Any]] = field(default_factory=list)  # as the page showed
    answers: list[dict[str, str]] = field(default_factory=list)  # submissions, as answered
    terminals: set[Any] = field(default_factory=set, repr=False)

    @property
    def nodes(self) -> list[str]:
        return list(self.topology.nodes) if self.topology is not None else []

    @property
    def faulty_nodes(self) -> set[str]:
        return {v["node"] for v in (self.score or {}).get("verdicts", [])}

    def submissions(self) -> list[dict[str, Any]]:
        return list((self.live or {}).get("submissions", []))

    def row(self) -> dict[str, Any]:
        """The dashboard's (and the CSV's) line for this trainee."""
        live = self.live or {}
        subs = self.submissions()
        right = sum(1 for s in subs if s["grade"] == "right")
        started = live.get("started")
        used = live.get("seconds_used")
        return {"trainee": self.name, "lab": self.lab, "seed": self.seed,
                "lab_state": self.lab_state, "attempt": self.attempt, "error": self.error,
                "started_utc": _utc(started) if started else "",
                "minutes_used": round(used / 60, 1) if used is not None else None,
                "seconds_used": used, "time_limit": live.get("time_limit"),
                "commands": live.get("command_count", 0), "hints": len(live.get("hints", [])),
                "submissions": len(subs), "right": right, "wrong": len(subs) - right,
                "graded": subs,
                "score": (self.score or {}).get("total"), "max": (self.score or {}).get("max")}


@dataclass
class Classroom:
    scenario: str
    title: str
    path: Path
    trainees: dict[str, Trainee]
    created: float = field(default_factory=time.time)
    phase: str = "starting"  # starting, running, ending, ended
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def by_token(self, token: str | None) -> Trainee | None:
        found = auth.find(token, [(t.token, t) for t in self.trainees.values()])
        return found if isinstance(found, Trainee) else None

    def progress(self) -> dict[str, int]:
        states = [t.lab_state for t in self.trainees.values()]
        return {state: states.count(state) for state in LAB_STATES} | {"total": len(states)}

    def snapshot(self) -> dict[str, Any]:
        """What the instructor's dashboard shows, as JSON."""
        with self.lock:
            return {"scenario": self.scenario, "title": self.title, "phase": self.phase,
                    "created": self.created, "progress": self.progress(),
                    "trainees": [t.row() | {"link": f"/t/{t.token}"}
                                 for t in self.trainees.values()]}

    def export_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, extrasaction="ignore")
        writer.writeheader()
        with self.lock:
            writer.writerows(t.row() for t in self.trainees.values())
        return out.getvalue()


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
