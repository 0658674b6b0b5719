"""Background loops that wake on work instead of polling for it."""

from __future__ import annotations

import asyncio
from datetime import datetime

from shared.db import utcnow


async def wait_for_work(wakeup: asyncio.Event, due: datetime | None, longest: float) -> None:
    """Sleep until `wakeup` is set, until `due` (the next piece of work known to fall due), or for
    `longest` seconds, whichever comes first; then clear `wakeup` for the next round."""
    timeout = longest if due is None else min(longest, max(0.0, (due - utcnow()).total_seconds()))
    # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that arrives as the
    # wake-up fires, and the loop would never stop.
    try:
        async with asyncio.timeout(timeout):
            await wakeup.wait()
    except TimeoutError:
        pass
    wakeup.clear()
