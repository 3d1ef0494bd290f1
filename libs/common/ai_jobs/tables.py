"""The AI task log: one row per billed AI job, declared into the metadata of the service
that runs the job (each service has its own)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

# pending → running → success | failed
LOG_STATUSES = ("pending", "running", "success", "failed")
# A job not finished yet: what the sweep of abandoned jobs looks at (`ai_jobs/abandoned.py`).
OPEN_STATUSES = ("pending", "running")


def ai_task_logs_in(metadata: MetaData) -> Table:
    """`ai_task_logs` in `metadata` (declared there on the first call). What was asked,
    the holds placed for it (`holds`: item → hold id; `hold_id` when there is one), what
    it cost (`charges`, captured per item), how it ended; `heartbeat_at`, touched by the
    attempt at work on it, says one is alive."""
    if "ai_task_logs" in metadata.tables:
        return metadata.tables["ai_task_logs"]
    return Table(
        "ai_task_logs", metadata,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("account_id", BigInteger, nullable=False),
        Column("task_id", UUID(as_uuid=True), nullable=False, unique=True),
        Column("function", String(64), nullable=False),
        Column("user_id", BigInteger, nullable=True),
        Column("status", String(16), nullable=False, default="pending"),
        Column("model", String(255), nullable=False, default=""),
        Column("tokens_input", Integer, nullable=False, default=0),
        Column("tokens_output", Integer, nullable=False, default=0),
        Column("cost_usd", Numeric(12, 6), nullable=False, server_default="0"),
        Column("hold_id", BigInteger, nullable=True),
        Column("holds", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("credits_held", Integer, nullable=False, default=0),
        Column("credits_charged", Integer, nullable=False, default=0),
        Column("charges", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
        Column("attempts", Integer, nullable=False, default=0),
        Column("duration_ms", Integer, nullable=True),
        Column("request", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("result", JSONB, nullable=True),
        Column("error", Text, nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("started_at", DateTime(timezone=True), nullable=True),
        Column("heartbeat_at", DateTime(timezone=True), nullable=True),
        Column("finished_at", DateTime(timezone=True), nullable=True),
        Index("ix_ai_task_logs_account_created", "account_id", text("created_at DESC")),
        Index("ix_ai_task_logs_open", "created_at",
              postgresql_where=text("status IN ('pending', 'running')")),
    )
