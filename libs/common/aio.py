"""Small asyncio helpers used by the long-running loops of the kernel."""

from __future__ import annotations

import asyncio
import contextlib


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake at once when `stop` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def wait_or_stop(wanted: asyncio.Event, stop: asyncio.Event,
                       timeout: float | None = None) -> None:
    """Wait until `wanted` or `stop` is set, or `timeout` passes, whichever comes first."""
    waiters = {asyncio.ensure_future(wanted.wait()), asyncio.ensure_future(stop.wait())}
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
