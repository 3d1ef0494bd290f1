"""The event kernel against real PostgreSQL and NATS JetStream."""

import asyncio
import uuid

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select, text

from libs.common import nats as nats_kernel
from libs.common import outbox
from libs.common.consumer import EventConsumer, PermanentError
from libs.common.db import Database, TenantScope
from libs.common.events import Event, stream_name
from libs.common.models import dead_letters, processed_events
from libs.common.outbox import OutboxRelay
from libs.common.provision import ServiceDatabase
from libs.common.testing.tcpproxy import CuttableProxy


async def _wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def _is(value: float | None, expected: float) -> bool:
    return value == expected


@pytest.fixture
async def js(nats_url: str):  # type: ignore[no-untyped-def]
    nc = await nats_kernel.connect(nats_url, "kernel-test")
    js = nc.jetstream()
    await nats_kernel.ensure_platform(js, "kernel")
    yield js
    await nc.close()


def _event(account_id: int = 1, **data: object) -> Event:
    return Event(type="kernel.note.created", account_id=account_id, data=dict(data))


async def _stream_seq(js) -> int:  # type: ignore[no-untyped-def]
    return int((await js.stream_info(stream_name("kernel"))).state.last_seq)


async def test_relay_publishes_committed_events_once_and_skips_rolled_back(
    kernel_db: Database, js
) -> None:  # type: ignore[no-untyped-def]
    committed, rolled_back = _event(n=1), _event(n=2)
    async with kernel_db.session(TenantScope.account(1)) as s:
        await outbox.add(s, committed)
        await s.commit()
    async with kernel_db.session(TenantScope.account(1)) as s:
        await outbox.add(s, rolled_back)
        await s.rollback()  # never committed

    before = await _stream_seq(js)
    relay = OutboxRelay(kernel_db, js, service="kernel")
    await relay.drain()
    await relay.drain()  # nothing left: no second publish
    assert await outbox.pending_count(kernel_db, [committed.id]) == 0
    msg = await js.get_last_msg(stream_name("kernel"), "igny8.kernel.note.created")
    assert Event.model_validate_json(msg.data).id == committed.id
    assert await _stream_seq(js) - before == 1


async def test_relay_wakes_on_commit_without_polling(kernel_db: Database, js) -> None:  # type: ignore[no-untyped-def]
    relay = OutboxRelay(kernel_db, js, service="kernel", fallback_poll_seconds=3600)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    await asyncio.sleep(0.3)  # the relay is listening
    event = _event(n=3)
    async with kernel_db.session(TenantScope.account(1)) as s:
        await outbox.add(s, event)
        await s.commit()

    async def published() -> bool:
        return await outbox.pending_count(kernel_db, [event.id]) == 0

    await _wait_for(published, timeout=5)
    stop.set()
    await task


async def test_events_survive_nats_going_away(kernel_db: Database, nats_server, nats_url) -> None:  # type: ignore[no-untyped-def]
    nc = await nats_kernel.connect(nats_url, "kernel-test-restart")
    js = nc.jetstream()
    await nats_kernel.ensure_platform(js, "kernel")
    relay = OutboxRelay(kernel_db, js, service="kernel", publish_timeout=1.0)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))

    nats_server.stop()
    events = [_event(n=i) for i in range(5)]
    async with kernel_db.session(TenantScope.account(1)) as s:
        await outbox.add(s, *events)
        await s.commit()
    await asyncio.sleep(1.0)  # the relay tries and fails while NATS is away
    assert await outbox.pending_count(kernel_db, [e.id for e in events]) == 5
    nats_server.start()

    async def all_published() -> bool:
        return await outbox.pending_count(kernel_db, [e.id for e in events]) == 0

    await _wait_for(all_published, timeout=20)
    stop.set()
    await task
    ids = set()
    for seq in range(1, await _stream_seq(js) + 1):
        try:
            msg = await js.get_msg(stream_name("kernel"), seq)
        except Exception:  # noqa: BLE001 - purged or deleted sequence
            continue
        ids.add(Event.model_validate_json(msg.data).id)
    assert {e.id for e in events} <= ids
    await nc.close()


