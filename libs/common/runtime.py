"""The worker process of a service: the outbox relay, its event consumers, its job
workers and its schedulers, run until SIGTERM/SIGINT and then drained. Also what every
long-running process of ours does once it has started (`settled_heap`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client import start_http_server

from libs.common import nats as nats_kernel
from libs.common.consumer import EventConsumer
from libs.common.db import Database
from libs.common.logging import configure_logging
from libs.common.outbox import OutboxRelay
from libs.common.settings import ServiceSettings
from libs.common.telemetry import configure_tracing

log = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    settings: ServiceSettings
    db: Database
    nc: NATS
    js: JetStreamContext
    buckets: dict[str, Any]
    stop: asyncio.Event = field(default_factory=asyncio.Event)


Task = Callable[[WorkerContext], Coroutine[Any, Any, None]]


@contextlib.contextmanager
def settled_heap() -> Iterator[None]:
    """Around a process's serving time, once startup is done: what exists by then
    (modules, the app, its schemas, pools; ~140,000 objects in the gateway) lives as long
    as the process, so it is moved out of the garbage collector's sight. A full collection
    then walks only what requests create: without this each one walked everything, a
    10-15 ms pause that set the gateway's p99 at high request rates. Given back to the
    collector at shutdown (tests start and stop many apps in one process)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def run_worker(
    settings: ServiceSettings,
    *,
    consumers: Callable[[WorkerContext], Sequence[EventConsumer]] = lambda _: (),
    tasks: Sequence[Task] = (),
    stop: asyncio.Event | None = None,
) -> None:
    service = settings.service_name
    configure_logging(f"{service}-worker", settings.log_level)
    configure_tracing(f"{service}-worker", settings.otlp_endpoint)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr="0.0.0.0")  # noqa: S104 - scraped in-cluster
    db = Database(settings.database_url, pool_size=5, max_overflow=5)
    nc = await nats_kernel.connect(settings.nats_url, f"{service}-worker")
    js = nc.jetstream()
    buckets = await nats_kernel.ensure_platform(js, service)
    ctx = WorkerContext(settings, db, nc, js, buckets, stop or asyncio.Event())
    relay = OutboxRelay(db, js, service=service)
    running = [asyncio.create_task(relay.run(ctx.stop), name="outbox-relay")]
    for consumer in consumers(ctx):
        running.append(asyncio.create_task(consumer.run(ctx.stop), name=consumer.name))
    for task in tasks:
        running.append(asyncio.create_task(task(ctx), name=getattr(task, "__name__", "task")))
    log.info("worker started: %d loops", len(running))
    try:
        with settled_heap():
            await ctx.stop.wait()
    finally:
        log.info("worker stopping")
        _done, pending = await asyncio.wait(running, timeout=10)
        for t in pending:
            t.cancel()
        for t in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        with contextlib.suppress(Exception):
            await nc.drain()
        await db.dispose()


def main(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Entry point for `python -m services.<name>.worker`: stop cleanly on signals."""

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(stop)

    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(_main())
