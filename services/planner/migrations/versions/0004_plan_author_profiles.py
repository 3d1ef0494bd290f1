"""The directory's plans carry `max_author_profiles` (the writer enforces it; every
service keeps the same directory, libs/common/directory).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("plans", sa.Column("max_author_profiles", sa.Integer(), server_default="0",
                                     nullable=False))


def downgrade() -> None:
    op.drop_column("plans", "max_author_profiles")