async def test_consumer_applies_each_event_once_and_dead_letters_poison(
    kernel_db: Database, js
) -> None:  # type: ignore[no-untyped-def]
    applied: list[uuid.UUID] = []

    async def handler(session, event: Event) -> None:  # type: ignore[no-untyped-def]
        if event.data.get("poison"):
            raise PermanentError("cannot apply")
        await session.execute(
            text("INSERT INTO notes (account_id, body) VALUES (:a, :b)"),
            {"a": event.account_id, "b": str(event.id)},
        )
        applied.append(event.id)

    entity = f"probe{uuid.uuid4().hex[:6]}"
    name = f"kernel-test-{entity}"
    consumer = EventConsumer(name=name, stream=stream_name("kernel"),
                             subjects=[f"igny8.kernel.{entity}.>"], handler=handler,
                             db=kernel_db, js=js, service="kernel")
    dead_lettered = ("igny8_events_consumed_total",
                     {"service": "kernel", "consumer": name, "outcome": "dead_letter"})
    assert REGISTRY.get_sample_value(*dead_lettered) is None
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    # Counted from 0 once it runs: the first dead letter is an increase (IGNY8DeadLetters).
    await _wait_for(lambda: _is(REGISTRY.get_sample_value(*dead_lettered), 0.0))
    good = Event(type=f"kernel.{entity}.created", account_id=7, data={"n": 1})
    poison = Event(type=f"kernel.{entity}.created", account_id=7, data={"poison": True})
    payload = good.model_dump_json().encode()
    # The same event published twice with different message ids (beyond de-duplication).
    await js.publish(good.subject, payload, headers={"Nats-Msg-Id": "a-" + str(good.id)})
    await js.publish(good.subject, payload, headers={"Nats-Msg-Id": "b-" + str(good.id)})
    await js.publish(poison.subject, poison.model_dump_json().encode())

    async def settled() -> bool:
        async with kernel_db.session(TenantScope.system()) as s:
            done = (await s.execute(select(func.count()).select_from(processed_events)
                                    .where(processed_events.c.consumer == name))).scalar_one()
            dead = (await s.execute(select(func.count()).select_from(dead_letters)
                                    .where(dead_letters.c.consumer == name))).scalar_one()
        return done == 1 and dead == 1

    await _wait_for(settled)
    await asyncio.sleep(0.3)
    stop.set()
    await task
    # Applied once: the committed note. (The handler may have run once more in a unit of
    # work that rolled back: the poison made the fetch's shared one fail, ADR 0039.)
    async with kernel_db.session(TenantScope.system()) as s:
        notes = (await s.execute(text("SELECT count(*) FROM notes WHERE body = :b"),
                                 {"b": str(good.id)})).scalar_one()
    assert notes == 1
    assert good.id in applied
    assert REGISTRY.get_sample_value(*dead_lettered) == 1.0


