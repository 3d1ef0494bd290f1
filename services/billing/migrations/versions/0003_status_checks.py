"""Holds, invoices and payments accept only the statuses their enums name.

The values are written out, not read from the enums: a migration is a snapshot, and
tests/test_migrations.py fails when an enum and the database's CHECK differ.

Revision ID: 0003
Revises: 0002
"""
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

CHECKS = (
    ("credit_holds", "hold_status_known", "status IN ('held', 'captured', 'released', 'expired')"),
    ("invoices", "invoice_status_known",
     "status IN ('draft', 'pending', 'paid', 'void', 'uncollectible')"),
    ("payments", "payment_status_known",
     "status IN ('pending_approval', 'succeeded', 'failed', 'refunded')"),
)


def upgrade() -> None:
    for table, name, condition in CHECKS:
        op.create_check_constraint(name, table, condition)


def downgrade() -> None:
    for table, name, _ in CHECKS:
        op.drop_constraint(name, table, type_="check")
