"""The AI task log's SQL, and what a job charges."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import Table, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.ai_jobs.tables import OPEN_STATUSES
from libs.common.billing import BillingClient


@dataclass(frozen=True)
class Charge:
    """Work a job did, to capture against the hold of `item` ("" is the job's one hold):
    units of billing's operation, and the tokens and cost of the AI calls behind them."""

    units: int
    model: str = ""
    tokens_input: int = 0
    tokens_output: int = 0
    cost_usd: Decimal = Decimal("0")
    item: str = ""

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "cost_usd": str(self.cost_usd)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Charge:
        return cls(**{**data, "cost_usd": Decimal(str(data.get("cost_usd", "0")))})


class TaskLogRepository:
    def __init__(self, session: AsyncSession, table: Table) -> None:
        self.session = session
        self.t = table

    async def insert(self, values: dict[str, Any]) -> None:
        await self.session.execute(insert(self.t).values(**values))

    async def get(self, task_id: UUID, *, lock: bool = False) -> dict[str, Any] | None:
        query = select(self.t).where(self.t.c.task_id == task_id)
        if lock:
            query = query.with_for_update()
        row = (await self.session.execute(query)).mappings().first()
        return dict(row) if row else None

    async def lock_task_id(self, task_id: UUID) -> None:
        """Serialise, until the transaction ends, those who queue a job of this task id
        (the second finds the first's row and replays it)."""
        await self.session.execute(select(func.pg_advisory_xact_lock(
            func.hashtextextended(str(task_id), 0))))

    async def update(self, task_id: UUID, values: dict[str, Any]) -> None:
        await self.session.execute(
            update(self.t).where(self.t.c.task_id == task_id).values(**values))

    async def heartbeat(self, task_id: UUID) -> None:
        """The attempt at work on the job is alive (the sweep leaves its log alone)."""
        await self.session.execute(
            update(self.t).where(self.t.c.task_id == task_id, self.t.c.status == "running")
            .values(heartbeat_at=func.now()))

    async def abandoned(self, *, older_than: timedelta, silent_for: timedelta,
                        task_id: UUID | None = None, limit: int = 100,
                        lock: bool = False) -> list[dict[str, Any]]:
        """Logs still open (`pending`, `running`) made more than `older_than` ago (their
        job's deadline has passed) whose attempt, if any, has not said it is alive for
        `silent_for`, oldest first; with `lock`, those another transaction holds are
        skipped and the rest locked for this one."""
        t = self.t
        query = (select(t).where(
            t.c.status.in_(OPEN_STATUSES), t.c.created_at < func.now() - older_than,
            or_(t.c.heartbeat_at.is_(None), t.c.heartbeat_at < func.now() - silent_for),
            *([t.c.task_id == task_id] if task_id is not None else []))
            .order_by(t.c.created_at).limit(limit))
        if lock:
            query = query.with_for_update(skip_locked=True)
        return [dict(r) for r in (await self.session.execute(query)).mappings()]

    async def release_and_fail(self, log: dict[str, Any], billing: BillingClient,
                               error: str, values: dict[str, Any]) -> None:
        """Close a job as failed, in the caller's transaction holding its log's row: each
        of its holds released (billing releases a hold once; one captured, released or
        expired already is left as it is), then the log `failed` with `error`. The one
        way a job is closed as failed, by whoever gets there first: its attempt, its
        delivery after the last attempt died (ADR 0028), the sweep of abandoned jobs
        (ADR 0043). A release that fails raises, and nothing is recorded (try again)."""
        released = await asyncio.gather(*(
            billing.release(hold_id, account_id=log["account_id"])
            for hold_id in holds_of(log).values()), return_exceptions=True)
        failure = next((r for r in released if isinstance(r, BaseException)), None)
        if failure is not None:
            raise failure
        await self.update(log["task_id"], {"status": "failed", "error": error[:2000],
                                           "finished_at": func.now(), **values})


def holds_of(log: dict[str, Any]) -> dict[str, int]:
    """item → hold id (logs written before `holds` existed name their one `hold_id`)."""
    holds = {str(k): int(v) for k, v in (log.get("holds") or {}).items()}
    if not holds and log.get("hold_id") is not None:
        holds[""] = int(log["hold_id"])
    return holds
