"""`python -m services.billing.worker`: the outbox relay, the consumer of auth's events,
the credit command responders, the hold sweeper and the renewal scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from libs.common import billing as wire
from libs.common import nats as nats_kernel
from libs.common.aio import sleep_or_stop
from libs.common.commands import Batched, Command, Handler, serve
from libs.common.consumer import EventConsumer, PermanentError
from libs.common.db import NO_TENANT, Database, TenantScope, async_url
from libs.common.events import Event, stream_name
from libs.common.metrics import CREDIT_HOLDS_EXPIRED
from libs.common.outbox import RelayWaker
from libs.common.problems import Conflict, DomainError, ValidationFailed
from libs.common.runtime import WorkerContext, main, run_worker
from libs.common.uow import unit_of_work
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

Runner = Callable[[BillingService, list[Any]], Awaitable[Sequence[BaseModel | DomainError]]]


async def _holds(svc: BillingService, reqs: list[wire.HoldRequest]
                 ) -> Sequence[BaseModel | DomainError]:
    return await svc.hold_many(reqs)


async def _hold_batch(svc: BillingService, reqs: list[wire.HoldBatchRequest]
                      ) -> Sequence[BaseModel | DomainError]:
    (req,) = reqs
    return [await svc.hold_batch(req)]


async def _captures(svc: BillingService, reqs: list[wire.CaptureRequest]
                    ) -> Sequence[BaseModel | DomainError]:
    return await svc.capture_many(reqs)


async def _capture_batch(svc: BillingService, reqs: list[wire.CaptureBatchRequest]
                         ) -> Sequence[BaseModel | DomainError]:
    """A job's captures: `capture_many` (distinct holds, one transaction), each refused one
    reported in `failed` while the others apply."""
    (req,) = reqs
    holds = [c.hold_id for c in req.captures]
    if len(set(holds)) != len(holds):
        return [ValidationFailed.field("captures", "One capture per hold.")]
    outcomes = await svc.capture_many(req.captures)
    return [wire.CaptureBatchResult(
        results=[o for o in outcomes if isinstance(o, wire.CaptureResult)],
        failed=[wire.CaptureFailure(hold_id=c.hold_id, code=o.code, detail=o.detail)
                for c, o in zip(req.captures, outcomes, strict=True)
                if isinstance(o, DomainError)])]


async def _release(svc: BillingService, reqs: list[wire.ReleaseRequest]
                   ) -> Sequence[BaseModel | DomainError]:
    (req,) = reqs
    return [await svc.release(req)]


async def _refund(svc: BillingService, reqs: list[wire.RefundRequest]
                  ) -> Sequence[BaseModel | DomainError]:
    (req,) = reqs
    return [await svc.refund(req)]


async def _quote(svc: BillingService, reqs: list[wire.QuoteRequest]
                 ) -> Sequence[BaseModel | DomainError]:
    (req,) = reqs
    return [await svc.quote(req)]


RUNNERS: dict[Command[Any, Any], Runner] = {
    wire.HOLD: _holds, wire.HOLD_BATCH: _hold_batch, wire.CAPTURE: _captures,
    wire.CAPTURE_BATCH: _capture_batch, wire.RELEASE: _release, wire.REFUND: _refund,
    wire.QUOTE: _quote,
}

# Commands whose statements are each correct on their own: holds (one or a batch) are a
# read (replays and pricing) and one conditional reserve-and-insert. They skip the BEGIN
# and COMMIT round trips; each statement still commits durably before the answer.
# Captures, releases and refunds lock rows and decide between statements: they run in one
# transaction.
AUTOCOMMIT_COMMANDS = frozenset({wire.HOLD, wire.HOLD_BATCH})

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
    command is idempotent).

    Its statements are always planned for their parameters (`force_custom_plan`): a
    generic plan cannot see how long a batch's arrays are, and the ones PostgreSQL chose
    rescanned CTEs in nested loops, quadratic in the batch (ADR 0015)."""

    OPTIONS = "-c igny8.all_accounts=on -c plan_cache_mode=force_custom_plan"

    def __init__(self, url: str, *, pool_size: int, max_overflow: int) -> None:
        self.url = async_url(url)
        self.engine = create_async_engine(
            self.url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=False,
            connect_args={"options": self.OPTIONS})
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
class BillingCommands:
    """How billing applies its commands; the command bus answers them (`handlers`). Each
    command's writes are committed before the answer is sent: captures, releases and
    refunds in one transaction per batch or command, holds statement by statement
    (`AUTOCOMMIT_COMMANDS`). After commands that queued events without a NOTIFY, it wakes
    the relay.

    Holds and captures run in batches (group commit, ADR 0015: the bus's `Batched`), one
    per account (a hold) or per hold (a capture) in each round; a job's holds and
    captures for its items (`hold_batch`, `capture_batch`, each a batch already),
    releases and refunds one by one."""

    db: Database
    policy: BillingPolicy
    waker: RelayWaker | None = None

    def handlers(self, *, batches_in_flight: int = 8,
                 max_batch: int = 100) -> dict[Command[Any, Any], Handler | Batched]:
        def batched(command: Command[Any, Any], key: Callable[[Any], Hashable]) -> Batched:
            return Batched(functools.partial(self.execute, command), key=key,
                           in_flight=batches_in_flight, max_batch=max_batch)

        return {
            wire.HOLD: batched(wire.HOLD, lambda r: r.account_id),
            wire.CAPTURE: batched(wire.CAPTURE, lambda r: r.hold_id),
            wire.HOLD_BATCH: functools.partial(self.execute_one, wire.HOLD_BATCH),
            wire.CAPTURE_BATCH: functools.partial(self.execute_one, wire.CAPTURE_BATCH),
            wire.RELEASE: functools.partial(self.execute_one, wire.RELEASE),
            wire.REFUND: functools.partial(self.execute_one, wire.REFUND),
            wire.QUOTE: functools.partial(self.execute_one, wire.QUOTE),
        }

    def _session(self, command: Command[Any, Any]
                 ) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        if isinstance(self.db, CommandDatabase):
            return self.db.command_session(autocommit=command in AUTOCOMMIT_COMMANDS)
        return self.db.session(TenantScope.system())

    async def execute_one(self, command: Command[Any, Any], request: BaseModel) -> BaseModel:
        (outcome,) = await self.execute(command, [request])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def execute(self, command: Command[Any, Any], requests: list[BaseModel]
                      ) -> list[BaseModel | BaseException]:
        """Apply commands of one kind in one session. A batch that fails as a whole runs
        its commands again one by one, so one bad command cannot fail the others."""
        failed: BaseException = RuntimeError("Billing failed to apply the command.")
        for attempt in range(5):
            try:
                async with self._session(command) as session:
                    svc = BillingService(session, self.policy)
                    outcomes = await RUNNERS[command](svc, requests)
                    await session.commit()
                if svc.relay_wake_needed and self.waker is not None:
                    self.waker.wake()
                return list(outcomes)
            except HoldRace:
                failed = Conflict("The command kept conflicting; retry it.")
                continue
            except DomainError as exc:  # a single command refused (nothing was written)
                return [exc] * len(requests)
            except (DBAPIError, psycopg.Error) as exc:
                if _retryable(exc) and attempt < 4:
                    await asyncio.sleep(0.01 * (attempt + 1))
                    continue
                log.exception("billing command %s failed", command.name)
                break
            except Exception:
                log.exception("billing command %s failed", command.name)
                break
        if len(requests) > 1:
            return [(await self.execute(command, [request]))[0] for request in requests]
        return [failed]


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


