"""Pooled connections: pinged before reuse only after idling, replaced when dead."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from libs.common import db as db_module
from libs.common.db import Database, libpq_url
from libs.common.provision import ServiceDatabase


async def _backend_pid(db: Database) -> int:
    async with db.session() as session:
        return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())


def _terminate(admin_url: str, pid: int) -> None:
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def test_an_idle_connection_that_died_is_replaced_before_use(
        kernel_db_info: ServiceDatabase, postgres_admin_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database(kernel_db_info.app_url, pool_size=1, max_overflow=0)
    try:
        first = await _backend_pid(db)
        _terminate(postgres_admin_url, first)
        monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.0)  # "it idled"
        assert await _backend_pid(db) != first  # the ping failed, a new connection answered
    finally:
        await db.dispose()


async def test_a_connection_that_died_while_busy_fails_one_request_then_is_replaced(
        kernel_db_info: ServiceDatabase, postgres_admin_url: str) -> None:
    """The trade for no ping under load: one failed request, then a fresh pool."""
    db = Database(kernel_db_info.app_url, pool_size=1, max_overflow=0)
    try:
        first = await _backend_pid(db)
        _terminate(postgres_admin_url, first)
        with pytest.raises(DBAPIError):
            await _backend_pid(db)
        assert await _backend_pid(db) != first
    finally:
        await db.dispose()


async def test_a_read_only_unit_of_work_refuses_writes_and_keeps_prepared_statements(
        kernel_db_info: ServiceDatabase) -> None:
    """Reads end with COMMIT (psycopg drops its prepared statements on ROLLBACK), and the
    READ ONLY flag is what makes that COMMIT harmless (ADR 0017)."""
    db = Database(kernel_db_info.app_url, pool_size=1, max_overflow=0)
    scope = db_module.TenantScope.account(1)
    read = text("SELECT count(*) FROM notes WHERE body = :body")
    try:
        with pytest.raises(DBAPIError, match="read-only transaction"):
            async with db.session(scope, read_only=True) as session:
                await session.execute(text("INSERT INTO notes (account_id, body) "
                                           "VALUES (1, 'no')"))
        for _ in range(6):  # psycopg prepares a statement on its 5th execution
            async with db.session(scope, read_only=True) as session:
                await session.execute(read, {"body": "x"})
        async with db.session(scope, read_only=True) as session:
            prepared = (await session.execute(text(
                "SELECT count(*) FROM pg_prepared_statements "
                "WHERE statement LIKE 'SELECT count(*) FROM notes%'"))).scalar_one()
        assert prepared == 1
        with pytest.raises(db_module.UncommittedWrites):  # a write nobody committed
            async with db.session(scope) as session:
                await session.execute(text("INSERT INTO notes (account_id, body) "
                                           "VALUES (1, 'w')"))
        async with db.session(scope, read_only=True) as session:
            assert (await session.execute(read, {"body": "w"})).scalar_one() == 0
    finally:
        await db.dispose()
