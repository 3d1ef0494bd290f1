"""Auth's initial schema: tenancy, identity, catalogue, AI configuration, kernel tables.

Tenant tables sit behind row-level security; `accounts` is keyed by its own id.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 20:19:40.964174
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from libs.common.migration_columns import (
    decimal,
    flag,
    indexed,
    json_list,
    json_object,
    long_text,
    moment,
    number,
    ref,
    serial,
    trigram,
    varchar,
)
from libs.common.migrations import drop_kernel_tables, enable_tenant_rls, kernel_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


TENANT_TABLES = (
    "users",
    "subscriptions",
    "sites",
    "sectors",
    "site_user_access",
    "groups",
    "group_members",
    "auth_sessions",
    "refresh_tokens",
    "prompts",
    "integration_settings",
)


# Parents first; `downgrade` drops them in reverse.
TABLES = (
    "industries", "login_throttles", "plans", "signing_keys", "accounts", "industry_sectors",
    "groups", "integration_settings", "prompts", "seed_keywords", "sites", "subscriptions",
    "users", "auth_sessions", "group_members", "sectors", "site_user_access",
    "refresh_tokens",
)


def account_id() -> sa.Column[Any]:
    """The owning account of a tenant row, which goes with it."""
    return ref("account_id", parent="accounts")


def made_and_changed() -> list[sa.Column[Any]]:
    return [moment("created_at", now=True), moment("updated_at")]


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    # The catalogue, plans and keys: no tenant.
    op.create_table(
        "industries", serial(), varchar("name", 150), varchar("slug", 150),
        long_text("description"), flag("is_active"), moment("created_at", now=True),
        sa.UniqueConstraint("slug"))
    op.create_table(
        "login_throttles", varchar("key", 320, key=True), number("failures"),
        moment("window_started_at", now=True), moment("locked_until"))
    op.create_table(
        "plans", serial(), varchar("name", 100), varchar("slug", 100),
        decimal("price", 10, 2, default=None), varchar("billing_cycle", 20),
        *[number(name) for name in ("included_credits", "max_users", "max_sites",
                                    "max_sectors_per_site", "max_keywords",
                                    "max_author_profiles")],
        json_list("features"), flag("is_active"), *made_and_changed(),
        sa.UniqueConstraint("slug"))
    op.create_table(
        "signing_keys", varchar("kid", 64, key=True),
        long_text("private_jwk_encrypted", default=None), json_object("public_jwk"),
        moment("created_at", now=True), moment("activates_at", required=True),
        moment("retired_at"), moment("publish_until"))

    op.create_table(
        "accounts", serial(), varchar("name", 255), varchar("slug", 255),
        ref("owner_user_id", nullable=True), ref("plan_id", parent="plans", ondelete="RESTRICT"),
        varchar("status", 20), varchar("billing_email", 320, nullable=True),
        varchar("billing_address", 500, nullable=True),
        varchar("billing_city", 100, nullable=True),
        varchar("billing_postal_code", 20, nullable=True),
        varchar("billing_country", 2, nullable=True), varchar("tax_id", 100, nullable=True),
        *made_and_changed(), sa.UniqueConstraint("slug"))
    indexed(op, "accounts", "plan_id")
    op.create_table(
        "industry_sectors", serial(), ref("industry_id", parent="industries"),
        varchar("name", 150), varchar("slug", 150), long_text("description"),
        flag("is_active"), moment("created_at", now=True),
        sa.UniqueConstraint("industry_id", "slug"))
    indexed(op, "industry_sectors", "industry_id")
    op.create_table(
        "groups", serial(), account_id(), varchar("name", 150), long_text("description"),
        *made_and_changed(), sa.UniqueConstraint("account_id", "name"))
    indexed(op, "groups", "account_id")

    # AI configuration.
    op.create_table(
        "integration_settings", serial(), account_id(), varchar("provider", 50),
        json_object("config"), long_text("api_key_encrypted", default=None, nullable=True),
        flag("is_active"), *made_and_changed(), sa.UniqueConstraint("account_id", "provider"))
    indexed(op, "integration_settings", "account_id")
    op.create_table(
        "prompts", serial(), account_id(), varchar("prompt_type", 50),
        long_text("prompt_value", default=None), flag("is_active"), *made_and_changed(),
        sa.UniqueConstraint("account_id", "prompt_type"))
    indexed(op, "prompts", "account_id")

    op.create_table(
        "seed_keywords", serial(), varchar("keyword", 255),
        ref("industry_id", parent="industries"), ref("sector_id", parent="industry_sectors"),
        number("volume"), number("difficulty"), varchar("intent", 20), varchar("country", 2),
        flag("is_active"), *made_and_changed(),
        sa.UniqueConstraint("sector_id", "keyword", "country", name="uq_seed_keyword"))
    op.create_index("ix_seed_keywords_filters", "seed_keywords",
                    ["industry_id", "sector_id", "intent", "country"])
    indexed(op, "seed_keywords", "industry_id")
    trigram(op, "seed_keywords", "keyword", live=False)
    indexed(op, "seed_keywords", "sector_id")

    # Tenancy and identity.
    op.create_table(
        "sites", serial(), account_id(), varchar("name", 255), varchar("slug", 255),
        varchar("url", 500, nullable=True), long_text("description"),
        ref("industry_id", nullable=True, parent="industries", ondelete="SET NULL"),
        flag("is_active"), varchar("api_key_hash", 64, nullable=True),
        varchar("api_key_prefix", 16, nullable=True),
        varchar("api_key_session_id", 64, nullable=True), *made_and_changed(),
        sa.UniqueConstraint("account_id", "slug"), sa.UniqueConstraint("api_key_hash"))
    indexed(op, "sites", "account_id", "industry_id")
    op.create_table(
        "subscriptions", serial(), account_id(),
        ref("plan_id", parent="plans", ondelete="RESTRICT"), varchar("status", 20),
        moment("current_period_start", required=True),
        moment("current_period_end", required=True), *made_and_changed())
    indexed(op, "subscriptions", "account_id", "plan_id")
    op.create_table(
        "users", serial(), account_id(), varchar("email", 320), varchar("username", 150),
        varchar("first_name", 150), varchar("last_name", 150),
        long_text("password_hash", default=None), varchar("role", 20), flag("is_active"),
        *made_and_changed(), moment("last_login_at"), moment("password_changed_at"),
        sa.UniqueConstraint("email"))
    indexed(op, "users", "account_id")
    op.create_table(
        "auth_sessions", varchar("id", 64, key=True), account_id(),
        ref("user_id", parent="users"), varchar("kind", 20), moment("created_at", now=True),
        moment("expires_at", required=True), moment("revoked_at"),
        varchar("revoked_reason", 50, nullable=True))
    indexed(op, "auth_sessions", "account_id", "user_id")
    op.create_table(
        "group_members", ref("group_id", parent="groups"), ref("user_id", parent="users"),
        account_id(), sa.PrimaryKeyConstraint("group_id", "user_id"))
    indexed(op, "group_members", "account_id", "user_id")
    op.create_table(
        "sectors", serial(), account_id(), ref("site_id", parent="sites"),
        varchar("name", 255), varchar("slug", 255),
        ref("industry_sector_id", nullable=True, parent="industry_sectors",
            ondelete="SET NULL"),
        long_text("description"), flag("is_active"), *made_and_changed(),
        sa.UniqueConstraint("site_id", "slug"))
    indexed(op, "sectors", "account_id", "industry_sector_id", "site_id")
    op.create_table(
        "site_user_access", serial(), account_id(), ref("user_id", parent="users"),
        ref("site_id", parent="sites"), ref("granted_by_user_id", nullable=True),
        moment("created_at", now=True), sa.UniqueConstraint("user_id", "site_id"))
    indexed(op, "site_user_access", "account_id", "site_id", "user_id")
    op.create_table(
        "refresh_tokens", serial(), account_id(),
        sa.Column("session_id", sa.String(64),
                  sa.ForeignKey("auth_sessions.id", ondelete="CASCADE"), nullable=False),
        varchar("token_hash", 64), moment("created_at", now=True),
        moment("expires_at", required=True), moment("used_at"),
        sa.UniqueConstraint("token_hash"))
    indexed(op, "refresh_tokens", "account_id", "session_id")
    kernel_tables(op)
    enable_tenant_rls(op, "accounts", column="id")
    enable_tenant_rls(op, *TENANT_TABLES)


def downgrade() -> None:
    drop_kernel_tables(op)
    for table in reversed(TABLES):
        op.drop_table(table)
