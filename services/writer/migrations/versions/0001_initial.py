"""Writer's first schema: the kernel tables, the auth directory and the AI task log
(kernel), the read models of planner's clusters and keywords, author profiles, tasks,
content, images and taxonomies; every tenant table behind row-level security.

Revision ID: 0001
Revises:
"""

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from libs.common.migrations import (
    ai_task_log_table,
    directory_tables,
    drop_ai_task_log_table,
    drop_directory_tables,
    drop_kernel_tables,
    enable_tenant_rls,
    kernel_tables,
)

revision, down_revision, branch_labels, depends_on = "0001", None, None, None

TENANT_TABLES = ("clusters", "cluster_keywords", "author_profiles", "tasks", "content",
                 "images", "taxonomies")
LIVE = sa.text("deleted_at IS NULL")
CONTENT_TYPES = "('post', 'page', 'product', 'taxonomy')"
STRUCTURES = ("('article', 'guide', 'listicle', 'how_to', 'comparison', 'review', "
              "'landing_page')")


# Column shapes this schema repeats, written once.

def identity() -> sa.Column[Any]:
    return sa.Column("id", sa.BigInteger(), sa.Identity(always=False), primary_key=True)


def ref(name: str, *, nullable: bool = False, key: bool = False) -> sa.Column[Any]:
    """A bigint id (no foreign key): an account, a site, another service's row."""
    return sa.Column(name, sa.BigInteger(), nullable=nullable, primary_key=key,
                     autoincrement=False if key else "auto")


def owned_by(table: str, name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.BigInteger(), sa.ForeignKey(f"{table}.id", ondelete="SET NULL"),
                     nullable=True)


def varchar(name: str, length: int, *, default: str | None = None,
            nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.String(length), nullable=nullable,
                     server_default=default)


def long_text(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.Text(), nullable=False, server_default="")


def number(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.Integer(), nullable=nullable)


def flag(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.Boolean(), nullable=False)


def json_list(name: str) -> sa.Column[Any]:
    return sa.Column(name, JSONB(astext_type=sa.Text()), nullable=False,
                     server_default=sa.text("'[]'::jsonb"))


def moment(name: str, *, now: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=not now,
                     server_default=sa.func.now() if now else None)


def tenant_columns() -> list[sa.Column[Any]]:
    return [identity(), ref("account_id"), ref("site_id"), ref("sector_id")]


def stamps(*, deleted: bool = True) -> list[sa.Column[Any]]:
    columns = [moment("created_at", now=True), moment("updated_at", now=True)]
    return [*columns, moment("deleted_at")] if deleted else columns


def newest_first(table: str, *, live: bool = True) -> None:
    op.create_index(f"ix_{table}_account_created", table,
                    ["account_id", sa.text("created_at DESC"), sa.text("id DESC")],
                    postgresql_where=LIVE if live else None)