async def _in_batches(db: Database, limit: int,
                      step: Callable[[BillingService, int], Awaitable[int]],
                      policy: BillingPolicy,
                      committed: Callable[[int], None] = lambda _count: None) -> int:
    """Run `step` in its own transaction until a batch comes back short; how many in all
    (`committed` is told each batch's count once it is committed). Short transactions keep
    the rows each one locks few."""
    total = 0
    while True:
        async with unit_of_work(db, TenantScope.system()) as uow:
            count = await step(BillingService(uow.session, policy), limit)
        committed(count)
        total += count
        if count < limit:
            return total


async def sweep_holds_once(db: Database, policy: BillingPolicy) -> int:
    """Expired holds released; each batch counted once committed
    (`igny8_credit_holds_expired_total`)."""
    return await _in_batches(
        db, 500, lambda svc, limit: svc.sweep_expired_holds(limit=limit), policy,
        CREDIT_HOLDS_EXPIRED.inc)


async def renew_periods_once(db: Database, policy: BillingPolicy) -> int:
    return await _in_batches(
        db, 100, lambda svc, limit: svc.renew_due_periods(limit=limit), policy)


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
            handlers = BillingCommands(db, policy, waker).handlers(
                batches_in_flight=settings.command_batches_in_flight,
                max_batch=settings.command_max_batch)
            await serve(ctx.nc, handlers, stop=ctx.stop,
                        concurrency=settings.command_concurrency)
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
