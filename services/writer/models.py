"""Writer's tables, on writer's own SQLModel registry (Alembic sees only these).

Every writer row carries `account_id` and sits behind row-level security (see the
migrations). Tasks, content and images are soft-deleted (`deleted_at`); the indexes that
serve the API are partial on live rows. Sections:

- read models of other services' data: auth's directory (kernel), planner's clusters and
  their keywords (a brief's secondary and question keywords);
- writer's own records: author profiles, tasks, content, images, taxonomies;
- the AI task log (kernel);
- publishing's tables live in `services/writer/publishing/` models of their own, on the
  same `WriterModel` registry, with their own migration.

Build instances with `Model.model_validate(...)` when input must be validated.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Column, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from libs.common.ai_jobs import ai_task_logs_in
from libs.common.columns import (
    SiteScoped,
    SoftDeleted,
    Timestamped,
    bigint_ref,
    given_key,
    identity_key,
    json_list,
    long_text,
    one_of,
    optional_timestamp,
)
from libs.common.content_kinds import ContentStructure, ContentType
from libs.common.directory import Directory

LIVE = text("deleted_at IS NULL")

# One enum per status or choice: the tables' CHECKs, the schemas (OpenAPI enums) and the
# list filters read the same values. Content types and structures are the platform's
# (`libs/common/content_kinds.py`, shared with planner's ideas).


class TaskStatus(StrEnum):
    DRAFT = "draft"  # written by hand or from a queued idea
    IN_PROGRESS = "in_progress"  # someone works on it
    REVIEW = "review"  # its content is drafted, waiting for a person
    COMPLETED = "completed"
    ARCHIVED = "archived"


class ContentStatus(StrEnum):
    DRAFT = "draft"
    REVIEW = "review"
    PUBLISHED = "published"  # on the site (the publisher sets it)


class ContentSource(StrEnum):
    IGNY8 = "igny8"  # written here
    WORDPRESS = "wordpress"  # imported from the site


class ImageType(StrEnum):
    """One size per type (`services/writer/imaging.py`)."""

    FEATURED, IN_ARTICLE = "featured", "in_article"
    DESKTOP, MOBILE = "desktop", "mobile"


class ImageStatus(StrEnum):
    PENDING = "pending"  # a prompt, no file yet
    GENERATING = "generating"  # a job is making its file
    GENERATED = "generated"  # stored; served at `{id}/download/`
    FAILED = "failed"  # the provider failed or refused it (`error` says which)


class TaxonomyType(StrEnum):
    CATEGORY = "category"
    TAG = "tag"


class WriterModel(SQLModel, registry=registry()):
    """Base of writer's tables (`table=True`). Each change gets a migration under
    `migrations/versions/`; tests/test_migrations.py fails until the two agree."""


def _created_index(table: str) -> Index:
    """Newest first, the default order of every list; `id` makes the order total."""
    return Index(f"ix_{table}_account_created", "account_id", text("created_at DESC"),
                 text("id DESC"), postgresql_where=LIVE)


# --- read models of other services' data ----------------------------------------------

# Sites, sectors, site access, accounts and plans: the kernel's directory, in writer's
# metadata (`libs/common/directory`).
DIRECTORY = Directory(WriterModel.metadata)


class ClusterRef(WriterModel, SiteScoped, table=True):
    """A planner cluster as planner's events last described it."""

    __tablename__ = "clusters"

    id: int = given_key()
    name: str = Field(default="", max_length=255)
    description: str = long_text()
    topic: str = Field(default="", max_length=255)
    deleted: bool = False
    source_occurred_at: datetime | None = optional_timestamp()


