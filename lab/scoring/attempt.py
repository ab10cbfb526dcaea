"""The attempt record: one person's (or playbook's) work on a scenario.

Plain dataclasses with a JSON round-trip. Times are seconds since the epoch (floats) so
that the engine, the CLI and the playbook runner can stamp events with ``time.time()``;
reports show them relative to ``started``. The record holds the answer key (``faults``,
``red_herrings``), so it must live where a lab shell cannot read it.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.scoring.causes import get_cause
from lab.scoring.damage import Damage

FORMAT = 1


@dataclass
class FaultKey:
    """An applied fault and the answer it implies: a cause id and the node it lives on.
    ``path`` optionally lists the nodes on the fault's path (default: just ``node``)."""

    name: str
    params: dict[str, Any]
    cause: str
    node: str
    path: list[str] = field(default_factory=list)

    def path_nodes(self) -> list[str]:
        return self.path or [self.node]


@dataclass
class Command:
    """A command run in a node: its argv, and for a line typed into `lab shell` the line
    as typed (the shell's syntax is lost in the argv: pipes, loops, quotes)."""

    t: float
    node: str
    argv: list[str]
    line: str | None = None


@dataclass
class HintTaken:
    t: float
    index: int
    cost: int


@dataclass
class Submission:
    t: float
    cause: str
    node: str


@dataclass
class Probe:
    passed: bool
    detail: str = ""


@dataclass
class RepairResult:
    """One applied fault (red herrings too) checked at the end of the attempt: is its own
    symptom gone (``repaired``), and how that was checked, in words."""

    fault: str
    cause: str
    node: str
    repaired: bool
    how: str


@dataclass
class Attempt:
    scenario: str
    lab: str
    seed: int
    trainee: str
    started: float
    ticket: str
    time_limit: int
    faults: list[FaultKey]
    red_herrings: list[FaultKey] = field(default_factory=list)
    ended: float | None = None
    commands: list[Command] = field(default_factory=list)
    hints: list[HintTaken] = field(default_factory=list)
    submissions: list[Submission] = field(default_factory=list)
    probes: dict[str, Probe] = field(default_factory=dict)
    repairs: list[RepairResult] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)
    # address or host name -> the nodes it leads to (lab/scoring/addresses.py), taken from
    # the lab's topology so that method credit knows which node a command addressed
    addresses: dict[str, list[str]] = field(default_factory=dict)
    score: dict[str, Any] | None = None

    def record_command(self, node: str, argv: list[str], t: float | None = None,
                       line: str | None = None) -> None:
        self.commands.append(Command(_now(t), node, list(argv), line))

    def take_hint(self, index: int, cost: int, t: float | None = None) -> None:
        self.hints.append(HintTaken(_now(t), index, cost))

    def submit(self, cause: str, node: str, t: float | None = None) -> Submission:
        """Record a diagnosis; an unknown cause id is refused (it is not a guess)."""
        get_cause(cause)
        sub = Submission(_now(t), cause, node)
        self.submissions.append(sub)
        return sub

    def finish(self, t: float | None = None) -> None:
        if self.ended is None:
            self.ended = _now(t)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Attempt:
        data = dict(data)
        if data.pop("format", None) != FORMAT:
            raise ValueError(f"not an attempt record of format {FORMAT}")
        data["faults"] = [FaultKey(**f) for f in data["faults"]]
        data["red_herrings"] = [FaultKey(**f) for f in data.get("red_herrings", [])]
        data["commands"] = [Command(**c) for c in data.get("commands", [])]
        data["hints"] = [HintTaken(**h) for h in data.get("hints", [])]
        data["submissions"] = [Submission(**s) for s in data.get("submissions", [])]
        data["probes"] = {k: Probe(**p) for k, p in data.get("probes", {}).items()}
        data["repairs"] = [RepairResult(**r) for r in data.get("repairs", [])]
        data["damage"] = [Damage.from_record(d) for d in data.get("damage", [])]
        return cls(**data)

    def folder(self) -> str:
        """The trainee's folder name (a Unix user name, or "playbook")."""
        return re.sub(r"[^A-Za-z0-9._-]", "_", self.trainee).lstrip(".") or "_"

    def file_name(self) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.started))
        return f"{self.folder()}_{self.scenario}_{stamp}_{self.lab}.json"

    def save(self, directory: Path) -> Path:
        """Write ``<directory>/<trainee>/<trainee>_<scenario>_<started, UTC>_<lab>.json``
        atomically; saving the same attempt again replaces its file. Records hold answer
        keys: the directory and each trainee's folder are 0700, the files 0600."""
        folder = directory / self.folder()
        for d in (directory, folder):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            d.chmod(0o700)
        path = folder / self.file_name()
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
        return path


def load(path: Path) -> Attempt:
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise LabError(f"cannot read {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise LabError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None
    try:
        return Attempt.from_dict(data)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise LabError(f"{path}: not an attempt record: {e}") from None


def _now(t: float | None) -> float:
    return time.time() if t is None else t
