"""A step records when its owner was last asked for it (`asked_at`): the moment a job
that shows no sign of starting is judged stale from, rather than when the step was
recorded, which a step that waited through a long pause and was asked again after the
resume was always older than.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from libs.common.migration_columns import moment

revision, down_revision, branch_labels, depends_on = "0003", "0002", None, None


def upgrade() -> None:
    op.add_column("automation_steps", moment("asked_at"))


def downgrade() -> None:
    op.drop_column("automation_steps", "asked_at")
