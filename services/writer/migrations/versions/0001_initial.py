"""Writer's first schema: the kernel tables, the auth directory and the AI task log
(kernel), the read models of planner's clusters and keywords, author profiles, tasks,
content, images and taxonomies; every tenant table behind row-level security.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from libs.common.migration_columns import (
    LIVE,
    counter,
    flag,
    identity,
    json_list,
    long_text,
    moment,
    newest_first,
    number,
    owned_by,
    ref,
    sector_table,
    stamps,
    varchar,
)
from libs.common.migrations import drop_kernel_tables, enable_tenant_rls, kernel_tables

revision, down_revision, branch_labels, depends_on = "0001", None, None, None

TENANT_TABLES = ("clusters", "cluster_keywords", "author_profiles", "tasks", "content",
                 "images", "taxonomies")
CONTENT_TYPES = "('post', 'page', 'product', 'taxonomy')"
STRUCTURES = ("('article', 'guide', 'listicle', 'how_to', 'comparison', 'review', "
              "'landing_page')")


def upgrade() -> None:
    kernel_tables(op, directory=True, ai_task_log=True)

    op.create_table(
        "clusters", ref("id", key=True), ref("account_id"), ref("site_id"), ref("sector_id"),
        varchar("name", 255), long_text("description"), varchar("topic", 255),
        flag("deleted"), moment("source_occurred_at"))
    op.create_table(
        "cluster_keywords", ref("id", key=True), ref("account_id"),
        ref("cluster_id", nullable=True), varchar("keyword", 255), varchar("intent", 20),
        counter("volume"),
        flag("deleted"), moment("source_occurred_at"))
    op.create_index("ix_cluster_keywords_cluster", "cluster_keywords", ["cluster_id"],
                    postgresql_where=sa.text("NOT deleted"))

    op.create_table(
        "author_profiles", identity(), ref("account_id"), varchar("name", 255),
        long_text("description"), varchar("tone", 255), varchar("language", 16),
        long_text("structure_template"), flag("is_active"), *stamps(deleted=False),
        sa.UniqueConstraint("account_id", "name", name="uq_author_profiles_account_name"))

    sector_table(
        op, "tasks", ref("cluster_id", nullable=True),
        ref("idea_id", nullable=True), varchar("title", 255), long_text("description"),
        long_text("keywords"), varchar("primary_keyword", 255), varchar("content_type", 16),
        varchar("content_structure", 20), number("word_count"), varchar("status", 16),
        sa.Column("prompt_override", sa.Text(), nullable=True),
        owned_by("author_profiles", "author_profile_id"),
        sa.CheckConstraint("status IN ('draft', 'in_progress', 'review', 'completed', "
                           "'archived')", name="task_status"),
        sa.CheckConstraint(f"content_type IN {CONTENT_TYPES}", name="task_content_type"),
        sa.CheckConstraint(f"content_structure IN {STRUCTURES}",
                           name="task_content_structure"))
    op.create_index("uq_tasks_account_idea", "tasks", ["account_id", "idea_id"], unique=True,
                    postgresql_where=sa.text("idea_id IS NOT NULL"))
    op.create_index("ix_tasks_cluster", "tasks", ["cluster_id"], postgresql_where=LIVE)

    sector_table(
        op, "content", owned_by("tasks", "task_id"),
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
        counter("revision", start=1),
                sa.CheckConstraint("status IN ('draft', 'review', 'published')",
                           name="content_status"),
        sa.CheckConstraint("source IN ('igny8', 'wordpress')", name="content_source"),
        sa.CheckConstraint(f"content_type IN {CONTENT_TYPES}", name="content_content_type"),
        sa.CheckConstraint(f"content_structure IN {STRUCTURES}",
                           name="content_content_structure"))
    op.create_index("uq_content_task", "content", ["task_id"], unique=True,
                    postgresql_where=sa.text("task_id IS NOT NULL AND deleted_at IS NULL"))

    sector_table(
        op, "images", owned_by("content", "content_id"),
        owned_by("tasks", "task_id"), varchar("image_type", 16), number("position"),
        long_text("prompt"), long_text("negative_prompt"),
        varchar("alt_text", 300, default=""), varchar("status", 16),
        varchar("storage_key", 255, nullable=True), varchar("sha256", 64, nullable=True),
        varchar("mime_type", 64, nullable=True), number("file_size", nullable=True),
        number("width", nullable=True), number("height", nullable=True),
        varchar("provider", 32), varchar("model", 255),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint("image_type IN ('featured', 'in_article', 'desktop', 'mobile')",
                           name="image_type"),
        sa.CheckConstraint("status IN ('pending', 'generating', 'generated', 'failed')",
                           name="image_status"))
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
    newest_first(op, "taxonomies", live=False)

    enable_tenant_rls(op, *TENANT_TABLES)


def downgrade() -> None:
    for table in reversed(TENANT_TABLES):
        op.drop_table(table)
    drop_kernel_tables(op, directory=True, ai_task_log=True)
