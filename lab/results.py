"""The attempt records an instructor looks back at: `lab results` and `lab report`.

Records live in ``<results>/<trainee>/<trainee>_<scenario>_<started, UTC>_<lab>.json``
(lab.scoring.attempt); an attempt's *id* is that file name without ``.json``. The report
shown again is rebuilt from the score the record holds (the JSON that `lab score --json`
printed), so it reads as it did when the attempt ended, whatever changed in the scenario
since.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.scoring.attempt import Attempt, Submission, load
from lab.scoring.score import FaultVerdict, Item, Report, mmss


@dataclass
class Row:
    id: str
    trainee: str
    scenario: str
    lab: str
    started: str  # UTC, ISO 8601
    minutes: float | None
    score: int | None
    max: int | None
    hints: int
    submissions: int
    path: str

    @classmethod
    def of(cls, path: Path, attempt: Attempt) -> Row:
        score = attempt.score or {}
        minutes = None if attempt.ended is None else round((attempt.ended - attempt.started) / 60, 1)
        return cls(path.stem, attempt.trainee, attempt.scenario, attempt.lab,
                   time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(attempt.started)), minutes,
                   score.get("total"), score.get("max"), len(attempt.hints),
                   len(attempt.submissions), str(path))


def rows(root: Path, trainee: str | None = None, scenario: str | None = None) -> list[Row]:
    """Every readable record under ``root``, oldest first, filtered."""
    found = []
    for path in sorted(root.glob("*/*.json")):
        try:
            attempt = load(path)
        except LabError:
            continue  # not an attempt record (or a half-written one)
        if trainee not in (None, attempt.trainee) or scenario not in (None, attempt.scenario):
            continue
        found.append(Row.of(path, attempt))
    return sorted(found, key=lambda r: (r.started, r.id))


def find(root: Path, ref: str) -> Path:
    """A record by path or by id."""
    path = Path(ref)
    if path.suffix == ".json" or "/" in ref:
        if not path.is_file():
            raise LabError(f"no attempt record {ref}")
        return path
    matches = sorted(root.glob(f"*/{ref}.json"))
    if not matches:
        raise LabError(f"no attempt '{ref}' in {root}", hint="`lab results` lists the attempts")
    return matches[0]


def report_of(attempt: Attempt) -> Report:
    """The score report kept in a record, as a Report for the renderers."""
    if not attempt.score:
        raise LabError("this attempt was never scored")
    return report_from_json(attempt.score)


def report_from_json(data: dict[str, Any]) -> Report:
    """A Report from the JSON the scorer made of it (``lab score --json``, a record's
    ``score``, the supervisor's live view)."""
    try:
        verdicts = [FaultVerdict(v["fault"], v["params"], v["cause"], v["node"], v["verdict"],
                                 v["why"], _submission(v.get("submission")), v["points"])
                    for v in data["verdicts"]]
        items = [Item(i["points"], i["reason"], i["category"]) for i in data["items"]]
        return Report(data["scenario"], data["lab"], data["trainee"], data["seed"],
                      data["elapsed"], data["time_limit"], data["max"], verdicts, items)
    except (KeyError, TypeError) as e:
        raise LabError(f"the record's score is not a report: missing {e}") from None


def _submission(data: dict[str, Any] | None) -> Submission | None:
    return None if data is None else Submission(data["t"], data["cause"], data["node"])


def table(found: list[Row]) -> str:
    lines = [(f"{'ATTEMPT':<58} {'TRAINEE':<12} {'SCENARIO':<24} {'STARTED (UTC)':<20} "
              f"{'TIME':>6} {'SCORE':>7} {'HINTS':>5} {'SUBM':>4}")]
    for r in found:
        score = "-" if r.score is None else f"{r.score}/{r.max}"
        used = "-" if r.minutes is None else mmss(r.minutes * 60)
        lines.append(f"{r.id:<58} {r.trainee:<12} {r.scenario:<24} {r.started:<20} "
                     f"{used:>6} {score:>7} {r.hints:>5} {r.submissions:>4}")
    return "\n".join(lines)
