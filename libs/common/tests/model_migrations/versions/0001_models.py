"""The kernel's test tables (libs/common/tests/models.py), behind row-level security.

Revision ID: 0001
"""
from alembic import op

from libs.common.migrations import tenant_rls
from libs.common.models import kernel_metadata
from libs.common.tests.models import TENANT_TABLES, KernelTestModel

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    kernel_metadata.create_all(op.get_bind())
    KernelTestModel.metadata.create_all(op.get_bind())
    for table in TENANT_TABLES:
        for statement in tenant_rls(table):
            op.execute(statement)


def downgrade() -> None:
    KernelTestModel.metadata.drop_all(op.get_bind())
