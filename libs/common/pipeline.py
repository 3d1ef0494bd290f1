"""The pipeline commands: what planner and writer answer for automation, declared once for
both ends (NATS request-reply through `libs/common/commands.py`).

Automation never reads another service's database. For each of its stages it asks the
owning service two things:

    client = PipelineClient(nc)
    pending = await client.pending(account_id, site_id, stage=1, limit=20)   # ids waiting
    queued = await client.queue(account_id, site_id, stage=1, ids=pending.ids,
                                key="run:12:stage:1:batch:0", user_id=7, run_id="12")

`queue` starts the owner's existing job for those ids (stage 3, queueing ideas to writer,
is free and has no job). The job's task id is derived from `key` (`task_id_for`): asking
again with the same key answers the same task and places no second hold, so a caller
that died between asking and recording the answer simply asks again. The job's result is
the kernel's task progress (`libs/common/jobs.py`, bucket `igny8_task_progress`).

Stages (DOMAIN.md): 1 active keywords without a cluster → `auto_cluster` (one sector per
batch); 2 clusters without ideas → `auto_generate_ideas`; 3 new ideas → writer tasks;
4 draft tasks without content → `auto_generate_content`; 5 drafts without images →
`generate_image_prompts`; 6 pending images → `generate_images`; 7 drafts whose images are
done, for the review gate (`items`: optimizer score, placeholders left).

Stage 7 in `auto` mode has a third command, writer's `pipeline_publish`: approve and
publish one content to the site's active WordPress integration, under a key. It answers
once the publish is over, `published` or not with the reason (`code`: `no_integration`,
`inactive`, `credentials`, `failed`); writer's publisher makes it exactly once (ADR 0019),
and a request whose key already published the content is answered from the record.
"""

from __future__ import annotations

import abc
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, Field
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.ai_jobs import AIJobRequests
from libs.common.ai_jobs.settings import AIJobSettings
from libs.common.commands import Command, CommandClient, Handler, serve
from libs.common.db import Database, TenantScope
from libs.common.repository import Visibility
from libs.common.runtime import Task, WorkerContext
from libs.common.security import Principal
from libs.common.uow import UnitOfWork, unit_of_work

STAGES = (1, 2, 3, 4, 5, 6, 7)
PLANNER_STAGES = (1, 2, 3)
WRITER_STAGES = (4, 5, 6, 7)

# uuid5 namespace of the task ids derived from automation's keys.
TASK_NAMESPACE = uuid.UUID("5b0f7c1e-4d0a-4a57-9d1e-1a9e8c0b7a51")


def task_id_for(key: str) -> uuid.UUID:
    """The job task id a pipeline key stands for (the same key, the same task)."""
    return uuid.uuid5(TASK_NAMESPACE, key)


def owner_of(stage: int) -> str:
    if stage in PLANNER_STAGES:
        return "planner"
    if stage in WRITER_STAGES:
        return "writer"
    raise ValueError(f"no stage {stage}")


class PendingWork(BaseModel):
    account_id: int
    site_id: int
    stage: int = Field(ge=1, le=7)
    limit: int = Field(default=100, ge=0, le=1000)
    # Stage 4: the ideas the caller queued to writer, whose tasks it waits for.
    expect: list[int] = Field(default_factory=list, max_length=10_000)
    # Ids the caller took already (a run's earlier batches: parked failures, stage 7's
    # drafts kept as drafts): left out of `ids` and `items`, still in `count`. Asking for
    # `limit + taken` instead made the owner read (stage 7: score) every taken item
    # again for each batch.
    exclude: list[int] = Field(default_factory=list, max_length=50_000)
    # Stage 7: score each draft for the gate (the optimizer's analysis, the costliest part
    # of the answer). Automation's draft mode keeps every draft whatever its score.
    score: bool = True

    def chosen(self, rows: list[Any]) -> list[Any]:
        """The next batch of `rows` (by `id`): at most `limit`, none of `exclude`."""
        if not self.exclude:
            return rows[:self.limit]
        left_out = set(self.exclude)
        return [r for r in rows if r["id"] not in left_out][:self.limit]


class PendingResult(BaseModel):
    stage: int
    count: int  # everything waiting at this stage in the site
    ids: list[int] = Field(default_factory=list)  # the next batch, at most `limit`
    # Stage 1: per id {"sector_id"} (a batch is one sector); stage 7: per id {"title",
    # "optimizer_score", "placeholders", "images"}.
    items: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Stage 4: how many of `expect` have no task yet (writer makes them from events).
    missing: int = 0


class QueueWork(BaseModel):
    account_id: int
    site_id: int
    stage: int = Field(ge=1, le=6)
    ids: list[int] = Field(min_length=1, max_length=1000)
    key: str = Field(min_length=1, max_length=200)
    user_id: int | None = None
    run_id: str | None = None


class QueueResult(BaseModel):
    stage: int
    task_id: uuid.UUID | None = None  # None: the stage has no job (3)
    ids: list[int] = Field(default_factory=list)  # what was queued
    replayed: bool = False


class PublishWork(BaseModel):
    account_id: int
    site_id: int
    content_id: int
    key: str = Field(min_length=1, max_length=200)
    user_id: int | None = None
    run_id: str | None = None


