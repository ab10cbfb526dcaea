"""The instructor's live dashboard: server-sent events, no page reloads.

While at least one dashboard is open, the hub asks every running lab's supervisor for
its live view once a second (lab.web.classops.ClassOps.poll) and sends the class's
snapshot to each open dashboard when it changed; a change the server makes itself (a lab
came up, an attempt was scored) is sent at once. Nothing is polled when nobody watches.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from lab.asyncwait import wait_event
from lab.web.classops import ClassOps

log = logging.getLogger("lab.web")
INTERVAL = 1.0
KEEPALIVE = 15.0


class LiveHub:
    def __init__(self, ops: ClassOps, stopping: Callable[[], bool]) -> None:
        self.ops = ops
        self.stopping = stopping
        self.queues: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.changed: asyncio.Event | None = None
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.changed = asyncio.Event()
        self.task = self.loop.create_task(self._run())

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        for queue in self.queues:
            queue.put_nowait(None)

    def poke(self) -> None:
        """Something changed (callable from any thread)."""
        if self.loop is not None and self.changed is not None:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.changed.set)

    def snapshot(self) -> dict[str, Any] | None:
        room = self.ops.classroom
        return room.snapshot() if room is not None else None

    async def _run(self) -> None:
        last: dict[str, Any] | None = None
        while True:
            if self.queues:
                try:
                    await asyncio.to_thread(self.ops.poll)
                    snap = self.snapshot()
                except Exception:
                    log.exception("following the class")
                    snap = last
                if snap != last:
                    last = snap
                    for queue in self.queues:
                        queue.put_nowait(snap)
            assert self.changed is not None
            await wait_event(self.changed, INTERVAL)
            self.changed.clear()

    async def events(self) -> AsyncIterator[str]:
        """One dashboard's event stream: the snapshot now, then each change."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.queues.add(queue)
        self.poke()
        try:
            yield _event(self.snapshot())
            idle = 0.0
            while not self.stopping():
                try:
                    snap = await asyncio.wait_for(queue.get(), 1.0)
                except TimeoutError:
                    idle += 1.0
                    if idle >= KEEPALIVE:
                        idle = 0.0
                        yield ": keepalive\n\n"
                    continue
                if snap is None:
                    return
                idle = 0.0
                yield _event(snap)
        finally:
            self.queues.discard(queue)


def _event(snap: dict[str, Any] | None) -> str:
    return f"data: {json.dumps(snap)}\n\n"