async def test_consumer_applies_a_fetchs_events_in_one_unit_of_work(
    kernel_db: Database, js
) -> None:  # type: ignore[no-untyped-def]
    """The events one fetch brings share a unit of work per tenant scope (one commit, one
    round of acks: a job's hundred debits came one transaction each), each applied once;
    a burst holding an event that cannot be applied is applied one by one, so the others
    still are and that one is dead-lettered."""
    together: list[int] = []

    async def handler(session, event: Event) -> None:  # type: ignore[no-untyped-def]
        if event.data.get("poison"):
            raise PermanentError("cannot apply")
        await session.execute(text("INSERT INTO notes (account_id, body) VALUES (:a, :b)"),
                              {"a": event.account_id, "b": str(event.id)})

    async def batch_handler(session, events: list[Event]) -> None:  # type: ignore[no-untyped-def]
        together.append(len(events))
        for event in events:
            await handler(session, event)

    entity = f"many{uuid.uuid4().hex[:6]}"
    name = f"kernel-test-{entity}"
    subject = f"kernel.{entity}.created"
    burst = [Event(type=subject, account_id=5, data={"n": n}) for n in range(12)]
    for e in burst:
        await js.publish(e.subject, e.model_dump_json().encode(),
                         headers={"Nats-Msg-Id": str(e.id)})
    # The same event again under another message id (beyond de-duplication), in the burst.
    await js.publish(burst[0].subject, burst[0].model_dump_json().encode(),
                     headers={"Nats-Msg-Id": "again-" + str(burst[0].id)})
    consumer = EventConsumer(name=name, stream=stream_name("kernel"),
                             subjects=[f"igny8.kernel.{entity}.>"], handler=handler,
                             batch_handler=batch_handler, db=kernel_db, js=js, service="kernel")

    async def processed() -> list[tuple[uuid.UUID, object]]:
        async with kernel_db.session(TenantScope.system()) as s:
            return [(r.event_id, r.processed_at) for r in await s.execute(
                select(processed_events.c.event_id, processed_events.c.processed_at)
                .where(processed_events.c.consumer == name))]

    async def all_applied(n: int) -> bool:
        return len(await processed()) >= n

    async def applied() -> list[str]:
        ids = [str(e.id) for e in burst + poisoned]
        async with kernel_db.session(TenantScope.system()) as s:
            return sorted(r.body for r in await s.execute(
                text("SELECT body FROM notes WHERE body = ANY(:ids)"), {"ids": ids}))

    poisoned = [Event(type=subject, account_id=5, data={"n": n}) for n in range(4)]
    poisoned.insert(2, Event(type=subject, account_id=5, data={"poison": True}))
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await _wait_for(lambda: all_applied(len(burst)))
    assert await applied() == sorted(str(e.id) for e in burst)
    assert sum(together) == len(burst)
    assert len(together) < len(burst)
    # processed_at is the transaction's start: fewer moments than events.
    assert len({moment for _, moment in await processed()}) < len(burst)

    stop.set()
    await task
    for e in poisoned:
        await js.publish(e.subject, e.model_dump_json().encode(),
                         headers={"Nats-Msg-Id": str(e.id)})
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))

    async def dead() -> int:
        async with kernel_db.session(TenantScope.system()) as s:
            return int((await s.execute(select(func.count()).select_from(dead_letters)
                                        .where(dead_letters.c.consumer == name))).scalar_one())

    async def settled() -> bool:
        return await dead() == 1 and await all_applied(len(burst) + 4)

    await _wait_for(settled)
    await asyncio.sleep(0.3)
    stop.set()
    await task
    assert await applied() == sorted(
        str(e.id) for e in burst + poisoned if not e.data.get("poison"))


async def test_row_level_security_hides_other_tenants(kernel_db: Database) -> None:
    async with kernel_db.session(TenantScope.account(101)) as s:
        await s.execute(text("INSERT INTO notes (account_id, body) VALUES (101, 'mine')"))
        await s.commit()
    async with kernel_db.session(TenantScope.account(202)) as s:
        rows = (await s.execute(text("SELECT body FROM notes WHERE account_id = 101"))).all()
        assert rows == []
        with pytest.raises(Exception, match="row-level security"):
            await s.execute(text("INSERT INTO notes (account_id, body) VALUES (101, 'forged')"))
    async with kernel_db.session() as s:  # no scope at all: nothing visible
        assert (await s.execute(text("SELECT count(*) FROM notes"))).scalar_one() == 0
    async with kernel_db.session(TenantScope.system()) as s:
        assert (await s.execute(text("SELECT count(*) FROM notes WHERE account_id = 101"))
                ).scalar_one() >= 1


