"""Planner's initial schema: keywords, clusters, ideas, AI task logs, the exact keyword
counters and their triggers, the read models of auth's data, the kernel tables; every
tenant table behind row-level security; trigram indexes for `search`.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 20:22:24.458197
"""

import sqlalchemy as sa
import sqlmodel  # noqa: F401 - autogenerate emits sqlmodel types
from alembic import op
from sqlalchemy.dialects import postgresql

from libs.common.migrations import (
    ai_task_log_table,
    directory_tables,
    drop_ai_task_log_table,
    drop_directory_tables,
    drop_kernel_tables,
    enable_tenant_rls,
    kernel_tables,
)

TENANT_TABLES = (
    "clusters",
    "keywords",
    "keyword_counts",
    "keyword_versions",
    "content_ideas",
)

# Live keywords per (account, site, sector, status), kept exact by statement-level
# triggers: one aggregated upsert per statement (a 100,000-row COPY costs one upsert per
# group, not 100,000), rows sorted so concurrent writers lock counters in the same order.
COUNTER_FUNCTION = """
CREATE FUNCTION keyword_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO keyword_counts AS c (account_id, site_id, sector_id, status, n)
    SELECT account_id, site_id, sector_id, status, count(*) FROM new_rows
    WHERE deleted_at IS NULL GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (account_id, site_id, sector_id, status) DO UPDATE SET n = c.n + EXCLUDED.n;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO keyword_counts AS c (account_id, site_id, sector_id, status, n)
    SELECT account_id, site_id, sector_id, status, -count(*) FROM old_rows
    WHERE deleted_at IS NULL GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (account_id, site_id, sector_id, status) DO UPDATE SET n = c.n + EXCLUDED.n;
  ELSE
    INSERT INTO keyword_counts AS c (account_id, site_id, sector_id, status, n)
    SELECT account_id, site_id, sector_id, status, sum(d) FROM (
      SELECT account_id, site_id, sector_id, status, 1 AS d FROM new_rows
      WHERE deleted_at IS NULL
      UNION ALL
      SELECT account_id, site_id, sector_id, status, -1 AS d FROM old_rows
      WHERE deleted_at IS NULL
    ) AS delta GROUP BY 1, 2, 3, 4 HAVING sum(d) <> 0 ORDER BY 1, 2, 3, 4
    ON CONFLICT (account_id, site_id, sector_id, status) DO UPDATE SET n = c.n + EXCLUDED.n;
  END IF;
  -- Every statement that changes an account's keywords moves its version on: a count
  -- computed at version v is still exact while the version reads v (decision 0011).
  IF TG_OP = 'DELETE' THEN
    INSERT INTO keyword_versions AS v (account_id, version)
    SELECT DISTINCT account_id, 1 FROM old_rows ORDER BY 1
    ON CONFLICT (account_id) DO UPDATE SET version = v.version + 1;
  ELSE
    INSERT INTO keyword_versions AS v (account_id, version)
    SELECT DISTINCT account_id, 1 FROM new_rows ORDER BY 1
    ON CONFLICT (account_id) DO UPDATE SET version = v.version + 1;
  END IF;
  RETURN NULL;
END $$
"""

# Keyword lists read through this view. Row-level security keeps a user's non-leakproof
# conditions (ILIKE among them) out of index scans, so `search` could never use the
# trigram index through the policy. The view applies the same tenant predicate itself
# (its owner, the migration role, is not subject to the policy); the scalar subqueries
# make it one evaluation per query instead of two function calls per row. See decision 0011.
VISIBLE_VIEW = """
CREATE VIEW keywords_visible AS
SELECT * FROM keywords
WHERE (SELECT current_setting('igny8.all_accounts', true) = 'on')
   OR account_id = (SELECT NULLIF(current_setting('igny8.account_id', true), '')::bigint)
"""

