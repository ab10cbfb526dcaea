"""A lab's history: its background mail from `lab up` on, and at `lab start` the replay
of the ticket's window ("since this morning") under the faults.

The exercise calls ``lead_in(window, seed)`` before it applies the faults: what the lab
recorded so far moves back before the replay (lab/history/shift.py), the lab's clock is
set back by the window and a ``LEAD`` of ordinary traffic, and the traffic restarts from
the attempt's seed; the lead runs healthy, up to the window's start. Then the faults
happen, "this morning", and ``replay()`` runs the window up to now. Both run on the lab's
loop stepping through idle time (lab/protocols/clock.py): real sessions, real lookups,
real firewall passage, each record stamped with its simulated time. When the clock has
caught up with the machine's, the ticket is printed.

``LAB_HISTORY=off`` in the environment of `lab up` (or `lab start`) switches both the
traffic and the replay off; ``LAB_HISTORY_RATE=F`` multiplies the steady rates by F.
"""
from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab.history.propagate import propagate_zone_changes
from lab.history.shift import shift_past
from lab.history.traffic import Traffic
from lab.model.roles import derive_roles

if TYPE_CHECKING:
    from lab.services.host import ServiceHost

ENV = "LAB_HISTORY"
LEAD = 1800.0  # seconds of ordinary traffic before the trouble starts
MAX_STEPS = 150  # clock steps a replay takes (and a burst): bounds its cost, any window
FINE, FINE_STEPS = 900.0, 150  # and as many again in its last 15 minutes, read first
REAL_LIMIT = 40.0  # real seconds a replay may take; then the clock is set right at once


RATE_ENV = "LAB_HISTORY_RATE"


def enabled() -> bool:
    """Whether labs started from this environment have history (``LAB_HISTORY``)."""
    return os.environ.get(ENV, "on").strip().lower() not in ("off", "0", "no", "false")


def rate_scale() -> float:
    """``LAB_HISTORY_RATE``: the steady traffic's rates times this (1 unless set; for
    benchmarks that need many messages in a short time)."""
    try:
        return max(0.0, float(os.environ.get(RATE_ENV, "1")))
    except ValueError:
        return 1.0


@dataclass
class Replayed:
    """What one replay did, for the supervisor's log."""

    window: float = 0.0  # simulated seconds of trouble (after the lead)
    steps: int = 0  # clock steps, lead and window
    seconds: float = 0.0  # real seconds they took
    messages: int = 0  # messages and alerts the traffic sent meanwhile


class LabHistory:
    """The background traffic of one lab, and its replay."""

    def __init__(self, host: ServiceHost, lab: str) -> None:
        self.host = host
        self.clock = host.clock
        self.lab = lab
        self.traffic = Traffic(host, derive_roles(host.topo), rate_scale())
        propagate_zone_changes(host)  # the traffic keeps caches warm; a fixed zone shows
        self.window = 0.0
        self.rate = 0.0  # clock steps per simulated second
        self.took = Replayed()

    def start(self) -> None:
        """The steady traffic, seeded by the lab's name (two labs differ)."""
        self.traffic.start(f"lab:{self.lab}")

    async def stop(self) -> None:
        await self.traffic.stop()

    async def lead_in(self, window: float, seed: str, lead: float = LEAD) -> None:
        """Before the faults: the lab's past moves back by ``lead`` + ``window`` and so
        does its clock; the traffic (from ``seed``) runs the lead, up to the window."""
        if window <= 0:
            return
        shift_past(list(self.host.contexts.values()), lead + window)
        self.clock.rewind(lead + window)
        self.window = window
        self.rate = MAX_STEPS / (lead + window)
        self.took = Replayed(window)
        self.traffic.start(seed, window, lead)
        await self._run(until=window)

    async def replay(self) -> Replayed:
        """After the faults: the window, until the clock is the machine's again."""
        await self._run(until=0.0, fine=min(FINE, self.window))
        return self.took

    async def _run(self, until: float, fine: float = 0.0) -> None:
        if self.clock.behind <= until:
            return
        if getattr(asyncio.get_running_loop(), "clock", None) is not self.clock:
            self.clock.catch_up()  # not the lab's own loop: no stepping through time
            return
        sent, started = self.traffic.sent, time.monotonic()
        replay = self.clock.start_replay(until, self.rate, fine, FINE_STEPS / FINE, REAL_LIMIT)
        self.took.steps += await replay.done
        self.took.seconds += time.monotonic() - started
        self.took.messages += self.traffic.sent - sent
