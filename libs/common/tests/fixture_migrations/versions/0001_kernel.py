"""Kernel tables plus one tenant table, for the kernel's own tests.

Revision ID: 0001
"""
import sqlalchemy as sa
from alembic import op

from libs.common.migrations import tenant_rls
from libs.common.models import kernel_metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    kernel_metadata.create_all(op.get_bind())
    op.create_table(
        "notes",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("account_id", sa.BigInteger, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    for statement in tenant_rls("notes"):
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("notes")
