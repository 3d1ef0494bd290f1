"""Auth's tables, on auth's own SQLModel registry (Alembic sees only these).

Tenant rows carry `account_id` and sit behind row-level security (see the migration).
Global rows (plans, industries, seed keywords, signing keys, login throttles) do not.
Build instances with `Model.model_validate(...)` when input must be validated: SQLModel
table models do not validate on construction.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from libs.common.columns import created_timestamp, optional_timestamp
from libs.common.events import utcnow


class AuthModel(SQLModel, registry=registry()):
    """Base of every auth table: its own metadata, separate from other services'."""




def _fk(
    target: str, *, nullable: bool = False, ondelete: str = "CASCADE", index: bool = True
) -> Any:
    return Field(
        default=None,
        sa_column=Column(
            BigInteger, ForeignKey(target, ondelete=ondelete), nullable=nullable, index=index
        ),
    )


def _account_id() -> Any:
    return Field(
        sa_column=Column(
            BigInteger, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )


def _json(default: Any) -> Any:
    factory = (lambda: dict(default)) if isinstance(default, dict) else (lambda: list(default))
    return Field(
        default_factory=factory,
        sa_column=Column(
            JSONB,
            nullable=False,
            server_default=text("'{}'" if isinstance(default, dict) else "'[]'"),
        ),
    )


# --- platform catalogue (global) -------------------------------------------------------


class Plan(AuthModel, table=True):
    __tablename__ = "plans"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    name: str = Field(max_length=100)
    slug: str = Field(max_length=100, unique=True)
    price: Decimal = Field(default=Decimal("0"), sa_column=Column(Numeric(10, 2), nullable=False))
    billing_cycle: str = Field(default="monthly", max_length=20)
    included_credits: int = 0
    max_users: int = 1
    max_sites: int = 1
    max_sectors_per_site: int = 5
    max_keywords: int = 1000
    max_author_profiles: int = 1
    features: list[str] = _json([])
    is_active: bool = True
    created_at: datetime = created_timestamp()
    updated_at: datetime | None = optional_timestamp()


class Industry(AuthModel, table=True):
    __tablename__ = "industries"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    name: str = Field(max_length=150)
    slug: str = Field(max_length=150, unique=True)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    is_active: bool = True
    created_at: datetime = created_timestamp()


class IndustrySector(AuthModel, table=True):
    __tablename__ = "industry_sectors"
    __table_args__ = (UniqueConstraint("industry_id", "slug"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    industry_id: int = _fk("industries.id")
    name: str = Field(max_length=150)
    slug: str = Field(max_length=150)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    is_active: bool = True
    created_at: datetime = created_timestamp()


class SeedKeyword(AuthModel, table=True):
    __tablename__ = "seed_keywords"
    __table_args__ = (
        UniqueConstraint("sector_id", "keyword", "country", name="uq_seed_keyword"),
        Index(
            "ix_seed_keywords_keyword_trgm",
            "keyword",
            postgresql_using="gin",
            postgresql_ops={"keyword": "gin_trgm_ops"},
        ),
        Index("ix_seed_keywords_filters", "industry_id", "sector_id", "intent", "country"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    keyword: str = Field(max_length=255)
    industry_id: int = _fk("industries.id")
    sector_id: int = _fk("industry_sectors.id")
    volume: int = 0
    difficulty: int = 0
    intent: str = Field(default="informational", max_length=20)
    country: str = Field(default="US", max_length=2)
    is_active: bool = True
    created_at: datetime = created_timestamp()
    updated_at: datetime | None = optional_timestamp()


class SigningKey(AuthModel, table=True):
    """An Ed25519 key. It is published (JWKS) from creation and signs from `activates_at`,
    so every verifier can know it before the first token it signs arrives. The newest
    active key signs; a superseded key (`retired_at`) stays published until
    `publish_until`, when every token it signed has expired."""

    __tablename__ = "signing_keys"

    kid: str = Field(sa_column=Column(String(64), primary_key=True))
    private_jwk_encrypted: str = Field(sa_column=Column(Text, nullable=False))
    public_jwk: dict[str, Any] = _json({})
    created_at: datetime = created_timestamp()
    activates_at: datetime = Field(
        default_factory=utcnow, sa_type=DateTime(timezone=True), nullable=False
    )
    retired_at: datetime | None = optional_timestamp()
    publish_until: datetime | None = optional_timestamp()


class LoginThrottle(AuthModel, table=True):
    """Failed sign-ins per key (`email:<address>` or `addr:<ip>`) in the current window."""

    __tablename__ = "login_throttles"

    key: str = Field(sa_column=Column(String(320), primary_key=True))
    failures: int = 0
    window_started_at: datetime = created_timestamp()
    locked_until: datetime | None = optional_timestamp()


# --- tenants ---------------------------------------------------------------------------


class Account(AuthModel, table=True):
    __tablename__ = "accounts"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    name: str = Field(max_length=255)
    slug: str = Field(max_length=255, unique=True)
    # No foreign key: the owner is created after the account in the same transaction.
    owner_user_id: int | None = Field(default=None, sa_type=BigInteger, nullable=True)
    plan_id: int = _fk("plans.id", ondelete="RESTRICT")
    status: str = Field(default="active", max_length=20)
    billing_email: str | None = Field(default=None, max_length=320)
    billing_address: str | None = Field(default=None, max_length=500)
    billing_city: str | None = Field(default=None, max_length=100)
    billing_postal_code: str | None = Field(default=None, max_length=20)
    billing_country: str | None = Field(default=None, max_length=2)
    tax_id: str | None = Field(default=None, max_length=100)
    created_at: datetime = created_timestamp()
    updated_at: datetime | None = optional_timestamp()


class User(AuthModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    account_id: int = _account_id()
    email: str = Field(max_length=320, unique=True)
    username: str = Field(max_length=150)
    first_name: str = Field(default="", max_length=150)
    last_name: str = Field(default="", max_length=150)
    password_hash: str = Field(sa_column=Column(Text, nullable=False))
    role: str = Field(default="viewer", max_length=20)
    is_active: bool = True
    created_at: datetime = created_timestamp()
    updated_at: datetime | None = optional_timestamp()
    last_login_at: datetime | None = optional_timestamp()
    password_changed_at: datetime | None = optional_timestamp()


class Subscription(AuthModel, table=True):
    __tablename__ = "subscriptions"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    account_id: int = _account_id()
    plan_id: int = _fk("plans.id", ondelete="RESTRICT")
    status: str = Field(default="active", max_length=20)
    current_period_start: datetime = Field(sa_type=DateTime(timezone=True), nullable=False)
    current_period_end: datetime = Field(sa_type=DateTime(timezone=True), nullable=False)
    created_at: datetime = created_timestamp()
    updated_at: datetime | None = optional_timestamp()


class Site(AuthModel, table=True):
    __tablename__ = "sites"
    __table_args__ = (UniqueConstraint("account_id", "slug"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    account_id: int = _account_id()
    name: str = Field(max_length=255)
    slug: str = Field(max_length=255)
    url: str | None = Field(default=None, max_length=500)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    industry_id: int | None = _fk("industries.id", nullable=True, ondelete="SET NULL")
    is_active: bool = True
    # WordPress plugin key: sha256 of the key, its first characters for recognition, and
    # the session its tokens belong to (revoked when the key is rotated).
    api_key_hash: str | None = Field(default=None, max_length=64, unique=True)
    api_key_prefix: str | None = Field(default=None, max_length=16)
    api_key_session_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = created_timestamp()
    updated_at: datetime | None = optional_timestamp()


class Sector(AuthModel, table=True):
    __tablename__ = "sectors"
    __table_args__ = (UniqueConstraint("site_id", "slug"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    account_id: int = _account_id()
    site_id: int = _fk("sites.id")
    name: str = Field(max_length=255)
    slug: str = Field(max_length=255)
    industry_sector_id: int | None = _fk("industry_sectors.id", nullable=True, ondelete="SET NULL")
    description: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    is_active: bool = True
    created_at: datetime = created_timestamp()
    updated_at: datetime | None = optional_timestamp()


class SiteUserAccess(AuthModel, table=True):
    __tablename__ = "site_user_access"
    __table_args__ = (UniqueConstraint("user_id", "site_id"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    account_id: int = _account_id()
    user_id: int = _fk("users.id")
    site_id: int = _fk("sites.id")
    granted_by_user_id: int | None = Field(default=None, sa_type=BigInteger, nullable=True)
    created_at: datetime = created_timestamp()


class Group(AuthModel, table=True):
    """A named set of users within an account (e.g. "Writers"), for bulk site access."""

    __tablename__ = "groups"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    account_id: int = _account_id()
    name: str = Field(max_length=150)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    created_at: datetime = created_timestamp()
    updated_at: datetime | None = optional_timestamp()


class GroupMember(AuthModel, table=True):
    __tablename__ = "group_members"

    group_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    )
    user_id: int = Field(
        sa_column=Column(
            BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
        )
    )
    account_id: int = _account_id()


class AuthSession(AuthModel, table=True):
    """A sign-in: the family of its rotating refresh tokens, and the `sid` of its access
    tokens. `kind` is `login`, `basic` (exchanged HTTP Basic) or `api_key` (a site key)."""

    __tablename__ = "auth_sessions"

    id: str = Field(sa_column=Column(String(64), primary_key=True))
    account_id: int = _account_id()
    user_id: int = _fk("users.id")
    kind: str = Field(default="login", max_length=20)
    created_at: datetime = created_timestamp()
    expires_at: datetime = Field(sa_type=DateTime(timezone=True), nullable=False)
    revoked_at: datetime | None = optional_timestamp()
    revoked_reason: str | None = Field(default=None, max_length=50)


class RefreshToken(AuthModel, table=True):
    """An opaque refresh token, stored as its sha256. Spent on use (`used_at`)."""

    __tablename__ = "refresh_tokens"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    account_id: int = _account_id()
    session_id: str = Field(
        sa_column=Column(
            String(64),
            ForeignKey("auth_sessions.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = created_timestamp()
    expires_at: datetime = Field(sa_type=DateTime(timezone=True), nullable=False)
    used_at: datetime | None = optional_timestamp()


# --- account AI configuration -----------------------------------------------------------


class Prompt(AuthModel, table=True):
    __tablename__ = "prompts"
    __table_args__ = (UniqueConstraint("account_id", "prompt_type"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    account_id: int = _account_id()
    prompt_type: str = Field(max_length=50)
    prompt_value: str = Field(sa_column=Column(Text, nullable=False))
    is_active: bool = True
    created_at: datetime = created_timestamp()
    updated_at: datetime | None = optional_timestamp()


class IntegrationSetting(AuthModel, table=True):
    """Per account and provider: non-secret configuration in `config`, the API key
    encrypted (never returned in clear)."""

    __tablename__ = "integration_settings"
    __table_args__ = (UniqueConstraint("account_id", "provider"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    account_id: int = _account_id()
    provider: str = Field(max_length=50)
    config: dict[str, Any] = _json({})
    api_key_encrypted: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    is_active: bool = True
    created_at: datetime = created_timestamp()
    updated_at: datetime | None = optional_timestamp()


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
