"""Clusters carry their topic (a topic groups clusters; a cluster is one page) and their
intent (the volume-weighted intent of their keywords, kept by the cluster statistics);
the seed library's sector slug is kept so that seed-added keywords can anchor topics
(issue 14, ADR 0020).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

INTENTS = "('informational', 'navigational', 'commercial', 'transactional')"


def upgrade() -> None:
    op.add_column("clusters", sa.Column(
        "topic", sa.String(length=255), server_default="", nullable=False))
    op.add_column("clusters", sa.Column(
        "intent", sa.String(length=20), server_default="informational", nullable=False))
    op.create_check_constraint("cluster_intent", "clusters", f"intent IN {INTENTS}")
    op.create_index(
        "ix_clusters_sector_topic", "clusters", ["sector_id", sa.text("lower(topic)")],
        postgresql_where=sa.text("deleted_at IS NULL"))
    op.add_column("seed_keywords", sa.Column("sector_slug", sa.String(length=255),
                                             nullable=True))
    # Clusters made before: their intent from their keywords, as the statistics do.
    op.execute("""
        UPDATE clusters c SET intent = k.intent
        FROM (SELECT DISTINCT ON (cluster_id) cluster_id, intent
              FROM keywords WHERE cluster_id IS NOT NULL AND deleted_at IS NULL
              GROUP BY cluster_id, intent
              ORDER BY cluster_id, sum(greatest(volume, 1)) DESC,
                       array_position(ARRAY['navigational', 'transactional', 'commercial',
                                            'informational']::text[], intent::text)) k
        WHERE c.id = k.cluster_id
    """)


def downgrade() -> None:
    op.drop_column("seed_keywords", "sector_slug")
    op.drop_index("ix_clusters_sector_topic", table_name="clusters")
    op.drop_constraint("cluster_intent", "clusters", type_="check")
    op.drop_column("clusters", "intent")
    op.drop_column("clusters", "topic")
