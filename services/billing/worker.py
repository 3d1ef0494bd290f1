"""`python -m services.billing.worker`: the outbox relay, the consumer of auth's events,
the credit command responders, the hold sweeper and the renewal scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from libs.common import billing as wire
from libs.common import nats as nats_kernel
from libs.common.aio import sleep_or_stop
from libs.common.consumer import EventConsumer, PermanentError
from libs.common.db import NO_TENANT, Database, TenantScope, async_url
from libs.common.events import Event, stream_name
from libs.common.outbox import RelayWaker
from libs.common.problems import Conflict, NotFound, PaymentRequired, ValidationFailed
from libs.common.runtime import WorkerContext, main, run_worker
from services.billing import events as ev
from services.billing.service import BillingPolicy, BillingService, HoldRace
from services.billing.settings import BillingSettings

log = logging.getLogger(__name__)


def policy_from(settings: BillingSettings) -> BillingPolicy:
    return BillingPolicy(
        low_balance_threshold=settings.low_balance_threshold,
        default_hold_ttl_seconds=settings.default_hold_ttl_seconds,
        max_hold_ttl_seconds=settings.max_hold_ttl_seconds,
        currency=settings.currency,
    )


# --- commands ---------------------------------------------------------------------------

Command = Callable[[BillingService, Any], Awaitable[BaseModel]]


async def _hold(svc: BillingService, req: wire.HoldRequest) -> BaseModel:
    return await svc.hold(req)


async def _capture(svc: BillingService, req: wire.CaptureRequest) -> BaseModel:
    return await svc.capture(req)


async def _release(svc: BillingService, req: wire.ReleaseRequest) -> BaseModel:
    return await svc.release(req)


async def _refund(svc: BillingService, req: wire.RefundRequest) -> BaseModel:
    return await svc.refund(req)


COMMANDS: dict[str, tuple[type[BaseModel], Command]] = {
    wire.HOLD: (wire.HoldRequest, _hold),
    wire.CAPTURE: (wire.CaptureRequest, _capture),
    wire.RELEASE: (wire.ReleaseRequest, _release),
    wire.REFUND: (wire.RefundRequest, _refund),
}

# Commands whose statements are each correct on their own: a hold is a read (replay and
# pricing) and one conditional reserve-and-insert. They skip the BEGIN and COMMIT round
# trips; each statement still commits durably before the answer. Captures, releases and
# refunds lock rows and decide between statements: they run in one transaction.
AUTOCOMMIT_COMMANDS = frozenset({wire.HOLD})

# PostgreSQL SQLSTATEs worth retrying: serialization failure, deadlock.
_RETRYABLE = {"40001", "40P01"}


def _retryable(exc: DBAPIError | psycopg.Error) -> bool:
    """A serialization failure, a deadlock or a dead connection: safe to run the command
    again (every command is idempotent). The hot statements run on the driver connection,
    so their errors arrive as psycopg's own, not wrapped by SQLAlchemy."""
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or getattr(exc.orig, "sqlstate", None) in _RETRYABLE
    return isinstance(exc, psycopg.OperationalError) or exc.sqlstate in _RETRYABLE


class CommandDatabase(Database):
    """The command responders' own pool. Its connections open in the system scope
    (`igny8.all_accounts` set once per connection, not once per transaction) and are not
    pinged before each checkout: on the hot path both would cost a round trip per command.
    A connection found dead is invalidated by SQLAlchemy and the command retried (every
    command is idempotent)."""

    def __init__(self, url: str, *, pool_size: int, max_overflow: int) -> None:
        self.url = async_url(url)
        self.engine = create_async_engine(
            self.url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=False,
            connect_args={"options": "-c igny8.all_accounts=on"})
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self.autocommit_sessionmaker = async_sessionmaker(
            self.engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False)

    @contextlib.asynccontextmanager
    async def command_session(self, *, autocommit: bool) -> AsyncIterator[AsyncSession]:
        """A session for one command; with `autocommit`, every statement is its own durable
        transaction (no BEGIN/COMMIT round trips)."""
        if not autocommit:
            async with self.session(NO_TENANT) as session:
                yield session
            return
        async with self.autocommit_sessionmaker() as session:
            yield session


