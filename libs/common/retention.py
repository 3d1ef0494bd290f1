"""Every service's kernel tables kept to a bounded size: published outbox rows and the
inbox of processed events are deleted once they can no longer be needed.

- An outbox row is needed until it is published; it is kept `outbox_retention_days`
  after it was written (for an operator looking at what a service said), then deleted
  once published. Unpublished rows are never deleted, however old.
- A processed event's row is what makes its consumer idempotent: it is needed as long as
  the event can be delivered again. Event streams keep an event 7 days
  (`libs.common.settings.EVENT_MAX_AGE_DAYS`; a consumer recreated from the start of its
  stream sees all of them again), so the settings refuse a retention shorter than that.
- Each worker deletes in batches, each batch its own short transaction; rows another
  replica is deleting are skipped (`SKIP LOCKED`), so replicas do not queue behind each
  other. The first pass runs a minute after the worker starts, then every
  `retention_interval_seconds`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Select, Table, delete, func, select, tuple_

from libs.common.aio import sleep_or_stop
from libs.common.db import Database, TenantScope
from libs.common.metrics import ROWS_PRUNED
from libs.common.models import outbox, processed_events
from libs.common.uow import unit_of_work

log = logging.getLogger(__name__)

FIRST_PASS_AFTER_SECONDS = 60.0


class KernelRetention:
    """The worker loop that prunes one service's outbox and processed events."""

    def __init__(self, db: Database, *, service: str, outbox_days: float,
                 processed_days: float, interval_seconds: float,
                 batch_size: int = 5000) -> None:
        self.db = db
        self.service = service
        self.outbox_age = timedelta(days=outbox_days)
        self.processed_age = timedelta(days=processed_days)
        self.interval_seconds = interval_seconds
        self.batch_size = batch_size

    async def run(self, stop: asyncio.Event) -> None:
        await sleep_or_stop(stop, min(FIRST_PASS_AFTER_SECONDS, self.interval_seconds))
        while not stop.is_set():
            await self.prune_once(stop)
            await sleep_or_stop(stop, self.interval_seconds)

    async def prune_once(self, stop: asyncio.Event | None = None) -> dict[str, int]:
        """One pass over both tables; the rows deleted from each."""
        now = await self._now()
        counts = {"outbox": 0, "processed_events": 0}
        boundary = await self._outbox_boundary(now - self.outbox_age)
        while not (stop and stop.is_set()):
            deleted = await self._delete_batch(outbox, self._published_before(boundary))
            counts["outbox"] += deleted
            if deleted < self.batch_size:
                break
        while not (stop and stop.is_set()):
            deleted = await self._delete_batch(
                processed_events, self._processed_before(now - self.processed_age))
            counts["processed_events"] += deleted
            if deleted < self.batch_size:
                break
        for table, count in counts.items():
            if count:
                ROWS_PRUNED.labels(self.service, table).inc(count)
        if any(counts.values()):
            log.info("pruned kernel tables: %s", counts)
        return counts

    async def _now(self) -> datetime:
        async with unit_of_work(self.db, TenantScope.system(), read_only=True) as uow:
            return (await uow.session.execute(select(func.now()))).scalar_one()

    async def _outbox_boundary(self, cutoff: datetime) -> int | None:
        """The `seq` of the first row written at or after `cutoff`: rows below it are old
        enough. `seq` is the order rows were written in, so the walk up its index stops at
        the first recent row (no index on `created_at` to maintain on every write)."""
        async with unit_of_work(self.db, TenantScope.system(), read_only=True) as uow:
            return (await uow.session.execute(
                select(outbox.c.seq).where(outbox.c.created_at >= cutoff)
                .order_by(outbox.c.seq).limit(1))).scalar()

    def _published_before(self, boundary: int | None) -> Select[Any]:
        query = (select(outbox.c.id).where(outbox.c.published_at.is_not(None))
                 .order_by(outbox.c.seq))
        if boundary is not None:
            query = query.where(outbox.c.seq < boundary)
        return query

    def _processed_before(self, cutoff: datetime) -> Select[Any]:
        p = processed_events
        return (select(p.c.consumer, p.c.event_id).where(p.c.processed_at < cutoff)
                .order_by(p.c.processed_at))

    async def _delete_batch(self, table: Table, victims: Select[Any]) -> int:
        chosen = victims.limit(self.batch_size).with_for_update(skip_locked=True)
        async with unit_of_work(self.db, TenantScope.system()) as uow:
            result = await uow.session.execute(
                delete(table).where(tuple_(*table.primary_key.columns).in_(chosen)))
            return int(cast(CursorResult[Any], result).rowcount or 0)
