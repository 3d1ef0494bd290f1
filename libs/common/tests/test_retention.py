"""The kernel tables' retention pass on a database of their own (libs/common/retention.py):
published outbox rows past their age and processed events past theirs go, in batches;
what may still be needed stays."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from libs.common.db import Database, TenantScope
from libs.common.models import outbox, processed_events
from libs.common.retention import KernelRetention
from libs.common.settings import EVENT_MAX_AGE_DAYS, ServiceSettings
from libs.common.testing.plugin import DatabaseFactory
from libs.common.tests.conftest import MIGRATIONS
from libs.common.uow import unit_of_work


async def _ids(db: Database, table: Any, column: Any) -> set[Any]:
    async with unit_of_work(db, TenantScope.system(), read_only=True) as uow:
        return set((await uow.session.execute(select(column))).scalars())


async def test_the_retention_pass_deletes_only_what_can_no_longer_be_needed(
        make_database: DatabaseFactory) -> None:
    db = Database(make_database("retention", MIGRATIONS).app_url)
    try:
        async with unit_of_work(db, TenantScope.system()) as uow:
            now = (await uow.session.execute(select(func.now()))).scalar_one()

            def row(days: float, published: bool) -> dict[str, Any]:
                at = now - timedelta(days=days)
                return {"id": uuid.uuid4(), "subject": "igny8.kernel.x", "payload": {},
                        "created_at": at, "published_at": at if published else None}

            # Written in time order, as the relay's `seq` follows them.
            rows = [row(30, True), row(20, False), row(10, True), row(9, True), row(8, True),
                    row(6, True), row(1, False), row(0, True)]
            await uow.session.execute(insert(outbox), rows)
            events = [{"consumer": "c", "event_id": uuid.uuid4(),
                       "processed_at": now - timedelta(days=d)}
                      for d in (40, 20, 15, 13, 8, 0)]
            await uow.session.execute(insert(processed_events), events)

        retention = KernelRetention(db, service="kernel", outbox_days=7, processed_days=14,
                                    interval_seconds=3600, batch_size=2)
        assert await retention.prune_once() == {"outbox": 4, "processed_events": 3}

        kept = await _ids(db, outbox, outbox.c.id)
        # The unpublished row stays however old; the rest by age.
        assert kept == {r["id"] for r in rows[1:2] + rows[5:]}
        assert await _ids(db, processed_events, processed_events.c.event_id) == {
            e["event_id"] for e in events[3:]}
        assert await retention.prune_once() == {"outbox": 0, "processed_events": 0}
    finally:
        await db.dispose()


def test_processed_events_are_kept_at_least_as_long_as_a_stream_keeps_an_event() -> None:
    with pytest.raises(ValueError, match="processed_events_retention_days"):
        ServiceSettings(processed_events_retention_days=EVENT_MAX_AGE_DAYS - 1)
    assert ServiceSettings().processed_events_retention_days >= EVENT_MAX_AGE_DAYS
