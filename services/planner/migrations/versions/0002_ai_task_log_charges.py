"""AI task logs record every hold of a job (`holds`: item → hold id) and what each item
was charged (`charges`), so a job can capture per item and a redelivered one can settle
from its log alone (libs/common/ai_jobs).

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Since 0001 creates the kernel's current AI task log, a new database has both columns
    # already; a database made before that gets them here.
    op.execute("ALTER TABLE ai_task_logs"
               " ADD COLUMN IF NOT EXISTS holds jsonb DEFAULT '{}'::jsonb NOT NULL,"
               " ADD COLUMN IF NOT EXISTS charges jsonb DEFAULT '[]'::jsonb NOT NULL")
    # Jobs recorded before: their one hold, under the job's own item.
    op.execute("UPDATE ai_task_logs SET holds = jsonb_build_object('', hold_id)"
               " WHERE hold_id IS NOT NULL AND holds = '{}'::jsonb")


def downgrade() -> None:
    op.drop_column("ai_task_logs", "charges")
    op.drop_column("ai_task_logs", "holds")
