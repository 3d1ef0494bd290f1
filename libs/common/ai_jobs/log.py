"""The AI task log's SQL, and what a job charges."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession


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


def holds_of(log: dict[str, Any]) -> dict[str, int]:
    """item → hold id (logs written before `holds` existed name their one `hold_id`)."""
    holds = {str(k): int(v) for k, v in (log.get("holds") or {}).items()}
    if not holds and log.get("hold_id") is not None:
        holds[""] = int(log["hold_id"])
    return holds
