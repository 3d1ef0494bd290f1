"""Writer's worker process: `python -m services.writer.worker`.

Runs the outbox relay, the consumers of auth's directory and of planner's events (queued
ideas become tasks; clusters and keywords feed the briefs' read models), and the AI job
workers (`auto_generate_content`, `generate_image_prompts`, `generate_images`,
`optimize`) and the publishing jobs (`publish`, `unpublish`) on the work queue, and
automation's pipeline commands (`pipeline.py`, and `publishing/approval.py` for stage
7's publish), each supervised
(`libs.common.runtime.run_worker`).
"""

from __future__ import annotations

import asyncio

from libs.common.billing import BillingClient
from libs.common.jobs import TaskProgress, WorkerLoop, run_job_workers
from libs.common.runtime import WorkerContext, main, run_worker
from libs.common.storage import build_storage
from services.writer.events import auth_consumer, planner_consumer
from services.writer.jobs import DraftFn, WriterJobs, draft_offline
from services.writer.pipeline import WriterPipeline
from services.writer.publishing.approval import AutoPublishing
from services.writer.publishing.jobs import PublishingJobs
from services.writer.service import Platform
from services.writer.settings import WriterSettings


def job_workers(ctx: WorkerContext, jobs: WriterJobs,
                settings: WriterSettings) -> list[WorkerLoop]:
    return jobs.runner.workers(ctx.js, TaskProgress.in_buckets(ctx.buckets), jobs.bodies,
                               ack_wait=settings.job_ack_wait_seconds)


async def run(stop: asyncio.Event, settings: WriterSettings | None = None, *,
              offline: DraftFn = draft_offline) -> None:
    settings = settings or WriterSettings()

    async def jobs(ctx: WorkerContext) -> None:
        storage = build_storage(settings)
        platform = Platform(settings, storage=storage)
        billing = BillingClient(ctx.nc, timeout=settings.command_timeout_seconds)
        writer_jobs = WriterJobs(ctx.db, billing, platform, offline=offline)
        publishing = PublishingJobs(ctx.db, platform).workers(
            ctx.js, TaskProgress.in_buckets(ctx.buckets),
            ack_wait=settings.job_ack_wait_seconds, max_deliver=settings.job_max_deliver)
        try:
            await run_job_workers([*job_workers(ctx, writer_jobs, settings), *publishing],
                                  ctx.stop)
        finally:
            await storage.aclose()

    async def auto_publishing(ctx: WorkerContext) -> None:
        """Automation's stage 7 in `auto` mode (`pipeline_publish`)."""
        await AutoPublishing.serve(ctx, settings)

    await run_worker(settings, consumers=lambda ctx: [auth_consumer(ctx.db, ctx.js),
                                                      planner_consumer(ctx.db, ctx.js)],
                     tasks=[jobs, WriterPipeline.task(settings), auto_publishing], stop=stop)


if __name__ == "__main__":
    main(run)
