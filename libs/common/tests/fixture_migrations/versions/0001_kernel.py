"""Kernel tables plus one tenant table, for the kernel's own tests.

Revision ID: 0001
"""
import sqlalchemy as sa
from alembic import op

from libs.common.migrations import drop_kernel_tables, enable_tenant_rls, kernel_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    kernel_tables(op)
    op.create_table(
        "notes",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("account_id", sa.BigInteger, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    enable_tenant_rls(op, "notes")
    # A constraint checked at COMMIT: the unit-of-work tests make a commit fail with it.
    op.execute("CREATE TABLE note_names (name text,"
               " CONSTRAINT note_names_unique UNIQUE (name) DEFERRABLE INITIALLY DEFERRED)")


def downgrade() -> None:
    op.drop_table("note_names")
    op.drop_table("notes")
    drop_kernel_tables(op)
