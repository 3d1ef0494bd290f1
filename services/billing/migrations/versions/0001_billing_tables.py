"""Billing tables, plus row-level security on every tenant table and an
append-only guard on the ledger.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 20:19:40.926172
"""
import sqlalchemy as sa
from alembic import op

from libs.common.migration_columns import (
    decimal,
    flag,
    identity,
    indexed,
    json_list,
    json_object,
    moment,
    number,
    ref,
    stamps,
    varchar,
)
from libs.common.migrations import drop_kernel_tables, enable_tenant_rls, kernel_tables

TENANT_TABLES = (
    'accounts', 'subscriptions', 'credit_balances', 'credit_transactions', 'credit_holds',
    'credit_usage_logs', 'invoices', 'payments', 'payment_methods',
)

LEDGER_GUARD = '''
CREATE FUNCTION credit_transactions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'credit_transactions is append-only (% refused)', TG_OP;
END $$
'''

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts", ref("account_id", key=True), varchar("name", 255), varchar("slug", 255),
        varchar("status", 32), ref("owner_user_id", nullable=True),
        ref("plan_id", nullable=True), varchar("plan_slug", 255, nullable=True),
        flag("deleted"), moment("updated_at", now=True))
    op.create_table(
        "credit_balances", ref("account_id", key=True), number("plan_credits"),
        number("purchased_credits"), number("held"), number("plan_credits_per_month"),
        moment("period_start"), moment("period_end"), flag("low_notified"),
        *stamps(deleted=False),
        sa.CheckConstraint("held >= 0", name="held_not_negative"),
        sa.CheckConstraint("plan_credits >= 0", name="plan_credits_not_negative"),
        sa.CheckConstraint("purchased_credits >= 0", name="purchased_credits_not_negative"))
    indexed(op, "credit_balances", "period_end")
    op.create_table(
        "credit_cost_configs", identity(), varchar("operation_type", 64),
        varchar("display_name", 255), varchar("description", 500), varchar("unit", 32),
        number("credits_cost"), number("tokens_per_credit", nullable=True),
        number("min_credits"), flag("is_active"), ref("updated_by_user_id", nullable=True),
        *stamps(deleted=False),
        sa.CheckConstraint("credits_cost >= 0", name="credits_cost_not_negative"),
        sa.CheckConstraint("min_credits >= 0", name="min_credits_not_negative"),
        sa.UniqueConstraint("operation_type"))

    # The ledger: holds, transactions (append-only), usage.
    op.create_table(
        "credit_holds", identity(), ref("account_id"), varchar("operation_type", 64),
        number("amount"), varchar("status", 16), varchar("idempotency_key", 255),
        moment("expires_at", required=True), number("captured_credits"),
        number("refunded_credits"), number("from_plan"), number("from_purchased"),
        ref("transaction_id", nullable=True), ref("usage_log_id", nullable=True),
        moment("created_at", now=True), moment("settled_at"),
        sa.CheckConstraint("amount >= 0", name="hold_amount_not_negative"),
        sa.UniqueConstraint("account_id", "idempotency_key", name="uq_credit_holds_key"))
    op.create_index("ix_credit_holds_account", "credit_holds", ["account_id", "created_at"])
    op.create_index("ix_credit_holds_open_expiry", "credit_holds", ["expires_at"],
                    postgresql_where=sa.text("status = 'held'"))
    op.create_table(
        "credit_packages", identity(), varchar("name", 255), varchar("slug", 255),
        number("credits"), decimal("price", 14, 2), varchar("currency", 3),
        varchar("description", 500), flag("is_active"), flag("is_featured"),
        number("sort_order"), *stamps(deleted=False),
        sa.CheckConstraint("credits > 0", name="package_credits_positive"),
        sa.CheckConstraint("price >= 0", name="package_price_not_negative"),
        sa.UniqueConstraint("slug"))
    op.create_table(
        "credit_transactions", identity(), ref("account_id"), varchar("transaction_type", 32),
        number("amount"), number("balance_after"), number("plan_balance_after"),
        number("purchased_balance_after"), varchar("description", 500),
        varchar("reference", 255, nullable=True), json_object("metadata"),
        varchar("idempotency_key", 255, nullable=True), moment("created_at", now=True),
        sa.CheckConstraint("transaction_type IN ('purchase','subscription','refund',"
                           "'deduction','adjustment')", name="transaction_type_known"),
        sa.UniqueConstraint("account_id", "idempotency_key", name="uq_credit_transactions_key"))
    op.create_index("ix_credit_transactions_account_created", "credit_transactions",
                    ["account_id", "created_at"])
    op.create_index("ix_credit_transactions_account_type", "credit_transactions",
                    ["account_id", "transaction_type", "created_at"])
    op.create_table(
        "credit_usage_logs", identity(), ref("account_id"), varchar("operation_type", 64),
        number("credits_used"), decimal("cost_usd", 14, 6), varchar("model_used", 255),
        number("tokens_input"), number("tokens_output"), number("units", nullable=True),
        varchar("related_object_type", 64, nullable=True),
        varchar("related_object_id", 64, nullable=True), ref("hold_id", nullable=True),
        ref("transaction_id", nullable=True), json_object("metadata"),
        moment("created_at", now=True))
    op.create_index("ix_credit_usage_account_created", "credit_usage_logs",
                    ["account_id", "created_at"])
    op.create_index("ix_credit_usage_account_operation", "credit_usage_logs",
                    ["account_id", "operation_type", "created_at"])

    # Invoices and their payments.
    op.create_table(
        "invoices", identity(), ref("account_id"), varchar("invoice_number", 64),
        varchar("invoice_type", 32), varchar("status", 32), varchar("currency", 3),
        decimal("subtotal", 14, 2), decimal("tax", 14, 2), decimal("total", 14, 2),
        json_list("lines"), ref("credit_package_id", nullable=True), number("credits"),
        varchar("billing_email", 255, nullable=True), varchar("notes", 2000),
        ref("created_by_user_id", nullable=True), moment("issued_at", now=True),
        moment("due_date"), moment("paid_at"), *stamps(deleted=False),
        sa.UniqueConstraint("invoice_number"))
    op.create_index("ix_invoices_account_created", "invoices", ["account_id", "created_at"])
    op.create_table(
        "payment_methods", identity(), ref("account_id"), varchar("method_type", 32),
        varchar("display_name", 255), json_object("details"), flag("is_default"),
        flag("is_enabled"), *stamps(deleted=False))
    op.create_index("ix_payment_methods_account", "payment_methods", ["account_id"])
    op.create_index("uq_payment_methods_default", "payment_methods", ["account_id"],
                    unique=True, postgresql_where=sa.text("is_default"))
    op.create_table(
        "payments", identity(), ref("account_id"), ref("invoice_id"),
        decimal("amount", 14, 2), varchar("currency", 3), varchar("payment_method", 32),
        varchar("status", 32), varchar("transaction_reference", 255), varchar("notes", 2000),
        varchar("failure_reason", 2000, nullable=True),
        ref("submitted_by_user_id", nullable=True), ref("reviewed_by_user_id", nullable=True),
        moment("reviewed_at"), *stamps(deleted=False),
        sa.CheckConstraint("amount > 0", name="payment_amount_positive"))
    op.create_index("ix_payments_account_created", "payments", ["account_id", "created_at"])
    op.create_index("ix_payments_status", "payments", ["status", "created_at"])
    op.create_index("uq_payments_open_per_invoice", "payments", ["invoice_id"], unique=True,
                    postgresql_where=sa.text("status = 'pending_approval'"))

    # Auth's plans and subscriptions, as billing reads them.
    op.create_table(
        "plans", ref("id", key=True), varchar("name", 255), varchar("slug", 255),
        decimal("price", 14, 2), varchar("billing_cycle", 32), number("included_credits"),
        json_object("limits"), json_list("features"), flag("is_active"),
        moment("updated_at", now=True))
    indexed(op, "plans", "slug")
    op.create_table(
        "subscriptions", ref("id", key=True), ref("account_id"), ref("plan_id", nullable=True),
        varchar("plan_slug", 255, nullable=True), number("included_credits"),
        varchar("status", 32), moment("current_period_start"), moment("current_period_end"),
        moment("updated_at", now=True))
    indexed(op, "subscriptions", "account_id")
    kernel_tables(op)
    enable_tenant_rls(op, *TENANT_TABLES)
    op.execute(LEDGER_GUARD)
    op.execute(
        "CREATE TRIGGER credit_transactions_append_only BEFORE UPDATE OR DELETE ON "
        "credit_transactions FOR EACH ROW EXECUTE FUNCTION credit_transactions_append_only()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS credit_transactions_append_only ON credit_transactions")
    op.execute("DROP FUNCTION IF EXISTS credit_transactions_append_only()")
    drop_kernel_tables(op)
    for table in ("subscriptions", "plans", "payments", "payment_methods", "invoices",
                  "credit_usage_logs", "credit_transactions", "credit_packages",
                  "credit_holds", "credit_cost_configs", "credit_balances", "accounts"):
        op.drop_table(table)