@dataclass
class CommandResponder:
    """Answers billing's commands (queue group `billing`, so replicas share the load). Each
    command's writes are committed before the answer is sent: captures, releases and
    refunds in one transaction each, holds statement by statement (`AUTOCOMMIT_COMMANDS`).
    After a command that queued events without a NOTIFY, it wakes the relay."""

    db: Database
    nc: NATS
    policy: BillingPolicy
    concurrency: int = 64
    waker: RelayWaker | None = None

    def _session(self, subject: str) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        if isinstance(self.db, CommandDatabase):
            return self.db.command_session(autocommit=subject in AUTOCOMMIT_COMMANDS)
        return self.db.session(TenantScope.system())

    async def answer(self, subject: str, data: bytes) -> bytes:
        model, command = COMMANDS[subject]
        try:
            request = model.model_validate_json(data)
        except ValidationError as exc:
            errors: dict[str, list[str]] = {}
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"]) or "non_field_errors"
                errors.setdefault(field, []).append(err["msg"])
            return wire.failure(wire.INVALID, "Invalid command.", errors)
        for attempt in range(5):
            try:
                async with self._session(subject) as session:
                    svc = BillingService(session, self.policy)
                    result = await command(svc, request)
                    await session.commit()
                if svc.relay_wake_needed and self.waker is not None:
                    self.waker.wake()
                return wire.ok(result)
            except HoldRace:
                continue
            except PaymentRequired as exc:
                return wire.failure(wire.INSUFFICIENT, exc.detail)
            except NotFound as exc:
                return wire.failure(wire.NOT_FOUND, exc.detail, exc.errors)
            except ValidationFailed as exc:
                return wire.failure(wire.INVALID, exc.detail, exc.errors)
            except Conflict as exc:
                return wire.failure(wire.CONFLICT, exc.detail, exc.errors)
            except (DBAPIError, psycopg.Error) as exc:
                if _retryable(exc) and attempt < 4:
                    await asyncio.sleep(0.01 * (attempt + 1))
                    continue
                log.exception("billing command %s failed", subject)
                return wire.failure(wire.INTERNAL, "Billing failed to apply the command.")
            except Exception:
                log.exception("billing command %s failed", subject)
                return wire.failure(wire.INTERNAL, "Billing failed to apply the command.")
        return wire.failure(wire.CONFLICT, "The command kept conflicting; retry it.")

    async def run(self, stop: asyncio.Event) -> None:
        limiter = asyncio.Semaphore(self.concurrency)
        running: set[asyncio.Task[None]] = set()

        async def respond(msg: Msg) -> None:
            try:
                reply = await self.answer(msg.subject, msg.data)
                with contextlib.suppress(Exception):
                    await msg.respond(reply)
            finally:
                limiter.release()

        async def on_message(msg: Msg) -> None:
            # nats-py runs one callback at a time per subscription: hand each command to
            # its own task so slow transactions do not queue the others.
            await limiter.acquire()
            task = asyncio.create_task(respond(msg))
            running.add(task)
            task.add_done_callback(running.discard)

        subs = [await self.nc.subscribe(subject, queue=wire.QUEUE_GROUP, cb=on_message,
                                        pending_msgs_limit=100_000)
                for subject in COMMANDS]
        log.info("billing command responders listening on %s", ", ".join(COMMANDS))
        try:
            await stop.wait()
        finally:
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            if running:
                await asyncio.wait(running, timeout=10)


# --- auth events ------------------------------------------------------------------------


class AuthEventsConsumer(EventConsumer):
    async def provision(self) -> None:
        # Auth's stream may not exist yet when billing starts first; same config as auth's.
        await nats_kernel.ensure_event_stream(self.js, "auth")
        await super().provision()


