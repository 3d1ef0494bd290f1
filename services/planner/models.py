"""Planner's tables, on planner's own SQLModel registry (Alembic sees only these).

Planner rows (keywords, clusters, ideas, AI task logs, keyword counters) carry
`account_id` and sit behind row-level security (see the migration). Read models of what
auth owns (sites, sectors, site access, accounts) are tenant rows too; plans and seed
keywords are global. Planner records are soft-deleted (`deleted_at`); every index that
serves the API is partial on `deleted_at IS NULL`, so deleted rows cost nothing.
Build instances with `Model.model_validate(...)` when input must be validated.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    PrimaryKeyConstraint,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from libs.common.ai_jobs import ai_task_logs_in
from libs.common.columns import (
    SiteScoped,
    SoftDeleted,
    bigint_ref,
    given_key,
    identity_key,
    one_of,
    optional_timestamp,
)
from libs.common.content_kinds import ContentStructure, ContentType
from libs.common.directory import Directory
from services.planner.intent import Intent

LIVE = text("deleted_at IS NULL")


# One enum per status or choice: the tables' CHECKs, the schemas (OpenAPI enums) and the
# list filters read the same values. Keywords' intents are `intent.Intent`; ideas' content
# types and structures are the platform's (`libs/common/content_kinds.py`, shared with
# writer).


class KeywordStatus(StrEnum):
    ACTIVE = "active"
    MAPPED = "mapped"
    ARCHIVED = "archived"


class ClusterStatus(StrEnum):
    ACTIVE = "active"
    MAPPED = "mapped"
    ARCHIVED = "archived"


class IdeaStatus(StrEnum):
    NEW = "new"
    QUEUED = "queued"
    COMPLETED = "completed"


class PlannerModel(SQLModel, registry=registry()):
    """Base of every planner table: its own metadata, separate from other services'."""


# --- read models of auth's data -------------------------------------------------------

# Sites, sectors, site access, accounts and plans: the kernel's directory, in planner's
# metadata (`libs/common/directory`).
DIRECTORY = Directory(PlannerModel.metadata)


class SeedKeywordRef(PlannerModel, table=True):
    """Auth's global seed keyword library, as far as planner has seen it."""

    __tablename__ = "seed_keywords"

    id: int = given_key()
    keyword: str = Field(max_length=255)
    volume: int = 0
    difficulty: int = 0
    intent: str = Field(default="informational", max_length=20)
    industry_id: int | None = bigint_ref(nullable=True)
    sector_id: int | None = bigint_ref(nullable=True)
    # The library sector's slug: seed-added keywords anchor a topic of that name.
    sector_slug: str | None = Field(default=None, max_length=255)
    country: str | None = Field(default=None, max_length=8)
    is_active: bool = True
    deleted: bool = False
    source_occurred_at: datetime | None = optional_timestamp()


# --- planner's own records ----------------------------------------------------------


class Cluster(PlannerModel, SoftDeleted, SiteScoped, table=True):
    __tablename__ = "clusters"
    __table_args__ = (
        Index(
            "uq_clusters_site_sector_name",
            "site_id",
            "sector_id",
            text("lower(name)"),
            unique=True,
            postgresql_where=LIVE,
        ),
        Index(
            "ix_clusters_account_created",
            "account_id",
            text("created_at DESC"),
            text("id DESC"),
            postgresql_where=LIVE,
        ),
        Index(
            "ix_clusters_name_trgm",
            "name",
            postgresql_using="gin",
            postgresql_ops={"name": "gin_trgm_ops"},
            postgresql_where=LIVE,
        ),
        Index(
            "ix_clusters_sector_topic",
            "sector_id",
            text("lower(topic)"),
            postgresql_where=LIVE,
        ),
        one_of("status", ClusterStatus, name="cluster_status"),
        one_of("intent", Intent, name="cluster_intent"),
    )

    id: int | None = identity_key()
    name: str = Field(max_length=255)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    # The topic this cluster (one page) belongs to; clusters of a topic share it.
    topic: str = Field(default="", sa_column=Column(String(255), nullable=False,
                                                    server_default=""))
    # Derived: the volume-weighted intent of its keywords (ClusterRepository.refresh_stats).
    intent: str = Field(default="informational", sa_column=Column(
        String(20), nullable=False, server_default="informational"))
    keywords_count: int = 0
    volume: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    difficulty: int = 0
    ideas_count: int = 0
    content_count: int = 0
    status: str = Field(default="active", max_length=16)