COUNTER_TRIGGERS = (
    "CREATE TRIGGER keyword_counts_insert AFTER INSERT ON keywords "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION keyword_counts_apply()",
    "CREATE TRIGGER keyword_counts_update AFTER UPDATE ON keywords "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION keyword_counts_apply()",
    "CREATE TRIGGER keyword_counts_delete AFTER DELETE ON keywords "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION keyword_counts_apply()",
)

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_table(
        "clusters",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("site_id", sa.BigInteger(), nullable=False),
        sa.Column("sector_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("keywords_count", sa.Integer(), nullable=False),
        sa.Column("volume", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("difficulty", sa.Integer(), nullable=False),
        sa.Column("ideas_count", sa.Integer(), nullable=False),
        sa.Column("content_count", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('active', 'mapped', 'archived')", name="cluster_status"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_clusters_account_created",
        "clusters",
        ["account_id", sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        "ix_clusters_name_trgm",
        "clusters",
        ["name"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"name": "gin_trgm_ops"},
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        "uq_clusters_site_sector_name",
        "clusters",
        ["site_id", "sector_id", sa.literal_column("lower(name)")],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_table(
        "keyword_counts",
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("site_id", sa.BigInteger(), nullable=False),
        sa.Column("sector_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("n", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("account_id", "site_id", "sector_id", "status"),
    )
    op.create_table(
        "keyword_versions",
        sa.Column("account_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("account_id"),
    )
    op.create_table(
        "seed_keywords",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("keyword", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("volume", sa.Integer(), nullable=False),
        sa.Column("difficulty", sa.Integer(), nullable=False),
        sa.Column("intent", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("industry_id", sa.BigInteger(), nullable=True),
        sa.Column("sector_id", sa.BigInteger(), nullable=True),
        sa.Column("country", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("source_occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "content_ideas",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("site_id", sa.BigInteger(), nullable=False),
        sa.Column("sector_id", sa.BigInteger(), nullable=False),
        sa.Column("cluster_id", sa.BigInteger(), nullable=True),
        sa.Column("idea_title", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("keywords", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "keyword_ids",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("content_type", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("content_structure", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("estimated_word_count", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "content_structure IN ('article', 'guide', 'listicle', 'how_to', 'comparison', 'review', 'landing_page')",
            name="idea_content_structure",
        ),
        sa.CheckConstraint(
            "content_type IN ('post', 'page', 'product', 'taxonomy')", name="idea_content_type"
        ),
        sa.CheckConstraint("status IN ('new', 'queued', 'completed')", name="idea_status"),
        sa.ForeignKeyConstraint(["cluster_id"], ["clusters.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_ideas_account_created",
        "content_ideas",
        ["account_id", sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        "ix_ideas_cluster",
        "content_ideas",
        ["cluster_id"],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        "ix_ideas_title_trgm",
        "content_ideas",
        ["idea_title"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"idea_title": "gin_trgm_ops"},
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_table(
        "keywords",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("site_id", sa.BigInteger(), nullable=False),
        sa.Column("sector_id", sa.BigInteger(), nullable=False),
        sa.Column("keyword", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("volume", sa.Integer(), nullable=False),
        sa.Column("difficulty", sa.Integer(), nullable=False),
        sa.Column("intent", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("seed_keyword_id", sa.BigInteger(), nullable=True),
        sa.Column("cluster_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "intent IN ('informational', 'navigational', 'commercial', 'transactional')",
            name="keyword_intent",
        ),
        sa.CheckConstraint("status IN ('active', 'mapped', 'archived')", name="keyword_status"),
        sa.CheckConstraint("difficulty BETWEEN 0 AND 100", name="keyword_difficulty"),
        sa.CheckConstraint("volume >= 0", name="keyword_volume"),
        sa.ForeignKeyConstraint(["cluster_id"], ["clusters.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_keywords_account_created",
        "keywords",
        ["account_id", sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        "ix_keywords_account_difficulty",
        "keywords",
        ["account_id", "difficulty", "id"],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        "ix_keywords_account_status_created",
        "keywords",
        [
            "account_id",
            "status",
            sa.literal_column("created_at DESC"),
            sa.literal_column("id DESC"),
        ],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        "ix_keywords_account_volume",
        "keywords",
        ["account_id", sa.literal_column("volume DESC"), sa.literal_column("id DESC")],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        "ix_keywords_cluster",
        "keywords",
        ["cluster_id"],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL AND cluster_id IS NOT NULL"),
    )
    op.create_index(
        "ix_keywords_keyword_trgm",
        "keywords",
        ["keyword"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"keyword": "gin_trgm_ops"},
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        "ix_keywords_seed",
        "keywords",
        ["account_id", "seed_keyword_id"],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL AND seed_keyword_id IS NOT NULL"),
    )
    op.create_index(
        "ix_keywords_site_sector_created",
        "keywords",
        [
            "site_id",
            "sector_id",
            sa.literal_column("created_at DESC"),
            sa.literal_column("id DESC"),
        ],
        unique=False,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        "uq_keywords_site_sector_text",
        "keywords",
        ["site_id", "sector_id", sa.literal_column("lower(keyword)")],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    kernel_tables(op)
    directory_tables(op)
    ai_task_log_table(op)
    op.execute(COUNTER_FUNCTION)
    op.execute(VISIBLE_VIEW)
    for statement in COUNTER_TRIGGERS:
        op.execute(statement)
    # The list endpoints read page ids from index-only scans: vacuum keywords often enough
    # that the visibility map stays current under steady writes.
    op.execute(
        "ALTER TABLE keywords SET (autovacuum_vacuum_scale_factor = 0.02, "
        "autovacuum_vacuum_insert_scale_factor = 0.02, "
        "autovacuum_analyze_scale_factor = 0.02)"
    )
    enable_tenant_rls(op, *TENANT_TABLES)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS keywords_visible")
    for name in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS keyword_counts_{name} ON keywords")
    op.execute("DROP FUNCTION IF EXISTS keyword_counts_apply()")
    drop_kernel_tables(op)
    drop_ai_task_log_table(op)
    drop_directory_tables(op)
    op.drop_index(
        "uq_keywords_site_sector_text",
        table_name="keywords",
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.drop_index(
        "ix_keywords_site_sector_created",
        table_name="keywords",
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.drop_index(
        "ix_keywords_seed",
        table_name="keywords",
        postgresql_where=sa.text("deleted_at IS NULL AND seed_keyword_id IS NOT NULL"),
    )
    op.drop_index(
        "ix_keywords_keyword_trgm",
        table_name="keywords",
        postgresql_using="gin",
        postgresql_ops={"keyword": "gin_trgm_ops"},
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.drop_index(
        "ix_keywords_cluster",
        table_name="keywords",
        postgresql_where=sa.text("deleted_at IS NULL AND cluster_id IS NOT NULL"),
    )
    op.drop_index(
        "ix_keywords_account_volume",
        table_name="keywords",
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.drop_index(
        "ix_keywords_account_status_created",
        table_name="keywords",
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.drop_index(
        "ix_keywords_account_difficulty",
        table_name="keywords",
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.drop_index(
        "ix_keywords_account_created",
        table_name="keywords",
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.drop_table("keywords")
    op.drop_index(
        "ix_ideas_title_trgm",
        table_name="content_ideas",
        postgresql_using="gin",
        postgresql_ops={"idea_title": "gin_trgm_ops"},
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.drop_index(
        "ix_ideas_cluster",
        table_name="content_ideas",
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.drop_index(
        "ix_ideas_account_created",
        table_name="content_ideas",
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.drop_table("content_ideas")
    op.drop_table("seed_keywords")
    op.drop_table("keyword_counts")
    op.drop_table("keyword_versions")
    op.drop_index(
        "uq_clusters_site_sector_name",
        table_name="clusters",
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.drop_index(
        "ix_clusters_name_trgm",
        table_name="clusters",
        postgresql_using="gin",
        postgresql_ops={"name": "gin_trgm_ops"},
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.drop_index(
        "ix_clusters_account_created",
        table_name="clusters",
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.drop_table("clusters")
