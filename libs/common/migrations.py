"""Alembic, one history per service, driven from code (no alembic.ini).

Each service's `migrations/env.py` calls `run_env(metadata)`. `upgrade` runs a service's
migrations as the owner role, then grants the service's runtime role what it needs and no
more. Services refuse to start on a schema older than their code (`assert_current`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import cast

from alembic import command, context
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, Table, create_engine, pool, text
from sqlalchemy.schema import CreateIndex, CreateTable, DropTable

from libs.common.ai_jobs import ai_task_logs_in
from libs.common.db import async_url
from libs.common.directory import TENANT_TABLES as DIRECTORY_TENANT_TABLES
from libs.common.directory import directory_tables_in
from libs.common.models import dead_letters, kernel_metadata, outbox, processed_events


def alembic_config(migrations_dir: Path, url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    return cfg


def run_env(target_metadata: MetaData) -> None:
    """Body of every service's `env.py`: online migrations with the sync psycopg driver."""
    cfg = context.config
    engine = create_engine(cfg.get_main_option("sqlalchemy.url") or "", poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=[target_metadata, kernel_metadata],
            compare_type=True,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


def upgrade(migrations_dir: Path, owner_url: str, app_role: str | None = None) -> None:
    command.upgrade(alembic_config(migrations_dir, owner_url), "head")
    if app_role:
        grant_runtime_role(owner_url, app_role)


def revision(migrations_dir: Path, owner_url: str, message: str) -> None:
    """Autogenerate a revision against an up-to-date database."""
    command.revision(alembic_config(migrations_dir, owner_url), message=message,
                     autogenerate=True)


def head_revision(migrations_dir: Path) -> str | None:
    return ScriptDirectory.from_config(alembic_config(migrations_dir, "postgresql://")).get_current_head()


def current_revision(url: str) -> str | None:
    engine = create_engine(async_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


class SchemaOutdated(RuntimeError):
    pass


def assert_current(migrations_dir: Path, url: str) -> None:
    head, current = head_revision(migrations_dir), current_revision(url)
    if head != current:
        raise SchemaOutdated(
            f"database is at {current!r} but the code expects {head!r}: run `igny8 migrate`"
        )


def grant_runtime_role(owner_url: str, role: str) -> None:
    engine = create_engine(async_url(owner_url), poolclass=pool.NullPool)
    with engine.begin() as conn:
        conn.execute(text(f'GRANT USAGE ON SCHEMA public TO "{role}"'))
        conn.execute(text(
            f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"'))
        conn.execute(text(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"'))
        conn.execute(text(f'REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM "{role}"'))
    engine.dispose()


def tenant_rls(table: str, column: str = "account_id") -> list[str]:
    """Statements that put a tenant table behind row-level security.

    Rows are visible when they belong to the transaction's account, or when the
    transaction runs in the system scope (platform staff, sweepers).
    """
    predicate = (
        f"current_setting('igny8.all_accounts', true) = 'on' OR {column} = "
        f"NULLIF(current_setting('igny8.account_id', true), '')::bigint"
    )
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY tenant_isolation ON {table} USING ({predicate}) WITH CHECK ({predicate})",
    ]


# --- helpers a migration calls with its `op` ------------------------------------------------
# DDL goes through `op.execute`, so the helpers also work in offline (`--sql`) mode.


def enable_tenant_rls(op: Operations, *tables: str, column: str = "account_id") -> None:
    """Row-level security on each of `tables`, keyed on `column` (see `tenant_rls`)."""
    for table in tables:
        for statement in tenant_rls(table, column):
            op.execute(statement)


def create_tables(op: Operations, *tables: Table) -> None:
    """Tables declared in code (with their indexes), created as declared: for tables the
    kernel defines once for every service, rather than a copy pasted per migration."""
    for table in tables:
        op.execute(CreateTable(table))
        for index in sorted(table.indexes, key=lambda i: i.name or ""):
            op.execute(CreateIndex(index))


def drop_tables(op: Operations, *tables: Table) -> None:
    for table in reversed(tables):
        op.execute(DropTable(table))


KERNEL_TABLES: tuple[Table, ...] = (outbox, processed_events, dead_letters)


def kernel_tables(op: Operations, *, directory: bool = False,
                  ai_task_log: bool = False) -> None:
    """The outbox, the inbox of processed events and the dead letters, which every
    service's first migration creates (`libs.common.models` defines them); with
    `directory`, the auth directory's read models (`directory_tables`); with
    `ai_task_log`, the log of billed AI jobs (`ai_task_log_table`)."""
    create_tables(op, *KERNEL_TABLES)
    if directory:
        directory_tables(op)
    if ai_task_log:
        ai_task_log_table(op)


def drop_kernel_tables(op: Operations, *, directory: bool = False,
                       ai_task_log: bool = False) -> None:
    """Undoes `kernel_tables` called with the same arguments."""
    if ai_task_log:
        drop_ai_task_log_table(op)
    if directory:
        drop_directory_tables(op)
    drop_tables(op, *KERNEL_TABLES)


def kernel_retention_index(op: Operations) -> None:
    """The index the retention pass reads processed events by (libs/common/retention.py),
    for databases whose first migration ran before `kernel_tables` created it. Built
    CONCURRENTLY, outside the migration's transaction: the table may be large by then (it
    was never pruned before) and consumers write to it all the time."""
    with op.get_context().autocommit_block():
        op.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_processed_events_processed_at"
                   " ON processed_events (processed_at)")


def drop_kernel_retention_index(op: Operations) -> None:
    op.execute("DROP INDEX IF EXISTS ix_processed_events_processed_at")


def kernel_retention_revision() -> tuple[Callable[[], None], Callable[[], None]]:
    """The `upgrade` and `downgrade` of the revision every service has that adds the
    retention index to a database made before it (a new one has it from `kernel_tables`):

        upgrade, downgrade = kernel_retention_revision()
    """
    from alembic import op

    ops = cast(Operations, op)  # the proxy to the running migration's operations

    def upgrade() -> None:  # named: alembic logs "Running upgrade ..."
        kernel_retention_index(ops)

    def downgrade() -> None:
        drop_kernel_retention_index(ops)

    return upgrade, downgrade


def directory_tables(op: Operations) -> None:
    """The auth directory's tables (`libs.common.directory`), tenant ones behind
    row-level security, for a service that declares `Directory(metadata)`."""
    create_tables(op, *directory_tables_in(MetaData()).all)
    enable_tenant_rls(op, *DIRECTORY_TENANT_TABLES)


def drop_directory_tables(op: Operations) -> None:
    drop_tables(op, *directory_tables_in(MetaData()).all)


def ai_task_log_table(op: Operations) -> None:
    """The AI task log (`libs.common.ai_jobs`), behind row-level security, for a service
    that runs billed AI jobs."""
    create_tables(op, ai_task_logs_in(MetaData()))
    enable_tenant_rls(op, "ai_task_logs")


def drop_ai_task_log_table(op: Operations) -> None:
    drop_tables(op, ai_task_logs_in(MetaData()))


def ai_task_log_liveness_revision() -> tuple[Callable[[], None], Callable[[], None]]:
    """The `upgrade` and `downgrade` of the revision a service with an AI task log made
    before `heartbeat_at` and the index of open logs has (a new database has both from
    `ai_task_log_table`): what the sweep of abandoned jobs reads (`ai_jobs/abandoned.py`).

        upgrade, downgrade = ai_task_log_liveness_revision()
    """
    from alembic import op

    ops = cast(Operations, op)

    def upgrade() -> None:
        ops.execute("ALTER TABLE ai_task_logs ADD COLUMN IF NOT EXISTS heartbeat_at"
                    " timestamp with time zone")
        ops.execute("CREATE INDEX IF NOT EXISTS ix_ai_task_logs_open ON ai_task_logs"
                    " (created_at) WHERE status IN ('pending', 'running')")

    def downgrade() -> None:
        ops.execute("DROP INDEX IF EXISTS ix_ai_task_logs_open")
        ops.execute("ALTER TABLE ai_task_logs DROP COLUMN IF EXISTS heartbeat_at")

    return upgrade, downgrade
