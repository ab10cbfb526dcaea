"""The lab's clock and its loop: time set back, stepped through idle time, caught up.

Root-free: the loop runs here, its sockets on loopback.
"""
from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from lab.protocols.clock import LabClock, LabLoop

HOUR = 3600.0


def run_lab_loop(clock: LabClock, coro_fn):
    """Run ``coro_fn(clock)`` on a lab loop."""
    with asyncio.Runner(loop_factory=clock.new_loop) as runner:
        return runner.run(coro_fn(clock))


def test_rewind_moves_the_wall_clock_only():
    clock = LabClock()
    mono = clock.monotonic()
    clock.rewind(HOUR)
    assert clock.behind == pytest.approx(HOUR, abs=0.01)
    assert time.time() - clock.time() == pytest.approx(HOUR, abs=0.05)
    assert clock.monotonic() - mono < 1  # timers never see time go back
    assert clock.now().tzinfo is not None


def test_advance_never_passes_the_machines_clock():
    clock = LabClock()
    clock.rewind(100)
    assert clock.advance(40) == pytest.approx(40)
    assert clock.advance(1000) == pytest.approx(60, abs=0.05)
    assert clock.behind == pytest.approx(0, abs=0.05)
    assert LabClock().advance(10) == 0  # a clock that is not behind stays


def test_lab_loop_time_is_the_labs_monotonic_clock():
    clock = LabClock()
    loop = LabLoop(clock)
    try:
        clock.rewind(10)
        clock.advance(5)
        assert loop.time() == pytest.approx(time.monotonic() + 5, abs=0.05)
    finally:
        loop.close()


async def _window(clock: LabClock, hours: float, until: float = 0.0, rate: float = 0.05,
                  **kw) -> tuple[int, float]:
    clock.rewind(hours * HOUR)
    started = time.monotonic()
    replay = clock.start_replay(until, rate, **kw)
    steps = await replay.done
    return steps, time.monotonic() - started


def test_a_replay_runs_hours_of_timers_in_little_real_time_with_simulated_stamps():
    stamps: list[float] = []

    async def go(clock: LabClock):
        async def ticker():
            while True:
                await asyncio.sleep(600)  # every ten simulated minutes
                stamps.append(clock.time())

        task = asyncio.create_task(ticker())
        steps, took = await _window(clock, 3)
        task.cancel()
        return steps, took

    clock = LabClock()
    _steps, took = run_lab_loop(clock, go)
    assert took < 5
    assert clock.behind == 0 and clock.replay is None
    assert 17 <= len(stamps) <= 18
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(gap == pytest.approx(600, abs=1) for gap in gaps)
    assert time.time() - stamps[0] == pytest.approx(3 * HOUR - 600, abs=60)


def test_a_replay_can_stop_short_of_now():
    async def go(clock: LabClock):
        await _window(clock, 2, until=HOUR)
        return clock.behind

    clock = LabClock()
    assert run_lab_loop(clock, go) == pytest.approx(HOUR, abs=1)
    assert clock.replay is None


def test_timeouts_fire_in_simulated_time_but_answers_arrive_in_real_time():
    """A server that never answers times out after 30 simulated seconds; one that answers
    at once is never timed out, whatever the steps around it."""
    seen: dict[str, object] = {}

    async def go(clock: LabClock):
        async def silent(reader, writer):
            await asyncio.sleep(10 * HOUR)

        async def echo(reader, writer):
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()

        quiet = await asyncio.start_server(silent, "127.0.0.1", 0)
        loud = await asyncio.start_server(echo, "127.0.0.1", 0)

        async def client():
            for _ in range(20):
                await asyncio.sleep(300)
                r, w = await asyncio.open_connection(*quiet.sockets[0].getsockname()[:2])
                started = clock.monotonic()
                try:
                    await asyncio.wait_for(r.readline(), 30)
                except TimeoutError:
                    seen.setdefault("waited", []).append(clock.monotonic() - started)
                w.close()
                r, w = await asyncio.open_connection(*loud.sockets[0].getsockname()[:2])
                w.write(b"hello\n")
                seen.setdefault("echo", []).append(await asyncio.wait_for(r.readline(), 1))
                w.close()

        task = asyncio.create_task(client())
        await _window(clock, 2, rate=1.0)
        await task
        quiet.close()
        loud.close()

    run_lab_loop(LabClock(), go)
    assert seen["echo"] == [b"hello\n"] * 20
    assert all(30 <= w < 31 for w in seen["waited"])


def test_the_step_budget_bounds_a_replay_whatever_the_timers():
    async def go(clock: LabClock):
        async def busy():
            while True:
                await asyncio.sleep(0.5)  # a timer every half simulated second

        task = asyncio.create_task(busy())
        steps, _ = await _window(clock, 3, rate=100 / (3 * HOUR))
        task.cancel()
        return steps

    assert run_lab_loop(LabClock(), go) <= 100 + 40 + 2  # rate x window + burst


def test_a_replay_that_cannot_step_ends_at_its_real_time_limit():
    async def go(clock: LabClock):
        async def spinning():
            while True:
                await asyncio.sleep(0.0001)  # never idle long enough for a step

        task = asyncio.create_task(spinning())
        _, took = await _window(clock, 1, real_limit=0.3)
        task.cancel()
        return took

    clock = LabClock()
    assert run_lab_loop(clock, go) < 2
    assert clock.behind == 0
