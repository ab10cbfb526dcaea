"""The pieces a report is made of: an item of points with its reason, and how times show."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Item:
    """Points given (or taken) and why, under a category of the report. ``details`` are
    lines folded below the reason (the rule text behind a damage line, the check behind a
    repair); ``data`` carries the same facts as fields for the JSON report."""

    points: int
    reason: str
    category: str
    details: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict, compare=False)


class Clock:
    """Times of an attempt as mm:ss after its start."""

    def __init__(self, started: float) -> None:
        self.started = started

    def __call__(self, t: float) -> str:
        return mmss(t - self.started)


def mmss(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 60:02d}:{s % 60:02d}"
