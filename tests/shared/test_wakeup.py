"""A background loop's wait: for a wake-up, for the next piece of work to fall due, or at most so long."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from shared.db import utcnow
from shared.wakeup import wait_for_work


async def timed_wait(wakeup: asyncio.Event, due_in: float | None, longest: float) -> float:
    started = time.monotonic()
    due = None if due_in is None else utcnow() + timedelta(seconds=due_in)
    await wait_for_work(wakeup, due, longest)
    return time.monotonic() - started


async def test_a_wake_up_ends_the_wait_at_once_and_is_cleared_for_the_next() -> None:
    wakeup = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, wakeup.set)
    assert await timed_wait(wakeup, None, 30) < 1
    assert not wakeup.is_set()


async def test_a_wake_up_that_came_during_the_round_is_not_lost() -> None:
    wakeup = asyncio.Event()
    wakeup.set()
    assert await timed_wait(wakeup, None, 30) < 0.05


async def test_the_wait_ends_when_work_falls_due_or_at_the_longest() -> None:
    assert 0.2 <= await timed_wait(asyncio.Event(), 0.25, 30) < 1
    assert 0.2 <= await timed_wait(asyncio.Event(), 30, 0.25) < 1
    assert await timed_wait(asyncio.Event(), -5, 30) < 0.05, "work already due: no wait"
