"""Idempotent durable consumers: each event changes state once, however often it arrives.

In one unit of work the consumer records `(consumer, event_id)` in `processed_events`
(`ON CONFLICT DO NOTHING`), applies the handler only when that row is new, and commits;
only then does it ack (synchronously). Transient failures are nak'ed with a delay;
a message that cannot be parsed, raises `PermanentError`, or exhausts its deliveries is
written to `dead_letters` and terminated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError
from sqlalchemy import insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common import nats as nats_kernel
from libs.common.db import Database, TenantScope
from libs.common.events import Event
from libs.common.metrics import EVENTS_CONSUMED
from libs.common.models import dead_letters, processed_events
from libs.common.pull import pull_forever
from libs.common.telemetry import context_from_headers, tracer
from libs.common.uow import unit_of_work

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, Event], Awaitable[None]]


class PermanentError(Exception):
    """The event can never be applied; retrying is pointless (dead-lettered at once)."""


def default_scope(event: Event) -> TenantScope:
    return TenantScope.account(event.account_id) if event.account_id else TenantScope.system()


@dataclass
class EventConsumer:
    """A durable pull consumer on `stream` for `subjects`, applying `handler` once per event."""

    name: str
    stream: str
    subjects: Sequence[str]
    handler: Handler
    db: Database
    js: JetStreamContext
    service: str = "service"
    max_deliver: int = 8
    ack_wait: float = 30.0
    batch: int = 64
    scope: Callable[[Event], TenantScope] = default_scope
    nak_delays: Sequence[float] = field(default_factory=lambda: (0.5, 1, 2, 5, 10, 30))
    # The service whose stream this reads, when it may not exist yet (the consuming
    # service started first): provisioned with that service's own configuration.
    source: str | None = None

    async def provision(self) -> None:
        if self.source is not None:
            await nats_kernel.ensure_event_stream(self.js, self.source,
                                                  update=self.source == self.service)
        config = ConsumerConfig(
            durable_name=self.name,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            max_deliver=self.max_deliver,
            ack_wait=self.ack_wait,
            filter_subjects=list(self.subjects),
            max_ack_pending=1000,
        )
        await self.js.add_consumer(self.stream, config)

    async def run(self, stop: asyncio.Event) -> None:
        await pull_forever(self.js, stream=self.stream, durable=self.name, batch=self.batch,
                           handle=self.handle, provision=self.provision, stop=stop)

    async def handle(self, msg: Msg) -> None:
        headers = msg.headers or {}
        span_ctx = context_from_headers(headers)
        with tracer("igny8.consumer").start_as_current_span(
            f"consume {msg.subject}", context=span_ctx, attributes={"consumer": self.name}
        ):
            try:
                event = Event.model_validate_json(msg.data)
            except ValidationError as exc:
                await self._dead_letter(msg, None, f"unparseable event: {exc}")
                return
            try:
                async with unit_of_work(self.db, self.scope(event)) as uow:
                    first_time = (
                        await uow.session.execute(
                            pg_insert(processed_events)
                            .values(consumer=self.name, event_id=event.id)
                            .on_conflict_do_nothing()
                            .returning(processed_events.c.event_id)
                        )
                    ).first()
                    if first_time is not None:
                        await self.handler(uow.session, event)
            except PermanentError as exc:
                await self._dead_letter(msg, event, str(exc))
                return
            except Exception as exc:
                deliveries = _deliveries(msg)
                if deliveries >= self.max_deliver:
                    await self._dead_letter(msg, event, f"gave up after {deliveries}: {exc!r}")
                    return
                delay = self.nak_delays[min(deliveries - 1, len(self.nak_delays) - 1)]
                log.warning("consumer %s: %s failed (delivery %d), retry in %.1fs: %r",
                            self.name, event.type, deliveries, delay, exc)
                EVENTS_CONSUMED.labels(self.service, self.name, "retry").inc()
                with contextlib.suppress(Exception):
                    await msg.nak(delay=delay)
                return
            await msg.ack_sync()
            EVENTS_CONSUMED.labels(
                self.service, self.name, "applied" if first_time else "duplicate"
            ).inc()

    async def _dead_letter(self, msg: Msg, event: Event | None, error: str) -> None:
        log.error("consumer %s: dead-lettering %s: %s", self.name, msg.subject, error)
        async with unit_of_work(self.db, TenantScope.system()) as uow:
            await uow.session.execute(
                insert(dead_letters).values(
                    consumer=self.name,
                    subject=msg.subject,
                    event_id=str(event.id) if event else None,
                    payload=msg.data.decode("utf-8", "replace"),
                    error=error[:4000],
                    deliveries=_deliveries(msg),
                )
            )
        EVENTS_CONSUMED.labels(self.service, self.name, "dead_letter").inc()
        with contextlib.suppress(Exception):
            await msg.term()


def _deliveries(msg: Msg) -> int:
    try:
        return int(msg.metadata.num_delivered)
    except Exception:
        return 1