def auth_handler(policy: BillingPolicy) -> Callable[[AsyncSession, Event], Awaitable[None]]:
    async def handle(session: AsyncSession, event: Event) -> None:
        svc = BillingService(session, policy)
        try:
            if event.type.startswith("auth.plan."):
                await svc.apply_plan(event.data)
            elif event.type.startswith("auth.account."):
                await svc.apply_account(event.type, event.data, event.occurred_at)
            elif event.type.startswith("auth.subscription."):
                await svc.apply_subscription(event.data, event.occurred_at)
        except (KeyError, TypeError, ValueError) as exc:
            raise PermanentError(f"{event.type}: malformed data ({exc!r})") from exc

    return handle


def auth_consumer(ctx: WorkerContext, policy: BillingPolicy) -> EventConsumer:
    return AuthEventsConsumer(
        name=ev.AUTH_CONSUMER, stream=stream_name("auth"), subjects=list(ev.AUTH_SUBJECTS),
        handler=auth_handler(policy), db=ctx.db, js=ctx.js, service="billing",
        scope=lambda _event: TenantScope.system(),
        # nats-py 2.16 sends `idle_heartbeat` without `expires` when a batch fetch finds
        # messages already buffered, and the server refuses it ("heartbeat value too
        # large"); single-message fetches always send `expires`. Auth's events are few.
        batch=1,
    )


# --- schedulers -------------------------------------------------------------------------


async def sweep_holds_once(db: Database, policy: BillingPolicy) -> int:
    total = 0
    while True:
        async with db.session(TenantScope.system()) as session:
            count = await BillingService(session, policy).sweep_expired_holds(limit=500)
            await session.commit()
        total += count
        if count < 500:
            return total


async def renew_periods_once(db: Database, policy: BillingPolicy) -> int:
    total = 0
    while True:
        async with db.session(TenantScope.system()) as session:
            count = await BillingService(session, policy).renew_due_periods(limit=100)
            await session.commit()
        total += count
        if count < 100:
            return total


async def _every(stop: asyncio.Event, seconds: float, name: str,
                 job: Callable[[], Awaitable[int]]) -> None:
    while not stop.is_set():
        try:
            await job()
        except Exception:
            log.exception("%s failed; retrying next round", name)
        await sleep_or_stop(stop, seconds)


# --- the process ------------------------------------------------------------------------


def build_tasks(settings: BillingSettings) -> Sequence[Callable[[WorkerContext], Any]]:
    policy = policy_from(settings)

    async def command_responders(ctx: WorkerContext) -> None:
        # Commands get their own pool: they are the hot path, the relay must not starve it.
        db = CommandDatabase(settings.database_url, pool_size=settings.worker_db_pool_size,
                             max_overflow=settings.worker_db_max_overflow)
        waker = RelayWaker(settings.database_url)
        waking = asyncio.create_task(waker.run(ctx.stop), name="billing-relay-waker")
        try:
            await CommandResponder(db, ctx.nc, policy, settings.command_concurrency,
                                   waker).run(ctx.stop)
        finally:
            waking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waking
            await db.dispose()

    async def hold_sweeper(ctx: WorkerContext) -> None:
        await _every(ctx.stop, settings.hold_sweep_interval_seconds, "hold sweeper",
                     lambda: sweep_holds_once(ctx.db, policy))

    async def renewal_scheduler(ctx: WorkerContext) -> None:
        await _every(ctx.stop, settings.renewal_interval_seconds, "renewal scheduler",
                     lambda: renew_periods_once(ctx.db, policy))

    return [command_responders, hold_sweeper, renewal_scheduler]


async def run(stop: asyncio.Event, settings: BillingSettings | None = None) -> None:
    settings = settings or BillingSettings()
    policy = policy_from(settings)
    await run_worker(settings, consumers=lambda ctx: [auth_consumer(ctx, policy)],
                     tasks=build_tasks(settings), stop=stop)


if __name__ == "__main__":
    main(run)
