"""Ctrl-C while a lab is being built or removed: held back, then acted on at a safe point.

A KeyboardInterrupt raised at an arbitrary line of `lab up` could leave a claimed name, a
supervisor building on its own, or half a cleanup. While ``held()`` is active, SIGINT only
sets ``hit``; the code checks it where stopping is safe (before the supervisor starts,
while waiting for it) and then either removes everything or reports the lab as up.

Signal handlers can only be set in the main thread: elsewhere (the playbook matrix's
workers) ``held()`` changes nothing and the caller's own Ctrl-C handling applies.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Held:
    hit: bool = False


@contextmanager
def held() -> Iterator[Held]:
    state = Held()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def note(signum: int, frame: object) -> None:
        state.hit = True

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)
