"""The worker process of a service: the outbox relay, the kernel tables' retention pass,
its event consumers, its job workers and its schedulers, each supervised, run until
SIGTERM/SIGINT and then drained.
Also what every long-running process of ours does once it has started (`settled_heap`).

A loop that raises, or returns before the worker stops, is restarted with backoff; one
that keeps failing ends the process with a non-zero exit code, so `igny8 up`, compose
or Kubernetes restart the whole worker. The worker serves `/healthz` (every loop running
and NATS connected: 200, otherwise 503 with what is wrong) and `/metrics` on
`metrics_host:metrics_port`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import orjson
from aiohttp import web
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from libs.common import nats as nats_kernel
from libs.common.consumer import EventConsumer
from libs.common.db import Database
from libs.common.logging import configure_logging
from libs.common.metrics import WORKER_HEALTHY, WORKER_NATS_CONNECTED
from libs.common.outbox import OutboxRelay
from libs.common.retention import KernelRetention
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
Loop = Callable[[], Coroutine[Any, Any, None]]


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


# --- supervision ------------------------------------------------------------------------


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff doubles from `first_delay` to `max_delay`; a loop that ran `stable_after`
    seconds starts counting again; `give_up_after` failures in a row end the worker."""

    first_delay: float = 1.0
    max_delay: float = 30.0
    stable_after: float = 60.0
    give_up_after: int = 5


class WorkerFailed(RuntimeError):
    """A loop kept failing: the process must end non-zero so it is restarted whole."""


@dataclass
class LoopState:
    state: str = "starting"  # running | restarting | failed | stopped
    starts: int = 0
    failures: int = 0
    last_error: str | None = None


@dataclass
class WorkerHealth:
    loops: dict[str, LoopState] = field(default_factory=dict)
    nc: NATS | None = None

    def healthy(self) -> bool:
        # No loop yet (connected, still provisioning) is not healthy: a probe that came
        # then would report a worker whose loops have not started.
        return (bool(self.loops) and all(loop.state == "running" for loop in self.loops.values())
                and self.nats_connected())

    def nats_connected(self) -> bool:
        return self.nc is not None and bool(self.nc.is_connected)

    def report(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.healthy() else "failing",
            "nats": "ok" if self.nats_connected() else "down",
            "loops": {name: vars(loop) for name, loop in self.loops.items()},
        }


async def supervise(name: str, run: Loop, stop: asyncio.Event,
                    health: WorkerHealth, policy: RestartPolicy) -> None:
    """Run `run` until `stop`; restart it whenever it raises, is cancelled from outside or
    returns early. Raises `WorkerFailed` after `policy.give_up_after` quick failures."""
    loop = health.loops.setdefault(name, LoopState())
    in_a_row = 0
    while not stop.is_set():
        loop.state, loop.starts = "running", loop.starts + 1
        started = time.monotonic()
        attempt = asyncio.create_task(run(), name=name)
        try:
            await asyncio.wait({attempt})
        except asyncio.CancelledError:
            attempt.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await attempt
            raise
        if stop.is_set() and not attempt.cancelled() and attempt.exception() is None:
            break
        if attempt.cancelled():
            error = "cancelled"
        elif (exc := attempt.exception()) is not None:
            error = f"{type(exc).__name__}: {exc}"
            log.error("worker loop %s failed", name, exc_info=exc)
        else:
            error = "returned before the worker stopped"
        if stop.is_set():
            break
        in_a_row = 1 if time.monotonic() - started >= policy.stable_after else in_a_row + 1
        loop.failures, loop.last_error = loop.failures + 1, error
        if in_a_row >= policy.give_up_after:
            loop.state = "failed"
            raise WorkerFailed(f"worker loop {name} failed {in_a_row} times in a row: {error}")
        delay = min(policy.first_delay * 2 ** (in_a_row - 1), policy.max_delay)
        loop.state = "restarting"
        log.warning("worker loop %s: %s; restarting in %.1fs", name, error, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
    loop.state = "stopped"


# --- the health and metrics endpoint ------------------------------------------------------


async def serve_health(health: WorkerHealth, host: str, port: int) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(health.report()),
                            status=200 if health.healthy() else 503,
                            content_type="application/json")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


# --- the process --------------------------------------------------------------------------