class Keyword(PlannerModel, SoftDeleted, SiteScoped, table=True):
    __tablename__ = "keywords"
    __table_args__ = (
        Index(
            "uq_keywords_site_sector_text",
            "site_id",
            "sector_id",
            text("lower(keyword)"),
            unique=True,
            postgresql_where=LIVE,
        ),
        # Default order (newest first) and the status filter; `id` makes the order total
        # and lets the page's ids come from an index-only scan.
        Index(
            "ix_keywords_account_created",
            "account_id",
            text("created_at DESC"),
            text("id DESC"),
            postgresql_where=LIVE,
        ),
        Index(
            "ix_keywords_account_status_created",
            "account_id",
            "status",
            text("created_at DESC"),
            text("id DESC"),
            postgresql_where=LIVE,
        ),
        Index(
            "ix_keywords_account_volume",
            "account_id",
            text("volume DESC"),
            text("id DESC"),
            postgresql_where=LIVE,
        ),
        Index(
            "ix_keywords_account_difficulty",
            "account_id",
            "difficulty",
            "id",
            postgresql_where=LIVE,
        ),
        Index(
            "ix_keywords_cluster",
            "cluster_id",
            postgresql_where=text("deleted_at IS NULL AND cluster_id IS NOT NULL"),
        ),
        Index(
            "ix_keywords_seed",
            "account_id",
            "seed_keyword_id",
            postgresql_where=text("deleted_at IS NULL AND seed_keyword_id IS NOT NULL"),
        ),
        Index(
            "ix_keywords_site_sector_created",
            "site_id",
            "sector_id",
            text("created_at DESC"),
            text("id DESC"),
            postgresql_where=LIVE,
        ),
        Index(
            "ix_keywords_keyword_trgm",
            "keyword",
            postgresql_using="gin",
            postgresql_ops={"keyword": "gin_trgm_ops"},
            postgresql_where=LIVE,
        ),
        one_of("status", KeywordStatus, name="keyword_status"),
        one_of("intent", Intent, name="keyword_intent"),
        CheckConstraint("difficulty BETWEEN 0 AND 100", name="keyword_difficulty"),
        CheckConstraint("volume >= 0", name="keyword_volume"),
    )

    id: int | None = identity_key()
    keyword: str = Field(max_length=255)
    volume: int = 0
    difficulty: int = 0
    intent: str = Field(default="informational", max_length=20)
    seed_keyword_id: int | None = bigint_ref(nullable=True)
    cluster_id: int | None = Field(
        default=None, sa_column=Column(BigInteger, ForeignKey("clusters.id", ondelete="SET NULL"))
    )
    status: str = Field(default="active", max_length=16)
    disabled: bool = False


class KeywordCount(PlannerModel, SiteScoped, table=True):
    """Live keywords per (account, site, sector, status), maintained exactly by
    statement-level triggers on `keywords` (see the migration and decision 0011)."""

    __tablename__ = "keyword_counts"
    __table_args__ = (PrimaryKeyConstraint("account_id", "site_id", "sector_id", "status"),)

    status: str = Field(max_length=16)
    n: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))


class KeywordVersion(PlannerModel, table=True):
    """A per-account number every keyword-changing statement increments (same triggers):
    counts of filtered lists are cached against it and stay exact."""

    __tablename__ = "keyword_versions"

    account_id: int = given_key()
    version: int = Field(default=0, sa_column=Column(BigInteger, nullable=False,
                                                     server_default="0"))


class ContentIdea(PlannerModel, SoftDeleted, SiteScoped, table=True):
    __tablename__ = "content_ideas"
    __table_args__ = (
        Index(
            "ix_ideas_account_created",
            "account_id",
            text("created_at DESC"),
            text("id DESC"),
            postgresql_where=LIVE,
        ),
        Index("ix_ideas_cluster", "cluster_id", postgresql_where=LIVE),
        Index(
            "ix_ideas_title_trgm",
            "idea_title",
            postgresql_using="gin",
            postgresql_ops={"idea_title": "gin_trgm_ops"},
            postgresql_where=LIVE,
        ),
        one_of("status", IdeaStatus, name="idea_status"),
        one_of("content_type", ContentType, name="idea_content_type"),
        one_of("content_structure", ContentStructure, name="idea_content_structure"),
    )

    id: int | None = identity_key()
    cluster_id: int | None = Field(
        default=None, sa_column=Column(BigInteger, ForeignKey("clusters.id", ondelete="SET NULL"))
    )
    idea_title: str = Field(max_length=255)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    keywords: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    keyword_ids: list[int] = Field(
        default_factory=list,
        sa_column=Column(JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    )
    content_type: str = Field(default="post", max_length=16)
    content_structure: str = Field(default="article", max_length=20)
    estimated_word_count: int = 1500
    status: str = Field(default="new", max_length=16)
    queued_at: datetime | None = optional_timestamp()


class ClusterContent(PlannerModel, table=True):
    """Writer's contents and the cluster each belongs to (a read model of
    `writer.content.generated` / `.updated`): a cluster's `content_count`."""

    __tablename__ = "cluster_contents"
    __table_args__ = (Index("ix_cluster_contents_cluster", "account_id", "cluster_id"),)

    content_id: int = given_key()
    account_id: int = bigint_ref()
    cluster_id: int = bigint_ref()


# One row per AI job (`libs/common/ai_jobs`).
AI_TASK_LOGS = ai_task_logs_in(PlannerModel.metadata)


TENANT_TABLES = (
    "accounts",
    "sites",
    "sectors",
    "site_access",
    "clusters",
    "keywords",
    "keyword_counts",
    "keyword_versions",
    "content_ideas",
    "cluster_contents",
    "ai_task_logs",
)