async def test_consumer_keeps_up_with_bursts_and_survives_a_server_restart(
    kernel_db: Database, nats_server, nats_url
) -> None:  # type: ignore[no-untyped-def]
    """Bursts larger than a batch are all applied, and after a server restart the stale
    pull subscription is noticed (messages waiting, none delivered) and bound again."""
    nc = await nats_kernel.connect(nats_url, "kernel-test-bursts")
    js = nc.jetstream()
    await nats_kernel.ensure_platform(js, "kernel")
    entity = f"burst{uuid.uuid4().hex[:6]}"
    seen: set[uuid.UUID] = set()

    async def handler(session, event: Event) -> None:  # type: ignore[no-untyped-def]
        seen.add(event.id)

    consumer = EventConsumer(name=f"kernel-test-{entity}", stream=stream_name("kernel"),
                             subjects=[f"igny8.kernel.{entity}.>"], handler=handler,
                             db=kernel_db, js=js, service="kernel", batch=16)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))

    async def publish(n: int) -> set[uuid.UUID]:
        events = [Event(type=f"kernel.{entity}.created", account_id=3) for _ in range(n)]
        for e in events:
            for attempt in range(50):  # JetStream recovers its streams after a restart
                try:
                    await js.publish(e.subject, e.model_dump_json().encode(),
                                     headers={"Nats-Msg-Id": str(e.id)}, timeout=1)
                    break
                except Exception:
                    if attempt == 49:
                        raise
                    await asyncio.sleep(0.2)
        return {e.id for e in events}

    first = await publish(150)

    async def all_seen(ids: set[uuid.UUID]) -> bool:
        return ids <= seen

    await _wait_for(lambda: all_seen(first), timeout=30)
    nats_server.restart()

    async def reconnected() -> bool:
        return bool(nc.is_connected)

    await _wait_for(reconnected, timeout=20)
    second = await publish(40)
    await _wait_for(lambda: all_seen(second), timeout=60)
    stop.set()
    await task
    await nc.close()


async def test_events_that_come_while_the_database_is_away_are_applied_once_it_is_back(
    kernel_db_info: ServiceDatabase, kernel_db: Database, js
) -> None:  # type: ignore[no-untyped-def]
    """Found on `igny8 up`: PostgreSQL away for a minute or two, writer's consumer spent
    every delivery of 56 `idea.queued` events on naks (JetStream then stops delivering)
    and could not write their dead letters either: the events were lost, and the ideas
    never became tasks. The database being away is not the event's failure."""
    entity = f"away{uuid.uuid4().hex[:6]}"
    name = f"kernel-test-{entity}"

    async def handler(session, event: Event) -> None:  # type: ignore[no-untyped-def]
        await session.execute(text("INSERT INTO notes (account_id, body) VALUES (:a, :b)"),
                              {"a": event.account_id, "b": str(event.id)})

    async with CuttableProxy.to(kernel_db_info.app_url) as proxy:
        db = Database(proxy.url)
        # Two deliveries, quick naks: without holding the event, both are spent (and the
        # dead letter refused) long before the database is back.
        consumer = EventConsumer(name=name, stream=stream_name("kernel"),
                                 subjects=[f"igny8.kernel.{entity}.>"], handler=handler,
                                 db=db, js=js, service="kernel", max_deliver=2,
                                 nak_delays=(0.05,))
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop))
        try:
            await asyncio.sleep(0.3)  # bound and fetching
            proxy.cut()
            # Three of one tenant: one fetch, applied together (ADR 0039), which fails and
            # falls back to one by one, each held while the database is away.
            events = [Event(type=f"kernel.{entity}.created", account_id=7, data={"n": n})
                      for n in range(3)]
            for event in events:
                await js.publish(event.subject, event.model_dump_json().encode(),
                                 headers={"Nats-Msg-Id": str(event.id)})

            async def long_away() -> bool:
                assert not task.done(), task
                return proxy.refused >= 10

            await _wait_for(long_away, timeout=60)
            proxy.restore()

            async def applied() -> bool:
                async with kernel_db.session(TenantScope.system(), read_only=True) as s:
                    bodies = (await s.execute(
                        text("SELECT body FROM notes WHERE body = ANY(:b)"),
                        {"b": [str(e.id) for e in events]})).scalars().all()
                assert len(bodies) == len(set(bodies)), bodies  # each applied once
                return len(bodies) == len(events)

            await _wait_for(applied, timeout=30)
        finally:
            stop.set()
            await asyncio.gather(task, return_exceptions=True)
            await db.dispose()
    async with kernel_db.session(TenantScope.system(), read_only=True) as s:
        dead = (await s.execute(select(func.count()).select_from(dead_letters)
                                .where(dead_letters.c.consumer == name))).scalar_one()
    assert dead == 0
