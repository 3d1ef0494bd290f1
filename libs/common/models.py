"""Tables every service database has: the outbox, the inbox of processed events, and the
dead letters. They live on their own metadata; each service's Alembic env includes it."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

kernel_metadata = MetaData()

outbox = Table(
    "outbox",
    kernel_metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("seq", BigInteger, Identity(), nullable=False, unique=True),
    Column("subject", String(255), nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("headers", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("published_at", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text),
    Index("ix_outbox_unpublished", "seq", postgresql_where=text("published_at IS NULL")),
)

processed_events = Table(
    "processed_events",
    kernel_metadata,
    Column("consumer", String(128), nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("consumer", "event_id"),
    # The retention pass deletes the oldest (libs/common/retention.py).
    Index("ix_processed_events_processed_at", "processed_at"),
)

dead_letters = Table(
    "dead_letters",
    kernel_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("consumer", String(128), nullable=False),
    Column("subject", String(255), nullable=False),
    Column("event_id", String(64)),
    Column("payload", Text, nullable=False),
    Column("error", Text, nullable=False),
    Column("deliveries", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
