"""Transactional outbox: events commit with the state change, a relay publishes them.

`add` writes the rows in the caller's transaction and queues a NOTIFY, which PostgreSQL
delivers only if that transaction commits; the relay LISTENs and drains at once. It
publishes with `Nats-Msg-Id` = event id (never a new id: JetStream de-duplicates a
publish whose ack was lost) and marks rows sent only after the ack. While NATS is away
the rows wait; nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

import psycopg
from nats.js import JetStreamContext
from sqlalchemy import Text, any_, bindparam, cast, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common import uow as units  # a module import: uow imports this module too
from libs.common.aio import sleep_or_stop, wait_or_stop
from libs.common.db import Database, TenantScope, libpq_url
from libs.common.events import Event
from libs.common.metrics import EVENTS_PUBLISH_FAILURES, EVENTS_PUBLISHED, OUTBOX_LAG
from libs.common.models import outbox
from libs.common.telemetry import current_trace_headers

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "igny8_outbox"
# Sent rows are marked with `id = ANY(:ids)`: one array parameter, where `IN` would render
# the statement anew for every batch size.
_IDS = ARRAY(PG_UUID(as_uuid=True))


async def add(session: AsyncSession, *events: Event, subject: str | None = None) -> None:
    """Queue events for publishing in the session's transaction."""
    if not events:
        return
    headers = current_trace_headers()
    await session.execute(
        insert(outbox),
        [
            {
                "id": e.id,
                "subject": subject or e.subject,
                "payload": e.model_dump(mode="json"),
                "headers": headers,
            }
            for e in events
        ],
    )
    await session.execute(text(f"SELECT pg_notify('{NOTIFY_CHANNEL}', '')"))


class OutboxRelay:
    """Publishes unpublished outbox rows; safe to run in several replicas (SKIP LOCKED)."""

    def __init__(
        self,
        db: Database,
        js: JetStreamContext,
        *,
        service: str,
        batch_size: int = 200,
        fallback_poll_seconds: float = 5.0,
        publish_timeout: float = 5.0,
    ) -> None:
        self.db = db
        self.js = js
        self.service = service
        self.batch_size = batch_size
        self.fallback_poll_seconds = fallback_poll_seconds
        self.publish_timeout = publish_timeout
        self._wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        listener = asyncio.create_task(self._listen(stop))
        backoff = 0.2
        try:
            while not stop.is_set():
                # Clear before draining: a NOTIFY arriving mid-drain must wake the next round.
                self._wake.clear()
                try:
                    await self.drain()
                    backoff = 0.2
                except Exception as exc:  # keep relaying whatever failed
                    EVENTS_PUBLISH_FAILURES.labels(self.service).inc()
                    log.warning("outbox relay: publish failed, retrying in %.1fs: %s",
                                backoff, exc)
                    await sleep_or_stop(stop, backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                await self._wait_for_work(stop)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _wait_for_work(self, stop: asyncio.Event) -> None:
        await wait_or_stop(self._wake, stop, self.fallback_poll_seconds)

    async def _listen(self, stop: asyncio.Event) -> None:
        """LISTEN on a dedicated connection; reconnect if it drops."""
        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    libpq_url(self.db.url), autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._wake.set()  # catch up on anything committed before we listened
                    async for _ in conn.notifies():
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox relay: LISTEN connection lost: %s", exc)
                await sleep_or_stop(stop, 1.0)

    async def drain(self) -> int:
        """Publish everything pending; returns how many rows were published."""
        total = 0
        while True:
            published = await self._publish_batch()
            total += published
            if published < self.batch_size:
                return total

    async def _publish_batch(self) -> int:
        async with units.unit_of_work(self.db, TenantScope.system()) as uow:
            session = uow.session
            rows = (
                await session.execute(
                    # The payload as the text PostgreSQL stores: published as it is, never
                    # parsed into Python and serialised again.
                    select(outbox.c.id, outbox.c.subject,
                           cast(outbox.c.payload, Text).label("payload"), outbox.c.headers,
                           outbox.c.created_at)
                    .where(outbox.c.published_at.is_(None))
                    .order_by(outbox.c.seq)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                OUTBOX_LAG.labels(self.service).set(0)
                return 0
            oldest = rows[0].created_at
            lag = (await session.execute(select(func.now()))).scalar_one() - oldest
            OUTBOX_LAG.labels(self.service).set(max(lag.total_seconds(), 0.0))
            results = await asyncio.gather(
                *(self._publish(r.id, r.subject, r.payload, r.headers) for r in rows),
                return_exceptions=True,
            )
            sent = [r.id for r, res in zip(rows, results, strict=True)
                    if not isinstance(res, BaseException)]
            failed = [(r.id, res) for r, res in zip(rows, results, strict=True)
                      if isinstance(res, BaseException)]
            if sent:
                await session.execute(
                    update(outbox).where(outbox.c.id == any_(bindparam("ids", sent, type_=_IDS)))
                    .values(published_at=func.now())
                )
            for row_id, error in failed:
                await session.execute(
                    update(outbox)
                    .where(outbox.c.id == row_id)
                    .values(attempts=outbox.c.attempts + 1, last_error=repr(error)[:500])
                )
        for r in rows:
            if r.id in sent:
                EVENTS_PUBLISHED.labels(self.service, _subject_family(r.subject)).inc()
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(rows)} outbox rows not published: "
                               f"{failed[0][1]!r}")
        return len(rows)

    async def _publish(self, event_id: Any, subject: str, payload: str,
                       headers: dict[str, str] | None) -> None:
        await self.js.publish(
            subject,
            payload.encode(),
            timeout=self.publish_timeout,
            headers={**(headers or {}), "Nats-Msg-Id": str(event_id)},
        )


def _subject_family(subject: str) -> str:
    """`igny8.auth.site.created` → `auth.site.created`; job subjects keep their function."""
    return subject.split(".", 1)[1] if "." in subject else subject



async def pending_count(db: Database, ids: Iterable[Any] | None = None) -> int:
    async with db.session(TenantScope.system()) as session:
        query = select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
        if ids is not None:
            query = query.where(outbox.c.id.in_(list(ids)))
        return int((await session.execute(query)).scalar_one())


class RelayWaker:
    """Wakes the outbox relay after commands that queued events without a NOTIFY.

    PostgreSQL serialises the commits of transactions that NOTIFY (each holds a global
    lock through its commit's fsync), so a hot write path may queue its events without a
    NOTIFY (billing's captures do, decision 0013) and call `wake()` after committing: this
    sends the NOTIFY from its own connection. One NOTIFY at a time:
    wake-ups that arrive while one is in flight fold into the next, so a burst of captures
    costs a few NOTIFYs rather than one serialised commit each. A lost wake-up only delays
    events until the relay's next poll; the events themselves committed with the capture.
    """

    def __init__(self, database_url: str) -> None:
        self.url = libpq_url(database_url)
        self._wanted = asyncio.Event()

    def wake(self) -> None:
        self._wanted.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(self.url,
                                                                 autocommit=True) as conn:
                    while True:
                        await wait_or_stop(self._wanted, stop)
                        if stop.is_set():
                            return
                        self._wanted.clear()
                        await conn.execute("SELECT pg_notify(%s, '')", (NOTIFY_CHANNEL,))
            except Exception as exc:
                log.warning("outbox relay waker: %s; reconnecting", exc)
                await sleep_or_stop(stop, 1.0)