class KeywordRef(WriterModel, table=True):
    """A planner keyword as planner's events last described it (its cluster, text,
    intent and volume): a cluster's keywords feed an article's secondary and question
    keywords."""

    __tablename__ = "cluster_keywords"
    __table_args__ = (Index("ix_cluster_keywords_cluster", "cluster_id",
                            postgresql_where=text("NOT deleted")),)

    id: int = given_key()
    account_id: int = bigint_ref()
    cluster_id: int | None = bigint_ref(nullable=True)
    keyword: str = Field(max_length=255)
    intent: str = Field(default="informational", max_length=20)
    volume: int = Field(default=0, sa_column=Column(BigInteger, nullable=False,
                                                    server_default="0"))
    deleted: bool = False
    source_occurred_at: datetime | None = optional_timestamp()


# --- writer's own records --------------------------------------------------------------


class AuthorProfile(WriterModel, Timestamped, table=True):
    """The voice an account writes in; how many an account keeps is limited by its plan
    (`max_author_profiles`)."""

    __tablename__ = "author_profiles"
    __table_args__ = (UniqueConstraint("account_id", "name",
                                       name="uq_author_profiles_account_name"),)

    id: int | None = identity_key()
    account_id: int = bigint_ref()
    name: str = Field(max_length=255)
    description: str = long_text()
    tone: str = Field(default="", max_length=255)
    language: str = Field(default="en", max_length=16)
    structure_template: str = long_text()
    is_active: bool = True


class Task(WriterModel, SoftDeleted, SiteScoped, table=True):
    """An article to write: from a queued planner idea (exactly one task per idea,
    whatever the redelivery) or made by hand."""

    __tablename__ = "tasks"
    __table_args__ = (
        # Not partial on `deleted_at`: a deleted task's idea, replayed, makes nothing.
        Index("uq_tasks_account_idea", "account_id", "idea_id", unique=True,
              postgresql_where=text("idea_id IS NOT NULL")),
        _created_index("tasks"),
        Index("ix_tasks_cluster", "cluster_id", postgresql_where=LIVE),
        one_of("status", TaskStatus, name="task_status"),
        one_of("content_type", ContentType, name="task_content_type"),
        one_of("content_structure", ContentStructure, name="task_content_structure"),
    )

    id: int | None = identity_key()
    cluster_id: int | None = bigint_ref(nullable=True)
    idea_id: int | None = bigint_ref(nullable=True)
    title: str = Field(max_length=255)
    # The outline, as planner writes it ("H2: ..." lines) or as people type it.
    description: str = long_text()
    keywords: str = long_text()
    primary_keyword: str = Field(default="", max_length=255)
    content_type: str = Field(default=ContentType.POST, max_length=16)
    content_structure: str = Field(default=ContentStructure.ARTICLE, max_length=20)
    word_count: int = 1500
    status: str = Field(default=TaskStatus.DRAFT, max_length=16)
    prompt_override: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    author_profile_id: int | None = Field(default=None, sa_column=Column(
        BigInteger, ForeignKey("author_profiles.id", ondelete="SET NULL"), nullable=True))


class Content(WriterModel, SoftDeleted, SiteScoped, table=True):
    """An article: a task's draft, an edit of it, or a post imported from WordPress.
    `revision` goes up on every change (the publisher's marker carries it)."""

    __tablename__ = "content"
    __table_args__ = (
        # One live content per task: generating again rewrites it (a new revision).
        Index("uq_content_task", "task_id", unique=True,
              postgresql_where=text("task_id IS NOT NULL AND deleted_at IS NULL")),
        _created_index("content"),
        one_of("status", ContentStatus, name="content_status"),
        one_of("source", ContentSource, name="content_source"),
        one_of("content_type", ContentType, name="content_content_type"),
        one_of("content_structure", ContentStructure, name="content_content_structure"),
    )

    id: int | None = identity_key()
    task_id: int | None = Field(default=None, sa_column=Column(
        BigInteger, ForeignKey("tasks.id", ondelete="SET NULL"), nullable=True))
    cluster_id: int | None = bigint_ref(nullable=True)
    title: str = Field(max_length=255)
    html: str = long_text()
    word_count: int = 0
    meta_title: str = Field(default="", max_length=255)
    meta_description: str = Field(default="", max_length=500)
    slug: str = Field(default="", max_length=255)
    primary_keyword: str = Field(default="", max_length=255)
    secondary_keywords: list[str] = json_list()
    tags: list[str] = json_list()
    categories: list[str] = json_list()
    content_type: str = Field(default=ContentType.POST, max_length=16)
    content_structure: str = Field(default=ContentStructure.ARTICLE, max_length=20)
    status: str = Field(default=ContentStatus.DRAFT, max_length=16)
    source: str = Field(default=ContentSource.IGNY8, max_length=16)
    # Which engine wrote it (`local-draft-brief-1`, the account's model...).
    model: str = Field(default="", max_length=255)
    external_id: str | None = Field(default=None, max_length=255)
    external_url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    external_status: str | None = Field(default=None, max_length=32)
    optimizer_score: int | None = None
    optimizer_analysis: dict[str, Any] | None = Field(default=None, sa_column=Column(
        JSONB, nullable=True))
    revision: int = Field(default=1, sa_column=Column(
        BigInteger, nullable=False, server_default="1"))