class PublishAnswer(BaseModel):
    content_id: int
    published: bool
    # `published`, or why not: `no_integration`, `inactive`, `credentials` (none saved,
    # or the site refused them), `failed` (the site's answer, in `reason`).
    code: str
    reason: str = ""
    post_id: int | None = None
    url: str | None = None
    replayed: bool = False  # answered from the record of an earlier request


PLANNER_PENDING = Command("planner", "pipeline_pending", PendingWork, PendingResult,
                          idempotent=True)
PLANNER_QUEUE = Command("planner", "pipeline_queue", QueueWork, QueueResult, idempotent=True)
WRITER_PENDING = Command("writer", "pipeline_pending", PendingWork, PendingResult,
                         idempotent=True)
WRITER_QUEUE = Command("writer", "pipeline_queue", QueueWork, QueueResult, idempotent=True)

WRITER_PUBLISH = Command("writer", "pipeline_publish", PublishWork, PublishAnswer,
                         idempotent=True)

PENDING = {"planner": PLANNER_PENDING, "writer": WRITER_PENDING}
QUEUE = {"planner": PLANNER_QUEUE, "writer": WRITER_QUEUE}


class PipelineClient(CommandClient):
    async def pending(self, account_id: int, site_id: int, *, stage: int,
                      limit: int = 100, expect: list[int] | None = None,
                      exclude: list[int] | None = None, score: bool = True) -> PendingResult:
        request = PendingWork(account_id=account_id, site_id=site_id, stage=stage, limit=limit,
                              expect=expect or [], exclude=exclude or [], score=score)
        return await self.call(PENDING[owner_of(stage)], request)

    async def queue(self, account_id: int, site_id: int, *, stage: int, ids: list[int],
                    key: str, user_id: int | None = None,
                    run_id: str | None = None) -> QueueResult:
        request = QueueWork(account_id=account_id, site_id=site_id, stage=stage, ids=ids,
                            key=key, user_id=user_id, run_id=run_id)
        return await self.call(QUEUE[owner_of(stage)], request)

    async def publish(self, account_id: int, site_id: int, content_id: int, *, key: str,
                      user_id: int | None = None, run_id: str | None = None,
                      timeout: float | None = None) -> PublishAnswer:
        request = PublishWork(account_id=account_id, site_id=site_id, content_id=content_id,
                              key=key, user_id=user_id, run_id=run_id)
        return await self.call(WRITER_PUBLISH, request, timeout=timeout)


S = TypeVar("S", bound=AIJobSettings)


class PipelineAnswerer(abc.ABC, Generic[S]):
    """A service's answers to automation's two commands for the stages it owns: `pending`
    (what waits) and `queue` (start the service's own job for a batch). Subclasses name
    their service (`owner`, which names the commands) and AI task log and write the two
    answers; the billed-job requests they queue through, the session a `pending` reads in,
    the unit of work and caller a `queue` acts as, and serving them from a worker, are
    written here once."""

    owner: ClassVar[str]
    ai_task_logs: ClassVar[Table]

    def __init__(self, db: Database, settings: S, requests: AIJobRequests) -> None:
        self.db = db
        self.settings = settings
        self.requests = requests

    def handlers(self) -> dict[Command[Any, Any], Handler]:
        return {PENDING[self.owner]: self.pending, QUEUE[self.owner]: self.queue}

    @abc.abstractmethod
    async def pending(self, req: PendingWork) -> PendingResult:
        """How much waits at the request's stage in its site, and the next batch of it."""

    @abc.abstractmethod
    async def queue(self, req: QueueWork) -> QueueResult:
        """Start the service's own job for the request's ids, under its key."""

    @contextlib.asynccontextmanager
    async def reading(self, req: PendingWork) -> AsyncIterator[tuple[AsyncSession, Visibility]]:
        """A read-only session in the request's account, and what a `pending` sees: the
        request's one site.

        One snapshot (REPEATABLE READ) for the whole answer: an answer read in several
        statements (stage 4's offered tasks, then which expected ideas have one) saw the
        owner's own consumer commit between them, and said "nothing to offer, nothing
        missing" about tasks that had just been made, which closed stage 4 with nothing
        done (automation's fault test, `0 == 15`, about once in ten runs)."""
        async with self.db.session(TenantScope.account(req.account_id),
                                   read_only=True) as session:
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session, Visibility(req.account_id, (req.site_id,))

    @contextlib.asynccontextmanager
    async def acting(self, req: QueueWork
                     ) -> AsyncIterator[tuple[UnitOfWork, Principal, AIJobRequests]]:
        """What a `queue` starts its job in: one unit of work in the request's account, as
        the run's user (an admin of the account), with job requests keyed by the request's
        key (asking twice is one job, and places no second hold)."""
        principal = Principal(user_id=req.user_id or 0, account_id=req.account_id,
                              role="admin")
        async with unit_of_work(self.db, TenantScope.account(req.account_id)) as uow:
            yield uow, principal, self.requests.keyed(task_id_for(req.key))

    @classmethod
    def task(cls, settings: S) -> Task:
        """The worker task (`run_worker(tasks=[...])`, named `pipeline`) that answers the
        commands until the worker stops."""

        async def pipeline(ctx: WorkerContext) -> None:
            answers = cls(ctx.db, settings, AIJobRequests.connected(
                cls.ai_task_logs, settings, ctx.nc, ctx.buckets))
            await serve(ctx.nc, answers.handlers(), stop=ctx.stop)

        return pipeline