def upgrade() -> None:
    kernel_tables(op)
    directory_tables(op)
    ai_task_log_table(op)

    op.create_table(
        "clusters", ref("id", key=True), ref("account_id"), ref("site_id"), ref("sector_id"),
        varchar("name", 255), long_text("description"), varchar("topic", 255),
        flag("deleted"), moment("source_occurred_at"))
    op.create_table(
        "cluster_keywords", ref("id", key=True), ref("account_id"),
        ref("cluster_id", nullable=True), varchar("keyword", 255), varchar("intent", 20),
        sa.Column("volume", sa.BigInteger(), nullable=False, server_default="0"),
        flag("deleted"), moment("source_occurred_at"))
    op.create_index("ix_cluster_keywords_cluster", "cluster_keywords", ["cluster_id"],
                    postgresql_where=sa.text("NOT deleted"))

    op.create_table(
        "author_profiles", identity(), ref("account_id"), varchar("name", 255),
        long_text("description"), varchar("tone", 255), varchar("language", 16),
        long_text("structure_template"), flag("is_active"), *stamps(deleted=False),
        sa.UniqueConstraint("account_id", "name", name="uq_author_profiles_account_name"))

    op.create_table(
        "tasks", *tenant_columns(), ref("cluster_id", nullable=True),
        ref("idea_id", nullable=True), varchar("title", 255), long_text("description"),
        long_text("keywords"), varchar("primary_keyword", 255), varchar("content_type", 16),
        varchar("content_structure", 20), number("word_count"), varchar("status", 16),
        sa.Column("prompt_override", sa.Text(), nullable=True),
        owned_by("author_profiles", "author_profile_id"), *stamps(),
        sa.CheckConstraint("status IN ('draft', 'in_progress', 'review', 'completed', "
                           "'archived')", name="task_status"),
        sa.CheckConstraint(f"content_type IN {CONTENT_TYPES}", name="task_content_type"),
        sa.CheckConstraint(f"content_structure IN {STRUCTURES}",
                           name="task_content_structure"))
    op.create_index("uq_tasks_account_idea", "tasks", ["account_id", "idea_id"], unique=True,
                    postgresql_where=sa.text("idea_id IS NOT NULL"))
    newest_first("tasks")
    op.create_index("ix_tasks_cluster", "tasks", ["cluster_id"], postgresql_where=LIVE)

    op.create_table(
        "content", *tenant_columns(), owned_by("tasks", "task_id"),
        ref("cluster_id", nullable=True), varchar("title", 255), long_text("html"),
        number("word_count"), varchar("meta_title", 255), varchar("meta_description", 500),
        varchar("slug", 255), varchar("primary_keyword", 255),
        json_list("secondary_keywords"), json_list("tags"), json_list("categories"),
        varchar("content_type", 16), varchar("content_structure", 20), varchar("status", 16),
        varchar("source", 16), varchar("model", 255),
        varchar("external_id", 255, nullable=True),
        sa.Column("external_url", sa.Text(), nullable=True),
        varchar("external_status", 32, nullable=True),
        number("optimizer_score", nullable=True),
        sa.Column("optimizer_analysis", JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("revision", sa.BigInteger(), nullable=False, server_default="1"),
        *stamps(),
        sa.CheckConstraint("status IN ('draft', 'review', 'published')",
                           name="content_status"),
        sa.CheckConstraint("source IN ('igny8', 'wordpress')", name="content_source"),
        sa.CheckConstraint(f"content_type IN {CONTENT_TYPES}", name="content_content_type"),
        sa.CheckConstraint(f"content_structure IN {STRUCTURES}",
                           name="content_content_structure"))
    op.create_index("uq_content_task", "content", ["task_id"], unique=True,
                    postgresql_where=sa.text("task_id IS NOT NULL AND deleted_at IS NULL"))
    newest_first("content")

    op.create_table(
        "images", *tenant_columns(), owned_by("content", "content_id"),
        owned_by("tasks", "task_id"), varchar("image_type", 16), number("position"),
        long_text("prompt"), long_text("negative_prompt"),
        varchar("alt_text", 300, default=""), varchar("status", 16),
        varchar("storage_key", 255, nullable=True), varchar("sha256", 64, nullable=True),
        varchar("mime_type", 64, nullable=True), number("file_size", nullable=True),
        number("width", nullable=True), number("height", nullable=True),
        varchar("provider", 32), varchar("model", 255),
        sa.Column("error", sa.Text(), nullable=True), *stamps(),
        sa.CheckConstraint("image_type IN ('featured', 'in_article', 'desktop', 'mobile')",
                           name="image_type"),
        sa.CheckConstraint("status IN ('pending', 'generating', 'generated', 'failed')",
                           name="image_status"))
    newest_first("images")
    op.create_index("ix_images_content", "images", ["content_id", "image_type", "position"],
                    postgresql_where=LIVE)

    op.create_table(
        "taxonomies", identity(), ref("account_id"), ref("site_id"), varchar("name", 255),
        varchar("slug", 255), varchar("taxonomy_type", 16), long_text("description"),
        varchar("external_id", 64, nullable=True),
        varchar("external_taxonomy", 64, nullable=True), *stamps(deleted=False),
        sa.UniqueConstraint("site_id", "taxonomy_type", "slug",
                            name="uq_taxonomies_site_type_slug"),
        sa.CheckConstraint("taxonomy_type IN ('category', 'tag')", name="taxonomy_type"))
    newest_first("taxonomies", live=False)

    enable_tenant_rls(op, *TENANT_TABLES)


def downgrade() -> None:
    for table in reversed(TENANT_TABLES):
        op.drop_table(table)
    drop_ai_task_log_table(op)
    drop_directory_tables(op)
    drop_kernel_tables(op)