class Image(WriterModel, SoftDeleted, SiteScoped, table=True):
    """An image of a content (or a task): its prompt, then its stored file
    (`storage_key`, through `libs/common/storage.py`). `position` is 0 for the featured
    image, else the 1-based number of the H2 it follows."""

    __tablename__ = "images"
    __table_args__ = (
        _created_index("images"),
        Index("ix_images_content", "content_id", "image_type", "position",
              postgresql_where=LIVE),
        one_of("image_type", ImageType, name="image_type"),
        one_of("status", ImageStatus, name="image_status"),
    )

    id: int | None = identity_key()
    content_id: int | None = Field(default=None, sa_column=Column(
        BigInteger, ForeignKey("content.id", ondelete="SET NULL"), nullable=True))
    task_id: int | None = Field(default=None, sa_column=Column(
        BigInteger, ForeignKey("tasks.id", ondelete="SET NULL"), nullable=True))
    image_type: str = Field(default=ImageType.FEATURED, max_length=16)
    position: int = 0
    prompt: str = long_text()
    negative_prompt: str = long_text()
    alt_text: str = Field(default="", sa_column=Column(String(300), nullable=False,
                                                       server_default=""))
    status: str = Field(default=ImageStatus.PENDING, max_length=16)
    storage_key: str | None = Field(default=None, max_length=255)
    sha256: str | None = Field(default=None, max_length=64)
    mime_type: str | None = Field(default=None, max_length=64)
    file_size: int | None = None
    width: int | None = None
    height: int | None = None
    provider: str = Field(default="", max_length=32)
    model: str = Field(default="", max_length=255)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class Taxonomy(WriterModel, Timestamped, table=True):
    """A site's category or tag (unique per site, type and slug), with the id the site
    gave it once synced."""

    __tablename__ = "taxonomies"
    __table_args__ = (
        UniqueConstraint("site_id", "taxonomy_type", "slug", name="uq_taxonomies_site_type_slug"),
        Index("ix_taxonomies_account_created", "account_id", text("created_at DESC"),
              text("id DESC")),
        one_of("taxonomy_type", TaxonomyType, name="taxonomy_type"),
    )

    id: int | None = identity_key()
    account_id: int = bigint_ref()
    site_id: int = bigint_ref()
    name: str = Field(max_length=255)
    slug: str = Field(max_length=255)
    taxonomy_type: str = Field(default=TaxonomyType.CATEGORY, max_length=16)
    description: str = long_text()
    external_id: str | None = Field(default=None, max_length=64)
    external_taxonomy: str | None = Field(default=None, max_length=64)


# One row per AI job (`libs/common/ai_jobs`).
AI_TASK_LOGS = ai_task_logs_in(WriterModel.metadata)

# Tables behind row-level security on `account_id` (the directory's are the kernel's).
TENANT_TABLES = ("clusters", "cluster_keywords", "author_profiles", "tasks", "content",
                 "images", "taxonomies")

# Publishing's tables (site integrations, sync events, publications...) on this registry.
from services.writer.publishing import models as _publishing_models  # noqa: E402, F401
