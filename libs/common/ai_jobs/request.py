"""Asking for a billed AI job (the API side): credits first, then the log row and the job
in the caller's transaction."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client as NATS
from sqlalchemy import Table

from libs.common import jobs
from libs.common.ai_jobs.log import TaskLogRepository, holds_of
from libs.common.ai_jobs.settings import AIJobSettings
from libs.common.billing import BillingClient, HoldResult
from libs.common.jobs import TaskProgress
from libs.common.security import Principal
from libs.common.uow import UnitOfWork


@dataclass(frozen=True)
class AIFunction:
    """One billed AI function: the job it runs (`igny8.jobs.<service>.<name>`), billing's
    operation it is charged as, and the prompt types it asks auth for."""

    service: str
    name: str
    operation: str
    prompt_types: tuple[str, ...] = ()


@dataclass
class QueuedJob:
    """A job recorded and queued in the caller's transaction, whose unit of work gives
    its credits back (`release`) if it does not commit."""

    task_id: uuid.UUID
    account_id: int
    holds: dict[str, int]
    billing: BillingClient = field(repr=False)
    # Asked again with the key of a job already recorded: nothing new was placed.
    replayed: bool = False

    async def release(self) -> None:
        await asyncio.gather(*(self.billing.release(hold, account_id=self.account_id)
                               for hold in self.holds.values()), return_exceptions=True)


class AIJobRequests:
    """The request side of a service's billed AI jobs."""

    def __init__(self, log: Table, billing: BillingClient, progress: TaskProgress | None, *,
                 hold_ttl_seconds: int, task_id: uuid.UUID | None = None) -> None:
        self.log = log
        self.billing = billing
        self.progress = progress
        self.hold_ttl_seconds = hold_ttl_seconds
        self.task_id = task_id

    @classmethod
    def connected(cls, log: Table, settings: AIJobSettings, nc: NATS,
                  buckets: Mapping[str, Any]) -> AIJobRequests:
        """The requests of a running process (an app's lifespan, a worker's task): billing
        over its NATS connection with the settings' command timeout, progress in the
        platform's bucket, holds that live `hold_ttl_seconds`."""
        return cls(log, BillingClient(nc, timeout=settings.command_timeout_seconds),
                   TaskProgress.in_buckets(buckets), hold_ttl_seconds=settings.hold_ttl_seconds)

    def keyed(self, task_id: uuid.UUID) -> AIJobRequests:
        """These requests for one job whose task id the caller chose (automation derives
        it from its step's key, `libs/common/pipeline.task_id_for`): queueing it again
        answers the job already recorded, with no second hold."""
        return AIJobRequests(self.log, self.billing, self.progress,
                             hold_ttl_seconds=self.hold_ttl_seconds, task_id=task_id)

    async def queue(self, uow: UnitOfWork, principal: Principal, function: AIFunction,
                    data: dict[str, Any], *, units: int = 1,
                    items: Mapping[str, int] | None = None) -> QueuedJob:
        """Hold the estimate (`PaymentRequired`, HTTP 402, before any work), record the
        task log row and queue the job through the outbox, in `uow`'s transaction (which
        releases the holds if it does not commit); mark the task PENDING. One hold of
        `units`, or one per item of `items` (item → units, placed together, all or none),
        for jobs that capture what each item cost (partial success). Holds are keyed by
        the task id: asking again places nothing twice."""
        task_id = self.task_id or uuid.uuid4()
        account_id = principal.account_id
        if self.task_id is not None:
            await TaskLogRepository(uow.session, self.log).lock_task_id(task_id)
            done = await TaskLogRepository(uow.session, self.log).get(task_id)
            if done is not None:
                return QueuedJob(task_id, int(done["account_id"]), holds_of(done),
                                 self.billing, replayed=True)
        wanted = dict(items) if items is not None else {"": units}
        held: dict[str, HoldResult] = {}
        if items is None:
            held[""] = await self.billing.hold(account_id, function.operation, units=units,
                                               idempotency_key=str(task_id),
                                               ttl_seconds=self.hold_ttl_seconds)
        elif wanted:
            # The items' holds in one command, all or none: one each was a billing round
            # each (billing changes an account's balance once per statement).
            batch = await self.billing.hold_batch(
                account_id, function.operation,
                {f"{task_id}:{item}": n for item, n in wanted.items()},
                ttl_seconds=self.hold_ttl_seconds)
            held = dict(zip(wanted, batch.holds, strict=True))
        job = QueuedJob(task_id, account_id, {item: r.hold_id for item, r in held.items()},
                        self.billing)
        try:
            await TaskLogRepository(uow.session, self.log).insert({
                "account_id": account_id, "task_id": task_id, "function": function.name,
                "user_id": principal.user_id, "status": "pending",
                "hold_id": job.holds.get(""), "holds": job.holds,
                "credits_held": sum(r.amount for r in held.values()),
                "request": {**data, "operation": function.operation,
                            "units": sum(wanted.values())},
            })
            await jobs.enqueue(uow.session, service=function.service, function=function.name,
                               account_id=account_id, task_id=task_id, data=data)
            if self.progress is not None:
                await self.progress.pending(task_id, account_id)
        except BaseException:
            await job.release()
            raise
        uow.on_rollback(job.release)
        return job

