"""`python -m services.automation.worker`: the outbox relay, the consumers (auth's
directory; billing's debits, the runs' charges, of which the one completing a finished
step's charges wakes the engine; planner's and writer's events and its own runs' starts
and resumes, which wake the engine, as do jobs' final progress), the engine that advances
running runs (`orchestration.Orchestrator`) and the scheduler, each supervised
(`libs.common.runtime.run_worker`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy
from sqlalchemy.exc import DBAPIError, OperationalError

from libs.common import nats as nats_kernel
from libs.common.billing import BillingClient
from libs.common.jobs import TaskProgress
from libs.common.pipeline import PipelineClient
from libs.common.runtime import RestartPolicy, WorkerContext, main, run_worker
from services.automation.events import auth_consumer, billing_consumer, wake_consumer
from services.automation.orchestration import Orchestrator, Publisher, Scheduler
from services.automation.settings import AutomationSettings

log = logging.getLogger(__name__)

# A task progress document in a final state (`libs/common/jobs.TaskProgress`).
ENDED = re.compile(rb'"state":\s*"(SUCCESS|FAILURE)"')
PLANNER_WAKERS = ["igny8.planner.keywords.clustered", "igny8.planner.ideas.generated",
                  "igny8.planner.idea.queued"]
# A run started or resumed by the API (another process) moves at once, not at the next tick.
OWN_WAKERS = ["igny8.automation.run.started", "igny8.automation.run.resumed"]
WRITER_WAKERS = ["igny8.writer.task.created", "igny8.writer.content.generated",
                 "igny8.writer.image_prompts.generated", "igny8.writer.images.generated"]


async def _sleep(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await w


async def _unless_database_away(what: str, step: Callable[[], Awaitable[object]]) -> object:
    """One pass of a polling loop; a database that is away (restarting, failing over,
    unreachable) is waited for at the next pass, not raised: the loop's supervisor gives
    up after five quick failures and the whole worker exits, so a database away for ~15 s
    ended the engine (and under `igny8 up`, away for ~75 s, ended it for good, leaving
    every run `running`), while the other workers' loops ride such an outage out."""
    try:
        return await step()
    except DBAPIError as exc:
        if not (isinstance(exc, OperationalError) or exc.connection_invalidated):
            raise
        log.warning("%s: the database is away (%s); trying again at the next tick", what,
                    str(exc.orig or exc).splitlines()[0])
        return None


async def run(stop: asyncio.Event, settings: AutomationSettings | None = None, *,
              publisher: Publisher | None = None, scheduler: bool = True,
              restart: RestartPolicy = RestartPolicy()) -> None:  # noqa: B008 - frozen
    settings = settings or AutomationSettings()
    wake = asyncio.Event()
    timeout = settings.command_timeout_seconds

    async def engine(ctx: WorkerContext) -> None:
        orchestrator = Orchestrator(
            ctx.db, PipelineClient(ctx.nc, timeout=timeout),
            TaskProgress.in_buckets(ctx.buckets), settings, publisher)
        while not ctx.stop.is_set():
            wake.clear()
            await _unless_database_away("engine", orchestrator.advance_due)
            await _sleep(ctx.stop, wake, settings.tick_seconds)

    async def job_results(ctx: WorkerContext) -> None:
        """A job that ends (its progress turns SUCCESS or FAILURE) wakes the engine at
        once: the owners' events come before their jobs' last writes to the progress.

        Through an ordered push consumer of the bucket's stream, new entries only: a
        service may not subscribe to the bucket's subjects (libs/common/natsauth.py), so a
        plain subscription was refused and the engine waited for its tick. The consumer
        delivers to our own inbox; nats-py replaces it after a gap."""

        async def seen(msg: Msg) -> None:
            if ENDED.search(msg.data):
                wake.set()

        bucket = nats_kernel.TASK_PROGRESS_BUCKET
        sub = await ctx.js.subscribe(f"$KV.{bucket}.>", stream=f"KV_{bucket}", cb=seen,
                                     ordered_consumer=True, deliver_policy=DeliverPolicy.NEW)
        try:
            await ctx.stop.wait()
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def schedules(ctx: WorkerContext) -> None:
        runs = Scheduler(ctx.db, PipelineClient(ctx.nc, timeout=timeout),
                         BillingClient(ctx.nc, timeout=timeout), settings)
        never = asyncio.Event()
        while not ctx.stop.is_set():
            if await _unless_database_away("scheduler", runs.run_due):
                wake.set()
            await _sleep(ctx.stop, never, settings.schedule_check_seconds)

    await run_worker(settings, consumers=lambda ctx: [
        auth_consumer(ctx.db, ctx.js),
        billing_consumer(ctx.db, ctx.js, wake.set),
        wake_consumer(ctx.db, ctx.js, "planner", PLANNER_WAKERS, wake.set),
        wake_consumer(ctx.db, ctx.js, "writer", WRITER_WAKERS, wake.set),
        wake_consumer(ctx.db, ctx.js, "automation", OWN_WAKERS, wake.set),
    ], tasks=[engine, job_results, *([schedules] if scheduler else [])], stop=stop,
        restart=restart)


if __name__ == "__main__":
    main(run)
