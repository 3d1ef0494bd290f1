"""Planner's initial schema: keywords, clusters, ideas, AI task logs, the exact keyword
counters and their triggers, the read models of auth's data, the kernel tables; every
tenant table behind row-level security; trigram indexes for `search`.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 20:22:24.458197
"""

import sqlalchemy as sa
from alembic import op

from libs.common.migration_columns import (
    LIVE,
    counter,
    flag,
    json_list,
    long_text,
    moment,
    number,
    owned_by,
    ref,
    sector_table,
    trigram,
    varchar,
)
from libs.common.migrations import drop_kernel_tables, enable_tenant_rls, kernel_tables

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


INTENTS = "('informational', 'navigational', 'commercial', 'transactional')"
CONTENT_TYPES = "('post', 'page', 'product', 'taxonomy')"
STRUCTURES = ("('article', 'guide', 'listicle', 'how_to', 'comparison', 'review', "
              "'landing_page')")

# The keyword list's orderings and lookups, over live rows (decision 0011).
KEYWORD_INDEXES = (
    ("ix_keywords_account_difficulty", ("account_id", "difficulty", "id"), "deleted_at IS NULL"),
    ("ix_keywords_account_status_created",
     ("account_id", "status", "created_at DESC", "id DESC"), "deleted_at IS NULL"),
    ("ix_keywords_account_volume", ("account_id", "volume DESC", "id DESC"),
     "deleted_at IS NULL"),
    ("ix_keywords_cluster", ("cluster_id",), "deleted_at IS NULL AND cluster_id IS NOT NULL"),
    ("ix_keywords_seed", ("account_id", "seed_keyword_id"),
     "deleted_at IS NULL AND seed_keyword_id IS NOT NULL"),
    ("ix_keywords_site_sector_created", ("site_id", "sector_id", "created_at DESC", "id DESC"),
     "deleted_at IS NULL"),
)


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    sector_table(
        op, "clusters", varchar("name", 255), long_text("description"),
        number("keywords_count"), counter("volume"), number("difficulty"),
        number("ideas_count"), number("content_count"), varchar("status", 16),
        sa.CheckConstraint("status IN ('active', 'mapped', 'archived')", name="cluster_status"))
    trigram(op, "clusters", "name")
    op.create_index("uq_clusters_site_sector_name", "clusters",
                    ["site_id", "sector_id", sa.text("lower(name)")], unique=True,
                    postgresql_where=LIVE)

    op.create_table(
        "keyword_counts", ref("account_id"), ref("site_id"), ref("sector_id"),
        varchar("status", 16), counter("n"),
        sa.PrimaryKeyConstraint("account_id", "site_id", "sector_id", "status"))
    op.create_table("keyword_versions", ref("account_id", key=True), counter("version"))
    op.create_table(
        "seed_keywords", ref("id", key=True), varchar("keyword", 255), number("volume"),
        number("difficulty"), varchar("intent", 20), ref("industry_id", nullable=True),
        ref("sector_id", nullable=True), varchar("country", 8, nullable=True),
        flag("is_active"), flag("deleted"), moment("source_occurred_at"))

    sector_table(
        op, "content_ideas", owned_by("clusters", "cluster_id"), varchar("idea_title", 255),
        long_text("description"), long_text("keywords"), json_list("keyword_ids"),
        varchar("content_type", 16), varchar("content_structure", 20),
        number("estimated_word_count"), varchar("status", 16), moment("queued_at"),
        sa.CheckConstraint(f"content_structure IN {STRUCTURES}", name="idea_content_structure"),
        sa.CheckConstraint(f"content_type IN {CONTENT_TYPES}", name="idea_content_type"),
        sa.CheckConstraint("status IN ('new', 'queued', 'completed')", name="idea_status"),
        index="ix_ideas_account_created")
    op.create_index("ix_ideas_cluster", "content_ideas", ["cluster_id"], postgresql_where=LIVE)
    trigram(op, "content_ideas", "idea_title", name="ix_ideas_title_trgm")

    sector_table(
        op, "keywords", varchar("keyword", 255), number("volume"),
        number("difficulty"), varchar("intent", 20), ref("seed_keyword_id", nullable=True),
        owned_by("clusters", "cluster_id"), varchar("status", 16), flag("disabled"),
        sa.CheckConstraint(f"intent IN {INTENTS}", name="keyword_intent"),
        sa.CheckConstraint("status IN ('active', 'mapped', 'archived')", name="keyword_status"),
        sa.CheckConstraint("difficulty BETWEEN 0 AND 100", name="keyword_difficulty"),
        sa.CheckConstraint("volume >= 0", name="keyword_volume"))
    for name, columns, where in KEYWORD_INDEXES:
        op.create_index(name, "keywords", [sa.text(c) for c in columns],
                        postgresql_where=sa.text(where))
    trigram(op, "keywords", "keyword")
    op.create_index("uq_keywords_site_sector_text", "keywords",
                    ["site_id", "sector_id", sa.text("lower(keyword)")], unique=True,
                    postgresql_where=LIVE)
    kernel_tables(op, directory=True, ai_task_log=True)
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
    drop_kernel_tables(op, directory=True, ai_task_log=True)
    for table in ("keywords", "content_ideas", "seed_keywords", "keyword_counts",
                  "keyword_versions", "clusters"):
        op.drop_table(table)
