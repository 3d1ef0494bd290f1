"""Publishing's tables, on writer's registry (`WriterModel`; `services/writer/models.py`
imports this module so Alembic and the migration test see them). Migration 0002.

- `site_integrations`: a site's WordPress connection. `credentials` is a `SecretBox`
  ciphertext of `{"username", "app_password": BoundSecret}` (never answered);
  `webhook_secret` is the ciphertext of the secret the plugin signs webhooks with.
- `sync_events`: one row per connection test, sync, import, publish or webhook.
- `publications`: one content on one integration (the publisher's `PublicationRecord`).
- `publication_media` and `publication_terms`: what the publisher knows of a site's media
  (by sha256) and terms (by name): its caches, written ahead of uploads.
- `webhook_receipts`: webhook ids already accepted (replays refused), until they expire.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Index, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

from libs.common.columns import (
    SoftDeleted,
    Timestamped,
    bigint_ref,
    created_timestamp,
    identity_key,
    one_of,
    optional_timestamp,
)
from services.writer.models import WriterModel

LIVE = text("deleted_at IS NULL")


class IntegrationPlatform(StrEnum):
    WORDPRESS = "wordpress"


class SyncStatus(StrEnum):
    IDLE = "idle"
    SYNCING = "syncing"
    SUCCESS = "success"
    FAILED = "failed"


class SyncKind(StrEnum):
    TEST_CONNECTION = "test_connection"
    SYNC = "sync"
    UPDATE_STRUCTURE = "update_structure"
    SYNC_CONTENT = "sync_wordpress_content"
    PUBLISH = "publish"
    UNPUBLISH = "unpublish"
    WEBHOOK_STATUS = "webhook_status"
    WEBHOOK_METADATA = "webhook_metadata"


class PublicationState(StrEnum):
    PENDING = "pending"
    PUBLISHED = "published"
    SCHEDULED = "scheduled"
    DRAFT = "draft"
    UNPUBLISHED = "unpublished"
    FAILED = "failed"


def post_id_text(value: Any) -> Any:
    """A publication's `external_id` (the WordPress post id, stored as the integer it is)
    as the API and events carry it: text, as content's and taxonomies' `external_id`."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _json_object() -> Any:
    return Field(default_factory=dict, sa_column=Column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")))


class SiteIntegration(WriterModel, SoftDeleted, table=True):
    __tablename__ = "site_integrations"
    __table_args__ = (
        Index("uq_site_integrations_site_platform", "site_id", "platform", unique=True,
              postgresql_where=LIVE),
        Index("ix_site_integrations_account_created", "account_id", text("created_at DESC"),
              text("id DESC"), postgresql_where=LIVE),
        one_of("platform", IntegrationPlatform, name="site_integration_platform"),
        one_of("sync_status", SyncStatus, name="site_integration_sync_status"),
    )

    id: int | None = identity_key()
    account_id: int = bigint_ref()
    site_id: int = bigint_ref()
    platform: str = Field(default=IntegrationPlatform.WORDPRESS, max_length=32)
    config: dict[str, Any] = _json_object()
    credentials: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    webhook_secret: str = Field(sa_column=Column(Text, nullable=False))
    is_active: bool = True
    sync_enabled: bool = False
    sync_status: str = Field(default=SyncStatus.IDLE, max_length=16)
    last_sync_at: datetime | None = optional_timestamp()
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class SyncEvent(WriterModel, table=True):
    __tablename__ = "sync_events"
    __table_args__ = (
        Index("ix_sync_events_integration", "integration_id", text("created_at DESC"),
              text("id DESC")),
        one_of("kind", SyncKind, name="sync_event_kind"),
    )

    id: int | None = identity_key()
    account_id: int = bigint_ref()
    site_id: int = bigint_ref()
    integration_id: int = Field(sa_column=Column(
        BigInteger, ForeignKey("site_integrations.id", ondelete="CASCADE"), nullable=False))
    kind: str = Field(max_length=32)
    success: bool = True
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    duration_ms: int = 0
    details: dict[str, Any] = _json_object()
    created_at: datetime | None = created_timestamp()


class Publication(WriterModel, Timestamped, table=True):
    __tablename__ = "publications"
    __table_args__ = (
        UniqueConstraint("integration_id", "content_id",
                         name="uq_publications_integration_content"),
        Index("ix_publications_account_created", "account_id", text("created_at DESC"),
              text("id DESC")),
        Index("ix_publications_content", "content_id"),
        one_of("status", PublicationState, name="publication_status"),
    )

    id: int | None = identity_key()
    account_id: int = bigint_ref()
    site_id: int = bigint_ref()
    integration_id: int = Field(sa_column=Column(
        BigInteger, ForeignKey("site_integrations.id", ondelete="CASCADE"), nullable=False))
    content_id: int = bigint_ref()
    attempt: int = 0
    status: str = Field(default=PublicationState.PENDING, max_length=16)
    external_id: int | None = bigint_ref(nullable=True)
    create_started: bool = False
    url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    slug: str | None = Field(default=None, max_length=255)
    revision: int | None = bigint_ref(nullable=True)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    task_id: str | None = Field(default=None, max_length=64)


class PublicationMedia(WriterModel, table=True):
    __tablename__ = "publication_media"
    __table_args__ = (UniqueConstraint("integration_id", "sha256",
                                       name="uq_publication_media_integration_sha256"),)

    id: int | None = identity_key()
    account_id: int = bigint_ref()
    integration_id: int = Field(sa_column=Column(
        BigInteger, ForeignKey("site_integrations.id", ondelete="CASCADE"), nullable=False))
    sha256: str = Field(max_length=64)
    media_id: int | None = bigint_ref(nullable=True)
    url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime | None = created_timestamp()


class PublicationTerm(WriterModel, table=True):
    __tablename__ = "publication_terms"
    __table_args__ = (UniqueConstraint("integration_id", "taxonomy", "name_key",
                                       name="uq_publication_terms_integration_name"),)

    id: int | None = identity_key()
    account_id: int = bigint_ref()
    integration_id: int = Field(sa_column=Column(
        BigInteger, ForeignKey("site_integrations.id", ondelete="CASCADE"), nullable=False))
    taxonomy: str = Field(max_length=32)
    name_key: str = Field(max_length=255)
    term_id: int = bigint_ref()


class WebhookReceipt(WriterModel, table=True):
    __tablename__ = "webhook_receipts"
    __table_args__ = (Index("ix_webhook_receipts_expires", "expires_at"),)

    integration_id: int = Field(sa_column=Column(
        BigInteger, ForeignKey("site_integrations.id", ondelete="CASCADE"), primary_key=True))
    message_id: str = Field(max_length=255, primary_key=True)
    account_id: int = bigint_ref()
    expires_at: datetime = Field(sa_column=Column(
        DateTime(timezone=True), nullable=False))


PUBLISHING_TENANT_TABLES = ("site_integrations", "sync_events", "publications",
                            "publication_media", "publication_terms", "webhook_receipts")
