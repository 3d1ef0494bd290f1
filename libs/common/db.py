"""Async database access: one engine per service, sessions bound to a tenant scope.

Row-level security is the second wall behind the repositories' `account_id` filters:
every transaction starts by setting `igny8.account_id` (or `igny8.all_accounts`), and the
policies on tenant tables compare rows against it. The setting is transaction-local, so
it is applied again at the start of every transaction a session opens (`after_begin`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import psycopg
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, DisconnectionError, PendingRollbackError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, SessionTransaction

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TenantScope:
    """Which rows a transaction may see. `all_accounts` is for platform staff and sweepers."""

    account_id: int | None = None
    all_accounts: bool = False

    @classmethod
    def account(cls, account_id: int) -> TenantScope:
        return cls(account_id=account_id)

    @classmethod
    def system(cls) -> TenantScope:
        return cls(all_accounts=True)


NO_TENANT = TenantScope()


def _apply_scope(session: Session, _tx: SessionTransaction, connection: Connection) -> None:
    scope: TenantScope | None = session.info.get("tenant")
    read_only = session.info.get("read_only", False)
    if scope is None or scope == NO_TENANT:
        if read_only:
            connection.exec_driver_sql("SELECT set_config('transaction_read_only', 'on', true)")
        return
    connection.exec_driver_sql(
        "SELECT set_config('igny8.account_id', %s, true),"
        " set_config('igny8.all_accounts', %s, true),"
        " set_config('transaction_read_only', %s, true)",
        ("" if scope.account_id is None else str(scope.account_id),
         "on" if scope.all_accounts else "off", "on" if read_only else "off"),
    )


event.listen(Session, "after_begin", _apply_scope)


async def driver_connection(session: AsyncSession) -> psycopg.AsyncConnection[Any]:
    """The psycopg connection under a session, in the session's transaction (so the tenant
    setting and row-level security apply): for hand-written statements on hot paths and
    COPY, where the ORM's compile and load steps would cost more than the query."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return cast(psycopg.AsyncConnection[Any], raw.driver_connection)


def async_url(url: str) -> str:
    """Accept `postgresql://` URLs from operators and use the psycopg 3 async driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def libpq_url(url: str) -> str:
    """The same URL as plain libpq understands it (for psycopg connections and COPY)."""
    return "postgresql://" + async_url(url)[len("postgresql+psycopg://"):]


# A pooled connection is pinged before reuse only after this long unused. Under load a
# connection comes back within milliseconds and a ping per checkout was one round trip
# per request (~0.2 ms of a service's CPU for `/auth/me/`). A connection that sat idle is
# where a restarted database or a dropped link would show, and it is still pinged; a
# connection that died while busy fails one request, and SQLAlchemy then replaces every
# connection of the pool that is older than the failure.
PING_AFTER_IDLE_SECONDS = 5.0


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    if time.monotonic() - record.info.get("idle_since", 0.0) < PING_AFTER_IDLE_SECONDS:
        return
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
        # Leave no transaction open behind the ping; COMMIT, because psycopg forgets its
        # prepared statements on a ROLLBACK (see `Database.session`).
        dbapi_connection.commit()
    except Exception as exc:
        # The pool drops this connection and checks out another (SQLAlchemy's
        # pessimistic disconnect handling).
        raise DisconnectionError(f"pooled connection failed its ping: {exc}") from exc


class UncommittedWrites(RuntimeError):
    """Writes were about to be thrown away silently: the code forgot its commit."""


async def _wrote(session: AsyncSession) -> bool:
    """Whether the session's open transaction holds writes: ORM changes not yet flushed,
    or a transaction id PostgreSQL assigns at the first write (or row lock). Asked only of
    sessions that end without committing, so the committed paths pay nothing."""
    if session.new or session.deleted or any(session.is_modified(o) for o in session.dirty):
        return True
    if not session.in_transaction():
        return False
    try:
        assigned = await session.execute(text("SELECT pg_current_xact_id_if_assigned()"))
    except (DBAPIError, PendingRollbackError):
        return False  # the transaction already failed, and its caller was told
    return assigned.scalar() is not None


class Database:
    """The engine and session factory of one service."""

    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 10, **kw: Any):
        self.url = async_url(url)
        self.engine: AsyncEngine = create_async_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_pre_ping=False,  # pinged only after idling (`_ping_if_idle`)
            # The most recently used connection first: under light load the others idle,
            # and are pinged (or time out server-side) instead of all being kept warm.
            pool_use_lifo=True,
            **kw,
        )
        event.listen(self.engine.sync_engine, "checkin", _note_checkin)
        event.listen(self.engine.sync_engine, "checkout", _ping_if_idle)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self, scope: TenantScope = NO_TENANT, *,
                      read_only: bool = False) -> AsyncIterator[AsyncSession]:
        """A session whose transaction the caller commits. Closing it with writes nobody
        committed rolls them back and raises `UncommittedWrites`; an explicit `rollback()`
        is how code says it meant to discard them.

        `read_only`: the transaction is READ ONLY (a write fails), and it ends with COMMIT.
        For a transaction that cannot have written, COMMIT and ROLLBACK are the same to
        PostgreSQL, but psycopg forgets every prepared statement of the connection on a
        ROLLBACK: hot reads then parse, rewrite and plan their statement on every request
        (for auth's `/me`, ~0.5 ms of the database's CPU out of 0.7)."""
        async with self.sessionmaker() as session:
            session.info["tenant"] = scope
            session.info["read_only"] = read_only
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise
            if read_only:
                await session.commit()
                return
            uncommitted = await _wrote(session)
            await session.rollback()
            if uncommitted:
                raise UncommittedWrites(
                    "a session closed with writes nobody committed; they were rolled back "
                    "(write through a unit of work, which commits in one place)")

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def wait_until_up(self, meanwhile: Callable[[], Awaitable[object]] | None = None,
                            longest: float = 1.0) -> None:
        """Until the database answers `ping()` (a restart, a failover, a network cut),
        calling `meanwhile` between tries (a message kept in progress)."""
        delay = 0.05
        while not await self.ping():
            if meanwhile is not None:
                with contextlib.suppress(Exception):
                    await meanwhile()
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest)

    async def outlasting_outages(
        self, step: Callable[[], Awaitable[T]], *, what: str,
        verdicts: tuple[type[BaseException], ...] = (),
        meanwhile: Callable[[], Awaitable[object]] | None = None,
    ) -> T:
        """`step`, run again once the database is back whenever it fails while the
        database does not answer `ping()`: an outage is nobody's failure, and counted as
        one it spends a job's attempts or an event's deliveries within seconds (and the
        record of the failure cannot be written either). `verdicts` are the step's own
        decisions (a job failed, a poison event), raised as they are; `meanwhile` runs
        between tries (a message kept in progress)."""
        while True:
            try:
                return await step()
            except verdicts:
                raise
            except Exception as exc:
                if await self.ping():
                    raise
                log.warning("%s: the database is away; going on once it is back: %r",
                            what, exc)
                await self.wait_until_up(meanwhile=meanwhile)

    async def dispose(self) -> None:
        await self.engine.dispose()
