"""lab.asyncwait: a loop waiting for its event ends when cancelled, even when the cancel
comes as the event is set (asyncio.wait_for on Python 3.11 drops that cancel; the MTA's
queue runner then outlived its stop())."""
from __future__ import annotations

import asyncio

from lab.asyncwait import wait_event


async def _loop(event: asyncio.Event) -> None:
    while True:
        await wait_event(event, 100)
        event.clear()


def test_a_cancel_that_comes_with_the_wake_up_ends_the_loop():
    async def body() -> bool:
        event = asyncio.Event()
        task = asyncio.create_task(_loop(event))
        await asyncio.sleep(0)  # the loop waits
        event.set()
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=5)
        return task in done and task.cancelled()

    assert asyncio.run(body())


def test_the_wait_says_whether_the_event_came():
    async def body() -> tuple[bool, bool]:
        event = asyncio.Event()
        asyncio.get_running_loop().call_later(0.01, event.set)
        return await wait_event(event, 5), await wait_event(asyncio.Event(), 0.01)

    assert asyncio.run(body()) == (True, False)
