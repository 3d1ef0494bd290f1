"""Publishing: site integrations, their sync events, publications and the publisher's
media and term caches, webhook receipts; each behind row-level security.

Revision ID: 0002
Revises: 0001
"""

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from libs.common.migrations import enable_tenant_rls

revision, down_revision, branch_labels, depends_on = "0002", "0001", None, None

TABLES = ("site_integrations", "sync_events", "publications", "publication_media",
          "publication_terms", "webhook_receipts")
LIVE = sa.text("deleted_at IS NULL")


def identity() -> sa.Column[Any]:
    return sa.Column("id", sa.BigInteger(), sa.Identity(always=False), primary_key=True)


def ref(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def integration(*, key: bool = False) -> sa.Column[Any]:
    return sa.Column("integration_id", sa.BigInteger(),
                     sa.ForeignKey("site_integrations.id", ondelete="CASCADE"),
                     nullable=False, primary_key=key)


def moment(name: str, *, now: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=not now,
                     server_default=sa.func.now() if now else None)


def text(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.Text(), nullable=True)


def json_object(name: str) -> sa.Column[Any]:
    return sa.Column(name, JSONB(astext_type=sa.Text()), nullable=False,
                     server_default=sa.text("'{}'::jsonb"))


def upgrade() -> None:
    op.create_table(
        "site_integrations", identity(), ref("account_id"), ref("site_id"),
        sa.Column("platform", sa.String(32), nullable=False), json_object("config"),
        text("credentials"), sa.Column("webhook_secret", sa.Text(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("sync_enabled", sa.Boolean(), nullable=False),
        sa.Column("sync_status", sa.String(16), nullable=False),
        moment("last_sync_at"), text("last_error"),
        moment("created_at", now=True), moment("updated_at", now=True), moment("deleted_at"),
        sa.CheckConstraint("platform IN ('wordpress')", name="site_integration_platform"),
        sa.CheckConstraint("sync_status IN ('idle', 'syncing', 'success', 'failed')",
                           name="site_integration_sync_status"))
    op.create_index("uq_site_integrations_site_platform", "site_integrations",
                    ["site_id", "platform"], unique=True, postgresql_where=LIVE)
    op.create_index("ix_site_integrations_account_created", "site_integrations",
                    ["account_id", sa.text("created_at DESC"), sa.text("id DESC")],
                    postgresql_where=LIVE)

    op.create_table(
        "sync_events", identity(), ref("account_id"), ref("site_id"), integration(),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False), text("error"),
        sa.Column("duration_ms", sa.Integer(), nullable=False), json_object("details"),
        moment("created_at", now=True),
        sa.CheckConstraint(
            "kind IN ('test_connection', 'sync', 'update_structure', "
            "'sync_wordpress_content', 'publish', 'unpublish', 'webhook_status', "
            "'webhook_metadata')", name="sync_event_kind"))
    op.create_index("ix_sync_events_integration", "sync_events",
                    ["integration_id", sa.text("created_at DESC"), sa.text("id DESC")])

    op.create_table(
        "publications", identity(), ref("account_id"), ref("site_id"), integration(),
        ref("content_id"), sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False), ref("external_id", nullable=True),
        sa.Column("create_started", sa.Boolean(), nullable=False), text("url"),
        sa.Column("slug", sa.String(255), nullable=True), ref("revision", nullable=True),
        text("error"), sa.Column("task_id", sa.String(64), nullable=True),
        moment("created_at", now=True), moment("updated_at", now=True),
        sa.UniqueConstraint("integration_id", "content_id",
                            name="uq_publications_integration_content"),
        sa.CheckConstraint("status IN ('pending', 'published', 'scheduled', 'draft', "
                           "'unpublished', 'failed')", name="publication_status"))
    op.create_index("ix_publications_account_created", "publications",
                    ["account_id", sa.text("created_at DESC"), sa.text("id DESC")])
    op.create_index("ix_publications_content", "publications", ["content_id"])

    op.create_table(
        "publication_media", identity(), ref("account_id"), integration(),
        sa.Column("sha256", sa.String(64), nullable=False), ref("media_id", nullable=True),
        text("url"), moment("created_at", now=True),
        sa.UniqueConstraint("integration_id", "sha256",
                            name="uq_publication_media_integration_sha256"))
    op.create_table(
        "publication_terms", identity(), ref("account_id"), integration(),
        sa.Column("taxonomy", sa.String(32), nullable=False),
        sa.Column("name_key", sa.String(255), nullable=False), ref("term_id"),
        sa.UniqueConstraint("integration_id", "taxonomy", "name_key",
                            name="uq_publication_terms_integration_name"))
    op.create_table(
        "webhook_receipts", integration(key=True),
        sa.Column("message_id", sa.String(255), primary_key=True), ref("account_id"),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False))
    op.create_index("ix_webhook_receipts_expires", "webhook_receipts", ["expires_at"])

    enable_tenant_rls(op, *TABLES)


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
