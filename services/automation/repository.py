"""All of automation's SQL: one repository per aggregate (configs, runs with their steps,
items, charges and log lines), made for the caller's `Visibility`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from sqlalchemy import Table, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert

from libs.common.repository import Ordering, Repository, Row
from services.automation.models import (
    ACTIVE_STATUSES,
    AutomationCharge,
    AutomationConfig,
    AutomationItem,
    AutomationLog,
    AutomationRun,
    AutomationStep,
    RunStatus,
    StepStatus,
)

CONFIGS: Table = AutomationConfig.__table__  # type: ignore[attr-defined]
RUNS: Table = AutomationRun.__table__  # type: ignore[attr-defined]
STEPS: Table = AutomationStep.__table__  # type: ignore[attr-defined]
ITEMS: Table = AutomationItem.__table__  # type: ignore[attr-defined]
CHARGES: Table = AutomationCharge.__table__  # type: ignore[attr-defined]
LOGS: Table = AutomationLog.__table__  # type: ignore[attr-defined]

ACTIVE_STEP_STATUSES = (StepStatus.QUEUED, StepStatus.RUNNING)
# The advisory lock space of runs being advanced (one process at a time per run).
RUN_LOCK_SPACE = 0x61757430


class ConfigRepository(Repository[Row]):
    table = CONFIGS

    async def of_site(self, site_id: int, *, lock: bool = False) -> Row | None:
        query = self.select().where(*self.scope(), CONFIGS.c.site_id == site_id)
        if lock:
            query = query.with_for_update()
        found = await self.fetch(query)
        return found[0] if found else None

    async def upsert(self, site_id: int, values: dict[str, Any]) -> Row:
        row = self._owned({"site_id": site_id, **values})
        statement = insert(CONFIGS).values(**row).on_conflict_do_update(
            index_elements=["site_id"], set_={**values, "updated_at": func.now()},
        ).returning(CONFIGS)
        found = await self.fetch(statement)
        return found[0]

    async def due(self, now: datetime, limit: int = 100) -> list[Row]:
        """Enabled configurations whose next run is due, locked for this transaction;
        those another process holds are skipped."""
        query = (self.select().where(*self.scope(), CONFIGS.c.enabled,
                                     CONFIGS.c.next_run_at <= now)
                 .order_by(CONFIGS.c.next_run_at).limit(limit)
                 .with_for_update(skip_locked=True))
        return await self.fetch(query)

    async def unscheduled(self, limit: int = 100) -> list[Row]:
        """Enabled configurations without a next run (enabled before the scheduler saw them)."""
        return await self.fetch(self.select().where(
            *self.scope(), CONFIGS.c.enabled, CONFIGS.c.next_run_at.is_(None)).limit(limit)
            .with_for_update(skip_locked=True))


class RunRepository(Repository[Row]):
    table = RUNS
    default_ordering: ClassVar[Ordering] = Ordering((("started_at", True),))

    async def by_run_id(self, run_id: str, *, lock: bool = False) -> Row | None:
        query = self.select().where(*self.scope(), RUNS.c.run_id == run_id)
        if lock:
            query = query.with_for_update()
        found = await self.fetch(query)
        return found[0] if found else None

    async def locked(self, run_pk: int) -> Row | None:
        found = await self.fetch(self.select().where(*self.scope(), RUNS.c.id == run_pk)
                                 .with_for_update())
        return found[0] if found else None

    async def active_of_site(self, site_id: int) -> Row | None:
        found = await self.fetch(self.select().where(
            *self.scope(), RUNS.c.site_id == site_id, RUNS.c.status.in_(ACTIVE_STATUSES)))
        return found[0] if found else None

    async def latest_of_site(self, site_id: int, limit: int) -> list[Row]:
        return await self.fetch(self.select().where(*self.scope(), RUNS.c.site_id == site_id)
                                .order_by(RUNS.c.started_at.desc(), RUNS.c.id.desc())
                                .limit(limit))

    async def completed_results(self, site_id: int, limit: int = 20) -> list[dict[str, Any]]:
        """The stage results of the site's latest completed runs (the estimate's ratios)."""
        rows = await self.session.execute(
            select(RUNS.c.results).where(*self.scope(), RUNS.c.site_id == site_id,
                                         RUNS.c.status == RunStatus.COMPLETED)
            .order_by(RUNS.c.id.desc()).limit(limit))
        return [dict(r or {}) for (r,) in rows]

    async def insert_new(self, values: dict[str, Any]) -> Row | None:
        """A new run, or None when the site has an active run or the schedule key was
        taken (the partial unique indexes decide, whoever commits first)."""
        statement = (insert(RUNS).values(**self._owned(values))
                     .on_conflict_do_nothing().returning(RUNS))
        found = await self.fetch(statement)
        return found[0] if found else None

    async def change(self, run_pk: int, values: dict[str, Any]) -> Row | None:
        found = await self.fetch(update(RUNS).where(*self.scope(), RUNS.c.id == run_pk)
                                 .values(**self._changed(values)).returning(RUNS))
        return found[0] if found else None

    async def due(self, now: datetime, limit: int = 100) -> list[Row]:
        """Running runs whose configured delay (if any) has passed."""
        return await self.fetch(select(RUNS.c.id, RUNS.c.account_id).where(
            *self.scope(), RUNS.c.status == RunStatus.RUNNING,
            or_(RUNS.c.wake_at.is_(None), RUNS.c.wake_at <= now))
            .order_by(RUNS.c.id).limit(limit))

    async def try_advance_lock(self, run_pk: int) -> bool:
        """Whether this transaction now advances the run (no other process does)."""
        got = await self.session.execute(select(func.pg_try_advisory_xact_lock(
            RUN_LOCK_SPACE, run_pk)))
        return bool(got.scalar_one())


class StepRepository(Repository[Row]):
    table = STEPS

    async def of_run(self, run_pk: int, stage: int | None = None) -> list[Row]:
        conds = [STEPS.c.run_pk == run_pk]
        if stage is not None:
            conds.append(STEPS.c.stage == stage)
        return await self.fetch(self.select().where(*self.scope(), *conds)
                                .order_by(STEPS.c.stage, STEPS.c.batch))

    async def active(self, run_pk: int) -> list[Row]:
        return await self.fetch(self.select().where(
            *self.scope(), STEPS.c.run_pk == run_pk,
            STEPS.c.status.in_(ACTIVE_STEP_STATUSES)).order_by(STEPS.c.id))

    async def add(self, values: dict[str, Any]) -> Row | None:
        statement = (insert(STEPS).values(**self._owned(values))
                     .on_conflict_do_nothing().returning(STEPS))
        found = await self.fetch(statement)
        return found[0] if found else None

    async def by_task(self, task_id: UUID) -> Row | None:
        found = await self.fetch(self.select().where(*self.scope(), STEPS.c.task_id == task_id))
        return found[0] if found else None

    async def by_tasks(self, task_ids: list[UUID]) -> dict[UUID, Row]:
        """The steps of these jobs, by task id (one statement for a burst of debits)."""
        if not task_ids:
            return {}
        found = await self.fetch(self.select().where(
            *self.scope(), STEPS.c.task_id.in_(sorted(set(task_ids)))))
        return {row["task_id"]: row for row in found}

    async def change(self, step_id: int, values: dict[str, Any],
                     *only_from: str) -> Row | None:
        conds = [STEPS.c.id == step_id]
        if only_from:
            conds.append(STEPS.c.status.in_(only_from))
        found = await self.fetch(update(STEPS).where(*self.scope(), *conds)
                                 .values(**values).returning(STEPS))
        return found[0] if found else None


class ItemRepository(Repository[Row]):
    table = ITEMS

    async def taken(self, run_pk: int, stage: int) -> set[int]:
        rows = await self.session.execute(select(ITEMS.c.item_id).where(
            *self.scope(), ITEMS.c.run_pk == run_pk, ITEMS.c.stage == stage))
        return {int(r) for r in rows.scalars()}

    async def add_many(self, run_pk: int, stage: int, step_id: int | None,
                       item_ids: Iterable[int], status: str, reason: str = "") -> int:
        rows = [self._owned({"run_pk": run_pk, "stage": stage, "item_id": i,
                             "step_id": step_id, "status": status, "reason": reason})
                for i in item_ids]
        if not rows:
            return 0
        result = await self.session.execute(
            insert(ITEMS).values(rows).on_conflict_do_nothing().returning(ITEMS.c.id))
        return len(result.scalars().all())

    async def settle(self, step_id: int, status: str, reason: str = "",
                     item_ids: Sequence[int] | None = None) -> int:
        conds = [ITEMS.c.step_id == step_id, ITEMS.c.status == "processing"]
        if item_ids is not None:
            conds.append(ITEMS.c.item_id.in_(list(item_ids)))
        result = await self.session.execute(
            update(ITEMS).where(*self.scope(), *conds)
            .values(status=status, reason=reason, updated_at=func.now()).returning(ITEMS.c.id))
        return len(result.scalars().all())

    async def published_since(self, site_id: int, since: datetime) -> int:
        """Stage-7 items the site's runs published since `since` (the daily cap)."""
        rows = await self.session.execute(
            select(func.count()).select_from(ITEMS.join(RUNS, RUNS.c.id == ITEMS.c.run_pk))
            .where(*self.scope(), RUNS.c.site_id == site_id, ITEMS.c.stage == 7,
                   ITEMS.c.status == "done", ITEMS.c.updated_at >= since))
        return int(rows.scalar_one())

    async def of_step(self, step_id: int) -> list[Row]:
        return await self.fetch(self.select().where(*self.scope(), ITEMS.c.step_id == step_id))

    async def counts(self, run_pk: int) -> dict[tuple[int, str], int]:
        rows = await self.session.execute(
            select(ITEMS.c.stage, ITEMS.c.status, func.count()).where(
                *self.scope(), ITEMS.c.run_pk == run_pk)
            .group_by(ITEMS.c.stage, ITEMS.c.status))
        return {(int(stage), str(status)): int(n) for stage, status, n in rows}