async def run_worker(
    settings: ServiceSettings,
    *,
    consumers: Callable[[WorkerContext], Sequence[EventConsumer]] = lambda _: (),
    tasks: Sequence[Task] = (),
    stop: asyncio.Event | None = None,
    restart: RestartPolicy = RestartPolicy(),  # noqa: B008 - frozen
) -> None:
    """Run the outbox relay, `consumers(ctx)` and `tasks` (each `async def task(ctx)`
    running until `ctx.stop`) under supervision until `stop` is set. Raises
    `WorkerFailed` when a loop keeps failing."""
    service = settings.service_name
    configure_logging(f"{service}-worker", settings.log_level)
    configure_tracing(f"{service}-worker", settings.otlp_endpoint)
    health = WorkerHealth()
    # /healthz as metrics, read at each scrape (alerts cannot read /healthz).
    WORKER_HEALTHY.labels(service).set_function(lambda: float(health.healthy()))
    WORKER_NATS_CONNECTED.labels(service).set_function(lambda: float(health.nats_connected()))
    server = None
    if settings.metrics_port:
        server = await serve_health(health, settings.metrics_host, settings.metrics_port)
    db = Database(settings.database_url, pool_size=5, max_overflow=5)
    nc = await nats_kernel.connect_as(settings, service, f"{service}-worker")
    js = nc.jetstream()
    buckets = await nats_kernel.ensure_platform(js, service, user=settings.nats_user)
    ctx = WorkerContext(settings, db, nc, js, buckets, stop or asyncio.Event())
    relay = OutboxRelay(db, js, service=service)
    retention = KernelRetention(db, service=service,
                                outbox_days=settings.outbox_retention_days,
                                processed_days=settings.processed_events_retention_days,
                                interval_seconds=settings.retention_interval_seconds)
    loops: dict[str, Loop] = {"outbox-relay": functools.partial(relay.run, ctx.stop),
                              "kernel-retention": functools.partial(retention.run, ctx.stop)}
    for consumer in consumers(ctx):
        loops[consumer.name] = functools.partial(consumer.run, ctx.stop)
    for task in tasks:
        loops[getattr(task, "__name__", "task")] = functools.partial(task, ctx)
    # Healthy only once every loop runs: until then /healthz lists them as starting (with
    # no loop listed and NATS connected it would already answer 200).
    health.loops.update({name: LoopState() for name in loops})
    health.nc = nc
    running = [asyncio.create_task(supervise(name, run, ctx.stop, health, restart),
                                   name=f"supervise-{name}") for name, run in loops.items()]
    log.info("worker started: %d loops", len(running))
    failed: BaseException | None = None
    try:
        with settled_heap():
            stopping = asyncio.ensure_future(ctx.stop.wait())
            done, _ = await asyncio.wait([stopping, *running],
                                         return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            for finished in done:
                if finished is not stopping and finished.exception() is not None:
                    failed = finished.exception()
    finally:
        log.info("worker stopping")
        ctx.stop.set()
        _done, pending = await asyncio.wait(running, timeout=settings.worker_drain_seconds)
        for t in pending:
            t.cancel()
        for t in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        with contextlib.suppress(Exception):
            await nc.drain()
        await db.dispose()
        if server is not None:
            await server.cleanup()
        for gauge in (WORKER_HEALTHY, WORKER_NATS_CONNECTED):
            with contextlib.suppress(KeyError):
                gauge.remove(service)
    if failed is not None:
        raise failed


S = TypeVar("S", bound=ServiceSettings)
S_in = TypeVar("S_in", bound=ServiceSettings, contravariant=True)


class WorkerRun(Protocol[S_in]):
    def __call__(self, stop: asyncio.Event,
                 settings: S_in | None = None) -> Coroutine[Any, Any, None]: ...


def worker_runner(settings_class: type[S], *,
                  consumers: Callable[[WorkerContext], Sequence[EventConsumer]] = lambda _: (),
                  tasks: Sequence[Task] = ()) -> WorkerRun[S]:
    """A service's worker `run(stop, settings=None)`: `run_worker` with the service's
    consumers and tasks, settings from the environment unless a test passes its own."""

    async def run(stop: asyncio.Event, settings: S | None = None) -> None:
        await run_worker(settings or settings_class(), consumers=consumers, tasks=tasks,
                         stop=stop)

    return run


def main(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Entry point for `python -m services.<name>.worker`: stop cleanly on signals; exit
    with code 1 when a loop kept failing."""

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(stop)

    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    try:
        asyncio.run(_main())
    except WorkerFailed as exc:
        log.critical("worker exits: %s", exc)
        sys.exit(1)
