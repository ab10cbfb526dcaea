"""Waiting for an asyncio event with a time limit, in a loop that is stopped by
cancelling it.

Not ``asyncio.wait_for(event.wait(), timeout)``: on Python 3.11 it drops a cancel that
arrives as the event is set (a wake-up, then the stop that cancels the loop), and the
loop it sits in runs on while its stopper waits for it forever. ``asyncio.timeout``
does not.
"""
from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds have passed (None: no limit);
    whether it was set."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
