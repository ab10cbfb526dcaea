"""Starting one attempt per trainee of a class, a few labs at a time.

`lab start SCENARIO --trainees a,b,...` and the classroom server (`lab serve`) both start
a class through ``start_seats``: each seat is a trainee, the lab their attempt runs in and
its seed; at most ``parallel`` labs are being built at once (each build mostly waits on
its supervisor, but two cores do not build thirty labs at once any faster). Progress is
reported through ``on_event`` from the worker threads, for the caller to render.
"""
from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lab.engine.attempt import start_attempt
from lab.engine.state import check_lab_name
from lab.errors import LabError
from lab.model.scenario import Scenario

DEFAULT_PARALLEL = 4
TRAINEE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
MAX_TRAINEES = 60
Event = Literal["starting", "up", "failed"]


@dataclass
class Seat:
    """One trainee's attempt to start: in lab ``lab``, faults drawn with ``seed``; ``uid``
    the Unix user it is bound to (None: no Unix user, root and the nodes only)."""

    trainee: str
    lab: str
    seed: int
    uid: int | None = None
    ticket: dict[str, Any] | None = None
    error: str = ""


def trainee_names(text: str) -> list[str]:
    """Names separated by commas, spaces or new lines: each valid, none twice."""
    names = [n for n in re.split(r"[\s,]+", text) if n]
    if not names:
        raise LabError("no trainee names given")
    bad = [n for n in names if not TRAINEE_NAME.fullmatch(n)]
    if bad:
        raise LabError(f"invalid trainee name {bad[0][:40]!r}",
                       hint="letters, digits, '.', '_' and '-', at most 32 characters")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise LabError(f"trainee {twice[0]!r} is named twice")
    if len(names) > MAX_TRAINEES:
        raise LabError(f"{len(names)} trainees: at most {MAX_TRAINEES} in one class")
    return names


def counted_names(count: int) -> list[str]:
    """``count`` trainees without names: trainee-01, trainee-02, ..."""
    if not 1 <= count <= MAX_TRAINEES:
        raise LabError(f"a class has 1 to {MAX_TRAINEES} trainees, not {count}")
    return [f"trainee-{n:02d}" for n in range(1, count + 1)]


def seat_labs(prefix: str, count: int, first: int = 1) -> list[str]:
    """The labs of a class: ``PREFIX-1`` ... ``PREFIX-N`` (numbered from ``first``), each
    a valid lab name."""
    names = [f"{prefix}-{n}" for n in range(first, first + count)]
    try:
        for name in names[-1:]:
            check_lab_name(name)
    except LabError as e:
        raise LabError(f"lab prefix {prefix!r}: {e.message} once numbered", hint=e.hint
                       ) from None
    return names


def random_seed() -> int:
    return int.from_bytes(os.urandom(2), "big")


def start_seats(path: Path, scenario: Scenario, seats: list[Seat], parallel: int,
                on_event: Callable[[Event, Seat], None] | None = None,
                stop: threading.Event | None = None) -> list[Seat]:
    """Start every seat's attempt (a seat not yet started when ``stop`` is set is
    skipped); returns the seats with their ticket or error. A failed start leaves no lab
    (lab.engine.attempt.start_attempt); the others go on."""
    on_event = on_event or (lambda *_: None)
    stop = stop or threading.Event()

    def one(seat: Seat) -> Seat:
        if stop.is_set():
            seat.error = "not started: the class was stopped"
            return seat
        on_event("starting", seat)
        try:
            seat.ticket = start_attempt(path, scenario, seat.lab, seat.seed,
                                        trainee=seat.trainee, uid=seat.uid)
        except LabError as e:
            seat.error = e.message
        except Exception as e:  # noqa: BLE001 - one broken start must not stop the class
            seat.error = f"{type(e).__name__}: {e}"
        on_event("failed" if seat.error else "up", seat)
        return seat

    pool = ThreadPoolExecutor(max(1, parallel), thread_name_prefix="seat")
    try:
        for future in as_completed([pool.submit(one, seat) for seat in seats]):
            future.result()
    except BaseException:
        stop.set()  # Ctrl-C: no new lab starts; those being built finish first
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return seats
