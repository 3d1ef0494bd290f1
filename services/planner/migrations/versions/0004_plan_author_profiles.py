"""The directory's plans carry `max_author_profiles` (the writer enforces it; every
service keeps the same directory, libs/common/directory).

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # 0001 creates the kernel's current directory, which has the column already.
    op.execute("ALTER TABLE plans"
               " ADD COLUMN IF NOT EXISTS max_author_profiles integer DEFAULT 0 NOT NULL")


def downgrade() -> None:
    op.drop_column("plans", "max_author_profiles")
