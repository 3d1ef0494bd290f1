"""Planner's worker process: `python -m services.planner.worker`.

Runs the outbox relay, the consumer that builds the read models from auth's events, the
one that marks ideas `completed` when writer has written them, and the AI job workers
(auto_cluster, auto_generate_ideas) on the work queue, and answers automation's pipeline
commands (`services/planner/pipeline.py`) and writer's `lookup_cluster`
(`services/planner/commands.py`).
"""

from __future__ import annotations

import asyncio

from libs.common.billing import BillingClient
from libs.common.jobs import TaskProgress, WorkerLoop, run_job_workers
from libs.common.runtime import WorkerContext, main, run_worker
from services.planner.commands import serve_commands
from services.planner.events import auth_consumer, writer_consumer
from services.planner.jobs import Engines, PlannerJobs
from services.planner.pipeline import PlannerPipeline
from services.planner.settings import PlannerSettings


def job_workers(ctx: WorkerContext, settings: PlannerSettings,
                engines: Engines | None = None) -> list[WorkerLoop]:
    jobs = PlannerJobs(ctx.db, BillingClient(ctx.nc, timeout=settings.command_timeout_seconds),
                       settings, engines)
    return jobs.runner.workers(ctx.js, TaskProgress.in_buckets(ctx.buckets), jobs.bodies,
                               ack_wait=settings.job_ack_wait_seconds)


async def run(stop: asyncio.Event, settings: PlannerSettings | None = None, *,
              engines: Engines | None = None) -> None:
    settings = settings or PlannerSettings()

    async def jobs(ctx: WorkerContext) -> None:
        await run_job_workers(job_workers(ctx, settings, engines), ctx.stop)

    # `pipeline`: automation's pipeline commands (stages 1-3); `serve_commands`: the
    # lookups other services make on a read-model miss.
    await run_worker(settings, consumers=lambda ctx: [auth_consumer(ctx.db, ctx.js),
                                                      writer_consumer(ctx.db, ctx.js)],
                     tasks=[jobs, PlannerPipeline.task(settings), serve_commands], stop=stop)


if __name__ == "__main__":
    main(run)
