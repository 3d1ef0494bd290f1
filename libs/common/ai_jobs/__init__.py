"""The billed AI job: hold → run → capture, or release on failure, with the AI task log,
the account's engines and the reference's progress phases. A service declares its
functions and writes only domain code:

    # models.py
    AI_TASK_LOGS = ai_task_logs_in(PlannerModel.metadata)

    # service.py (request side): 402 before any work, then log row + job in the caller's
    # transaction, PENDING progress; `job.release()` if that transaction does not commit.
    AUTO_CLUSTER = AIFunction("planner", "auto_cluster", "clustering", ("clustering",))
    job = await requests.queue(uow, principal, AUTO_CLUSTER, {"keyword_ids": ids}, units=1)

    # jobs.py (worker side): only domain code
    async def auto_cluster(ctx: AIJobContext) -> Saver:
        await ctx.phase("PREP", "Loading keywords")
        async with ctx.session() as session: ...          # reads
        await ctx.phase("AI_CALL", "Clustering")
        async with ctx.calling_ai("clusters"):
            result = await engine(ctx.provider).cluster(...)   # provider None: local
        ctx.charge(1, model=result.model, usage=result.usage)  # item=... per-item holds

        async def save(uow: UnitOfWork) -> dict[str, Any]:    # with the log's `success`
            ...
            return {"clusters": ...}

        return save

    # worker.py: the job workers, and the sweep of jobs no attempt will finish (ADR 0043)
    runner = AIJobRunner(db, AI_TASK_LOGS, billing, auth, max_deliver=3,
                         deadline_seconds=settings.hold_ttl_seconds)
    workers = runner.workers(js, progress, {AUTO_CLUSTER: auto_cluster}, ack_wait=60)
"""

from __future__ import annotations

from libs.common.ai_jobs.abandoned import AbandonedJobs
from libs.common.ai_jobs.log import Charge, TaskLogRepository
from libs.common.ai_jobs.request import AIFunction, AIJobRequests, QueuedJob
from libs.common.ai_jobs.runner import AIJobContext, AIJobRunner, JobBody, Saver, ai_failure
from libs.common.ai_jobs.tables import LOG_STATUSES, ai_task_logs_in

__all__ = [
    "LOG_STATUSES",
    "AIFunction",
    "AIJobContext",
    "AIJobRequests",
    "AIJobRunner",
    "AbandonedJobs",
    "Charge",
    "JobBody",
    "QueuedJob",
    "Saver",
    "TaskLogRepository",
    "ai_failure",
    "ai_task_logs_in",
]