class ChargeRepository(Repository[Row]):
    table = CHARGES

    async def add_many(self, rows: list[dict[str, Any]]) -> set[int]:
        """The charges (one per ledger transaction) in one statement; the transaction ids
        of those that were new."""
        if not rows:
            return set()
        result = await self.session.execute(
            insert(CHARGES).values([self._owned(r) for r in rows]).on_conflict_do_nothing()
            .returning(CHARGES.c.transaction_id))
        return {int(t) for t in result.scalars()}

    async def by_task(self, run_pk: int, stage: int) -> dict[UUID, int]:
        """The stage's charges so far, per job (task id)."""
        rows = await self.session.execute(
            select(CHARGES.c.task_id, func.sum(CHARGES.c.amount)).where(
                *self.scope(), CHARGES.c.run_pk == run_pk, CHARGES.c.stage == stage)
            .group_by(CHARGES.c.task_id))
        return {task_id: int(total) for task_id, total in rows}

    async def by_stage(self, run_pk: int) -> dict[int, int]:
        rows = await self.session.execute(
            select(CHARGES.c.stage, func.coalesce(func.sum(CHARGES.c.amount), 0)).where(
                *self.scope(), CHARGES.c.run_pk == run_pk).group_by(CHARGES.c.stage))
        return {int(stage): int(total) for stage, total in rows}


class LogRepository(Repository[Row]):
    table = LOGS

    async def add(self, account_id: int, run_pk: int, message: str, *,
                  stage: int | None = None, level: str = "info") -> None:
        await self.session.execute(insert(LOGS).values(**self._owned({
            "account_id": account_id, "run_pk": run_pk, "stage": stage, "level": level,
            "message": message[:4000]})))

    async def last(self, run_pk: int, lines: int) -> list[Row]:
        rows = await self.fetch(self.select().where(*self.scope(), LOGS.c.run_pk == run_pk)
                                .order_by(LOGS.c.id.desc()).limit(lines))
        return list(reversed(rows))

