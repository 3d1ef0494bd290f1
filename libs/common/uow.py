"""The unit of work: one transaction that commits in exactly one place.

A request's unit of work (`libs.common.tenancy.UoW`) and a worker's (`unit_of_work`) are
the same object. Services write through its session and queue events with `publish`;
nobody calls commit: the unit commits when the code it wraps returns, rolls back when it
raises, and then runs what was registered for either outcome:

- `on_rollback(undo)`: compensations for effects outside the database (a credit hold
  placed over NATS, a file written), run when the unit's writes are not kept;
- `after_commit(then)`: effects that must follow a durable commit (waking a relay).

A session that closes with writes nobody committed raises `UncommittedWrites`
(`Database.session`): a forgotten commit is an error, never a silent rollback.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from libs.common import outbox
from libs.common.db import NO_TENANT, Database, TenantScope
from libs.common.events import Event

log = logging.getLogger(__name__)

Compensation = Callable[[], Awaitable[Any]]
Effect = Callable[[], Any]


class UnitOfWork:
    """One transaction, its events, and what to do when it commits or does not."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._compensations: list[Compensation] = []
        self._after_commit: list[Effect] = []

    async def publish(self, *events: Event) -> None:
        await outbox.add(self.session, *events)

    def on_rollback(self, undo: Compensation) -> None:
        """Run `undo` if this unit's writes are not kept (an error, or a failed commit)."""
        self._compensations.append(undo)

    def after_commit(self, then: Effect) -> None:
        """Run `then` (a function or a coroutine function) once the commit is durable."""
        self._after_commit.append(then)

    async def _compensate(self) -> None:
        pending, self._compensations = self._compensations[::-1], []
        for undo in pending:
            try:
                await undo()
            except Exception:
                log.exception("compensation %r failed", undo)

    async def _committed(self) -> None:
        pending, self._after_commit = self._after_commit, []
        for then in pending:
            try:
                result = then()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("after-commit effect %r failed", then)


@contextlib.asynccontextmanager
async def unit_of_work(db: Database, scope: TenantScope = NO_TENANT, *,
                       read_only: bool = False) -> AsyncIterator[UnitOfWork]:
    """A unit of work that commits when the block returns and rolls back (running its
    compensations) when it raises or its commit fails. Read-only units end with the
    COMMIT of their read-only transaction (`Database.session`)."""
    async with db.session(scope, read_only=read_only) as session:
        uow = UnitOfWork(session)
        try:
            yield uow
            if not read_only:
                await session.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                await session.rollback()
            await uow._compensate()
            raise
    await uow._committed()
