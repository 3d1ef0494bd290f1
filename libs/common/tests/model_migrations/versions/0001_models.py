"""The kernel's test tables (libs/common/tests/models.py), behind row-level security,
built as a service's first migration builds them: the kernel tables, the directory and the
AI task log through the kernel's helpers, and the tables of its own.

Revision ID: 0001
"""
from alembic import op

from libs.common.migrations import (
    ai_task_log_table,
    create_tables,
    directory_tables,
    enable_tenant_rls,
    kernel_tables,
)
from libs.common.tests.models import Colour, Label, Thing

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

OWN = (Thing, Label, Colour)


def upgrade() -> None:
    kernel_tables(op)
    directory_tables(op)
    ai_task_log_table(op)
    create_tables(op, *(model.__table__ for model in OWN))  # type: ignore[attr-defined]
    enable_tenant_rls(op, "things", "labels")


def downgrade() -> None:
    raise NotImplementedError("test tables are dropped with their database")
