"""A lab's clock, and the event loop whose timers follow it.

Every time a lab's services write down (log lines, queue files, mailbox stamps, alert
envelopes) comes from ``LabClock.time()`` / ``now()``; every wait (retry backoff, connect
and DNS timeouts, traffic intervals) is an asyncio timer on the lab's loop, whose
``time()`` is ``LabClock.monotonic()``. Normally both are the machine's clocks.

A history replay (:mod:`lab.history.replay`) moves them:

- ``rewind(seconds)`` sets the wall clock back to the start of the history window
  ("since this morning"); the monotonic clock never goes back;
- while ``replaying`` is set, ``LabLoop`` steps both clocks forward each time the lab is
  idle (nothing ready to run and no packet arriving for ``IDLE`` real seconds), straight
  to the loop's next timer: a connect timeout, a queue run, the next message. Work runs at
  real speed between the steps, so the window's hours pass in seconds, each line carrying
  its simulated time;
- once the wall clock has caught up with the machine's (or with a point short of it:
  ``until``), the replay ends and time flows at the machine's pace again; caught up, the
  clock is the machine's (the monotonic clock keeps its lead, which only timers see).

A budget of steps per simulated second bounds how many a window takes, whatever the
services' own intervals are (see ``Replay``).
"""
from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

IDLE = 0.001  # real seconds without a ready event that count as "the lab is idle"
NUDGE = 1e-6  # past a timer's deadline, so that the loop finds it due after a step


class LabClock:
    """Wall and monotonic time as the lab sees them: the machine's plus offsets."""

    def __init__(self) -> None:
        self._wall = 0.0
        self._mono = 0.0
        self.replay: Replay | None = None

    def time(self) -> float:
        """Seconds since the epoch, as the lab's logs and queues record them."""
        return time.time() + self._wall

    def monotonic(self) -> float:
        """What the lab's timers run on (the lab loop's ``time()``)."""
        return time.monotonic() + self._mono

    def now(self) -> datetime:
        """The lab's local time, timezone-aware."""
        return datetime.fromtimestamp(self.time()).astimezone()

    @property
    def behind(self) -> float:
        """How far the lab's wall clock is behind the machine's (0 normally)."""
        return -self._wall

    def rewind(self, seconds: float) -> None:
        """Set the wall clock back by ``seconds`` (the monotonic clock stays)."""
        self._wall -= max(0.0, seconds)

    def advance(self, seconds: float) -> float:
        """Move both clocks forward, never the wall clock past the machine's; returns
        how far they moved."""
        step = max(0.0, min(seconds, self.behind))
        self._wall += step
        self._mono += step
        return step

    def catch_up(self) -> None:
        """Be the machine's wall clock again now, and end any replay."""
        self.advance(self.behind)
        self._wall = 0.0
        self.end_replay()

    def start_replay(self, until: float, rate: float, fine: float = 0.0,
                     fine_rate: float = 0.0, real_limit: float = 60.0) -> Replay:
        """Step through time whenever the lab is idle until the wall clock is only
        ``until`` seconds behind the machine's, about ``rate`` steps per simulated second
        (``fine_rate`` in the last ``fine`` seconds); ``await`` the result's ``done``."""
        self.replay = Replay(self, until, rate, fine=fine, fine_rate=fine_rate,
                             real_limit=real_limit)
        return self.replay

    def end_replay(self) -> None:
        """Back to time flowing at the machine's pace (wherever the clock stands)."""
        replay, self.replay = self.replay, None
        if replay is not None:
            replay.finish()

    def new_loop(self) -> LabLoop:
        """An event loop whose timers run on this clock (``asyncio.Runner(loop_factory=)``)."""
        return LabLoop(self)


class Replay:
    """One replay in progress: where it ends (the wall clock ``until`` seconds behind the
    machine's), how many steps it may take, and when it is over.

    Steps go straight to the loop's next timer while the budget allows: ``rate`` steps per
    simulated second accrue, at most ``burst`` saved up. Without one left, a step waits
    until one is due and wakes every timer that has come due meanwhile together; so a
    window of hours takes about ``rate`` x its length steps, whatever the services'
    intervals, while the short chains of timeouts after each message run step by step. The
    last ``fine`` simulated seconds get the budget ``fine_rate`` instead (what a trainee
    reads first is the end of a log). After ``real_limit`` real seconds the clock jumps to
    the end at once."""

    def __init__(self, clock: LabClock, until: float, rate: float, burst: float = 40.0,
                 fine: float = 0.0, fine_rate: float = 0.0, idle: float = IDLE,
                 real_limit: float = 60.0) -> None:
        self.clock = clock
        self.until = until
        self.rate = rate
        self.burst = burst
        self.fine = fine
        self.fine_rate = fine_rate
        self.tokens = burst
        self.idle = idle
        self.steps = 0
        self.last = clock.monotonic()
        self.deadline = time.monotonic() + real_limit
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(self.steps)

    @property
    def left(self) -> float:
        """Simulated seconds until the replay's end."""
        return self.clock.behind - self.until

    def select(self, inner: selectors.BaseSelector, timeout: float | None) -> list:
        """The loop's wait for events: real while something happens, a step of the
        clock when nothing does."""
        if time.monotonic() > self.deadline:
            self._step(self.left)
            return inner.select(0)
        if timeout is not None and timeout <= self.idle:
            return inner.select(timeout)
        events = inner.select(self.idle)
        if events:
            return events
        self._step(self.left if timeout is None else timeout + NUDGE)
        return []

    def _step(self, wanted: float) -> None:
        clock = self.clock
        rate = self.fine_rate if self.left <= self.fine else self.rate
        tokens = min(self.burst, self.tokens + (clock.monotonic() - self.last) * rate)
        if tokens < 1:
            wanted = max(wanted, (1 - tokens) / rate)
        step = clock.advance(min(wanted, self.left))
        self.tokens = min(self.burst, tokens + step * rate) - 1
        self.last = clock.monotonic()
        self.steps += 1
        if self.left <= 0:
            if self.until <= 0:
                clock.catch_up()
            clock.end_replay()


class _ClockSelector(selectors.BaseSelector):
    """The loop's selector, handing its waits to the clock's replay while there is one."""

    def __init__(self, clock: LabClock) -> None:
        self.clock = clock
        self.inner = selectors.DefaultSelector()

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self.inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self.inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self.inner.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list:
        replay = self.clock.replay
        if replay is None or timeout == 0:
            return self.inner.select(timeout)
        return replay.select(self.inner, timeout)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self.inner.get_map()

    def close(self) -> None:
        self.inner.close()


class LabLoop(asyncio.SelectorEventLoop):
    """The supervisor's event loop: its ``time()`` is the lab's monotonic clock."""

    def __init__(self, clock: LabClock) -> None:
        super().__init__(_ClockSelector(clock))
        self.clock = clock

    def time(self) -> float:
        return self.clock.monotonic()
