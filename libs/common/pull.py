"""The pull loop behind every durable consumer (events and jobs): bind, fetch, handle,
and re-bind when the subscription is broken rather than idle.

nats-py's `fetch(heartbeat=...)` is not used: when messages are already buffered,
nats-py 2.16 sends `idle_heartbeat` without `expires`, which the server rejects, stalling
the consumer. Instead, after a stretch of empty fetches we ask the server whether the
consumer has messages waiting; if it does while we receive nothing (typically after a
server restart), the subscription is stale and is bound again.

Each consumer's backlog (`igny8_consumer_pending_messages`) is read from what the server
says anyway: the pending count every delivered message carries, and that idle check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from libs.common.aio import sleep_or_stop
from libs.common.metrics import CONSUMER_PENDING

log = logging.getLogger(__name__)

FETCH_TIMEOUT_SECONDS = 2.0
# Empty fetches in a row before checking the server for waiting messages.
IDLE_FETCHES_BEFORE_CHECK = 5


async def pull_forever(
    js: JetStreamContext,
    *,
    stream: str,
    durable: str,
    batch: int,
    handle: Callable[[Msg], Awaitable[None]],
    provision: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    handle_many: Callable[[list[Msg]], Awaitable[None]] | None = None,
) -> None:
    """Fetch up to `batch` messages at a time and give each to `handle`, or the whole
    fetch (whatever the server had, at most `batch`) to `handle_many`."""
    await provision()
    while not stop.is_set():
        try:
            sub = await js.pull_subscribe_bind(durable=durable, stream=stream)
        except Exception as exc:  # server or stream not back yet
            log.warning("consumer %s: cannot bind (%s); retrying", durable, exc)
            await sleep_or_stop(stop, 1.0)
            with contextlib.suppress(Exception):
                await provision()
            continue
        try:
            await _fetch_until_stale(js, sub, stream, durable, batch, handle_many or _each(handle),
                                     stop)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


async def _fetch_until_stale(
    js: JetStreamContext, sub: JetStreamContext.PullSubscription, stream: str, durable: str,
    batch: int, handle: Callable[[list[Msg]], Awaitable[None]], stop: asyncio.Event,
) -> None:
    idle = 0
    failures = 0
    while not stop.is_set():
        try:
            msgs = await sub.fetch(batch, timeout=FETCH_TIMEOUT_SECONDS)
        except TimeoutError:
            idle += 1
            if idle >= IDLE_FETCHES_BEFORE_CHECK:
                idle = 0
                if await _messages_waiting(js, stream, durable):
                    log.info("consumer %s: messages waiting but none delivered; re-binding",
                             durable)
                    return
            continue
        except Exception as exc:  # connection closed, consumer deleted, ...
            failures += 1
            log.info("consumer %s: fetch failed (%s)", durable, exc)
            if failures >= 3:
                return
            await sleep_or_stop(stop, 0.5)
            continue
        idle = failures = 0
        await handle(msgs)
        with contextlib.suppress(Exception):  # not a JetStream message: nothing to read
            CONSUMER_PENDING.labels(stream, durable).set(msgs[-1].metadata.num_pending)


def _each(handle: Callable[[Msg], Awaitable[None]]
          ) -> Callable[[list[Msg]], Awaitable[None]]:
    async def handle_each(msgs: list[Msg]) -> None:
        for msg in msgs:
            await handle(msg)

    return handle_each


async def _messages_waiting(js: JetStreamContext, stream: str, durable: str) -> bool:
    try:
        info = await js.consumer_info(stream, durable, timeout=2.0)
    except Exception:  # the server is away: re-bind once it is back
        return True
    CONSUMER_PENDING.labels(stream, durable).set(info.num_pending or 0)
    return bool(info.num_pending)
