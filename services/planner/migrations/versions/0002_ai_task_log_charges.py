"""AI task logs record every hold of a job (`holds`: item → hold id) and what each item
was charged (`charges`), so a job can capture per item and a redelivered one can settle
from its log alone (libs/common/ai_jobs).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ai_task_logs", sa.Column(
        "holds", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
        nullable=False))
    op.add_column("ai_task_logs", sa.Column(
        "charges", postgresql.JSONB(astext_type=sa.Text()),
        server_default=sa.text("'[]'::jsonb"), nullable=False))
    # Jobs recorded before: their one hold, under the job's own item.
    op.execute("UPDATE ai_task_logs SET holds = jsonb_build_object('', hold_id)"
               " WHERE hold_id IS NOT NULL")


def downgrade() -> None:
    op.drop_column("ai_task_logs", "charges")
    op.drop_column("ai_task_logs", "holds")
