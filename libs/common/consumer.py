"""Idempotent durable consumers: each event changes state once, however often it arrives.

In one unit of work the consumer records `(consumer, event_id)` in `processed_events`
(`ON CONFLICT DO NOTHING`), applies the handler only to the events whose row is new, and
commits; only then does it ack (synchronously). The events of one fetch (whatever the
server had waiting, at most `batch`) share that unit of work, one per run of events of
the same tenant scope: one commit and one ack round for a burst, where one each per
event made a job's hundred debits take a second to apply (ADR 0039). When a shared unit
of work fails, its events are applied again one by one, each in its own, so one bad
event cannot hold back the others: transient failures are nak'ed with a delay; a message
that cannot be parsed, raises `PermanentError`, or exhausts its deliveries is written to
`dead_letters` and terminated.
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
# The new events of one unit of work, in their order (each event once).
BatchHandler = Callable[[AsyncSession, list[Event]], Awaitable[None]]


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
    # Applies a unit of work's new events together (in a few statements whatever their
    # number); without it, `handler` is called for each.
    batch_handler: BatchHandler | None = None

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
        # Dead letters counted from 0: the first one is then an increase Prometheus sees
        # (a series born at 1 has none, and IGNY8DeadLetters would miss it).
        EVENTS_CONSUMED.labels(self.service, self.name, "dead_letter")
        await pull_forever(self.js, stream=self.stream, durable=self.name, batch=self.batch,
                           handle=self.handle, handle_many=self.handle_many,
                           provision=self.provision, stop=stop)

    async def handle_many(self, msgs: list[Msg]) -> None:
        """A fetch's messages: each run of events of one scope in one unit of work, acked
        together after its commit; a run whose unit of work fails, one by one."""
        if len(msgs) == 1:
            await self.handle(msgs[0])
            return
        runs: list[tuple[TenantScope, list[tuple[Msg, Event]]]] = []
        for msg in msgs:
            try:
                event = Event.model_validate_json(msg.data)
            except ValidationError:
                await self.handle(msg)  # dead-lettered there, as alone
                continue
            scope = self.scope(event)
            if runs and runs[-1][0] == scope:
                runs[-1][1].append((msg, event))
            else:
                runs.append((scope, [(msg, event)]))
        for scope, run in runs:
            if len(run) == 1:
                await self.handle(run[0][0])
                continue
            try:
                with tracer("igny8.consumer").start_as_current_span(
                    f"consume {len(run)} events",
                    context=context_from_headers(run[0][0].headers or {}),
                    attributes={"consumer": self.name, "events": len(run)},
                ):
                    new = await self._apply_together(scope, [event for _, event in run])
            except Exception as exc:
                log.info("consumer %s: %d events together failed (%r); one by one",
                         self.name, len(run), exc)
                for msg, _ in run:
                    await self.handle(msg)
                continue
            await asyncio.gather(*(msg.ack_sync() for msg, _ in run))
            EVENTS_CONSUMED.labels(self.service, self.name, "applied").inc(new)
            if len(run) > new:
                EVENTS_CONSUMED.labels(self.service, self.name, "duplicate").inc(len(run) - new)

    async def _apply_together(self, scope: TenantScope, events: list[Event]) -> int:
        """The events' `processed_events` rows and the new ones' handling, one unit of
        work; how many were new."""
        async with unit_of_work(self.db, scope) as uow:
            ids = list(dict.fromkeys(event.id for event in events))
            inserted = {row.event_id for row in await uow.session.execute(
                pg_insert(processed_events)
                .values([{"consumer": self.name, "event_id": i} for i in ids])
                .on_conflict_do_nothing()
                .returning(processed_events.c.event_id))}
            new: list[Event] = []
            for event in events:
                if event.id in inserted:
                    inserted.discard(event.id)  # the same event twice: applied once
                    new.append(event)
            if self.batch_handler is not None:
                if new:
                    await self.batch_handler(uow.session, new)
            else:
                for event in new:
                    await self.handler(uow.session, event)
        return len(new)

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
                first_time = await self._apply(msg, event)
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

    async def _apply(self, msg: Msg, event: Event) -> bool:
        """Apply the event once (False: applied before). While the database is away, the
        event is held in progress and applied once it is back: naks would spend its
        deliveries (JetStream stops at `max_deliver`, and the dead letter cannot be
        written either: the event was lost)."""
        new = await self.db.outlasting_outages(
            lambda: self._apply_together(self.scope(event), [event]),
            what=f"consumer {self.name} holding {event.type}", verdicts=(PermanentError,),
            meanwhile=msg.in_progress)
        return new == 1

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

