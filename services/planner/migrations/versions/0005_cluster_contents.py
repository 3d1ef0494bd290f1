"""Writer's contents per cluster (from writer's events): clusters' `content_count`, which
stayed 0 whatever writer wrote.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from libs.common.migrations import enable_tenant_rls

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cluster_contents",
        sa.Column("content_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("cluster_id", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_cluster_contents_cluster", "cluster_contents",
                    ["account_id", "cluster_id"])
    enable_tenant_rls(op, "cluster_contents")


def downgrade() -> None:
    op.drop_table("cluster_contents")
