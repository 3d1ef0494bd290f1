"""The sweep of abandoned billed AI jobs (ADR 0043): task logs still `pending` or
`running` past their job's deadline with no attempt alive are closed as failed — their
holds released, the log `failed` with why, the task progress FAILURE — exactly as a
failed attempt closes its job (`TaskLogRepository.release_and_fail`, once, whoever gets
there first).

ADR 0028 closes a job whose last attempt's worker died by delivering it once more. Some
logs no delivery will ever reach: a job whose failure could not be recorded on its last
attempt (the database away before ADR 0040, billing not answering the release) was
terminated with its log `running`; a job message lost before any attempt. Their holds
expire and billing releases them, but nothing closed the log, and the user saw the job
running for ever.

- The deadline is the job's holds' lifetime from when it was asked for
  (`hold_ttl_seconds`: longer than every retry of a job), so a job a redelivery may still
  reach is left to it.
- "No attempt alive": an attempt touches its log's `heartbeat_at` every
  `heartbeat_seconds`; a log whose last beat is older than three of them (or that never
  had one) has nobody at work on it.
- Each log is closed in its own transaction, its row locked (`SKIP LOCKED`: another
  replica's sweep or an attempt holding it is left alone) and the conditions checked
  again under the lock. Billing releases a hold once (a hold already expired, released
  or captured is left as it is), so nothing is released twice and nothing is charged.
- Each one closed counts in `igny8_ai_jobs_abandoned_total{service, function}`; the
  sweep's functions start at 0 when it starts, so the first one closed is an increase
  Prometheus sees (a series born at 1 has none: the alert on it would miss it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import timedelta
from uuid import UUID

from sqlalchemy import Table

from libs.common.ai_jobs.log import TaskLogRepository
from libs.common.aio import sleep_or_stop
from libs.common.billing import BillingClient
from libs.common.db import Database, TenantScope
from libs.common.jobs import ProgressReporter, TaskProgress
from libs.common.metrics import AI_JOBS_ABANDONED
from libs.common.uow import unit_of_work

log = logging.getLogger(__name__)

ABANDONED = ("abandoned: no attempt finished before the job's deadline (its worker died, "
             "or its failure could not be recorded); its held credits were released")
FINAL_STATES = ("SUCCESS", "FAILURE")


class AbandonedJobs:
    """The worker loop that closes one service's abandoned jobs (beside its job
    workers, `AIJobRunner.workers`)."""

    def __init__(self, db: Database, table: Table, billing: BillingClient,
                 progress: TaskProgress | None, *, service: str, deadline_seconds: float,
                 silent_seconds: float, interval_seconds: float, batch_size: int = 100,
                 functions: Iterable[str] = ()) -> None:
        self.db = db
        self.table = table
        self.billing = billing
        self.progress = progress
        self.service = service
        self.deadline = timedelta(seconds=deadline_seconds)
        self.silent = timedelta(seconds=silent_seconds)
        self.interval_seconds = interval_seconds
        self.batch_size = batch_size
        self.functions = tuple(functions)

    async def run(self, stop: asyncio.Event) -> None:
        for function in self.functions:  # counted from 0 (see the module's docstring)
            AI_JOBS_ABANDONED.labels(self.service, function)
        while not stop.is_set():
            await sleep_or_stop(stop, self.interval_seconds)
            if stop.is_set():
                return
            try:
                await self.close_once()
            except Exception:  # a sweep never ends the worker: the next one tries again
                log.exception("%s: the sweep of abandoned AI jobs failed", self.service)

    async def close_once(self) -> int:
        """One pass: every abandoned job closed that can be now; how many."""
        async with unit_of_work(self.db, TenantScope.system(), read_only=True) as uow:
            found = await TaskLogRepository(uow.session, self.table).abandoned(
                older_than=self.deadline, silent_for=self.silent, limit=self.batch_size)
        closed = 0
        for row in found:
            try:
                function = await self._close(int(row["account_id"]), row["task_id"])
            except Exception as exc:  # billing not answering: the next pass tries again
                log.warning("%s: abandoned job %s not closed yet: %r", self.service,
                            row["task_id"], exc)
                continue
            if function is not None:
                closed += 1
                AI_JOBS_ABANDONED.labels(self.service, function).inc()
                log.warning("%s: job %s (%s) closed: %s", self.service, row["task_id"],
                            function, ABANDONED)
                await self._progress_failed(int(row["account_id"]), row["task_id"])
        return closed

    async def _close(self, account_id: int, task_id: UUID) -> str | None:
        """The job closed as failed, if it is still abandoned once its row is ours: its
        function's name; None when it is not (finished meanwhile, alive again, held by
        someone else)."""
        async with unit_of_work(self.db, TenantScope.account(account_id)) as uow:
            logs = TaskLogRepository(uow.session, self.table)
            found = await logs.abandoned(older_than=self.deadline, silent_for=self.silent,
                                         task_id=task_id, limit=1, lock=True)
            if not found:
                return None
            await logs.release_and_fail(found[0], self.billing, ABANDONED, {})
            return str(found[0]["function"])

    async def _progress_failed(self, account_id: int, task_id: UUID) -> None:
        """What the task's caller reads (task progress, an automation step following the
        job) says it failed, unless it already says how the job ended."""
        if self.progress is None:
            return
        try:
            doc = await self.progress.get(task_id)
            if (doc or {}).get("state") not in FINAL_STATES:
                await ProgressReporter(self.progress, task_id, account_id).fail(ABANDONED)
        except Exception as exc:  # NATS away: the log, which says it, is what counts
            log.warning("%s: progress of job %s not updated: %r", self.service, task_id, exc)
