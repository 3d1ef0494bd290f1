"""Automation's first schema: the kernel tables, the auth directory, configs, runs (one
active run per site, one run per due schedule), steps, items, charges and log lines;
every tenant table behind row-level security.

Revision ID: 0001
Revises:
"""

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from libs.common.migration_columns import (
    flag,
    identity,
    json_list,
    json_object,
    long_text,
    moment,
    number,
    owned_by,
    ref,
    varchar,
)
from libs.common.migrations import drop_kernel_tables, enable_tenant_rls, kernel_tables

revision, down_revision, branch_labels, depends_on = "0001", None, None, None

TENANT_TABLES = ("automation_configs", "automation_runs", "automation_steps",
                 "automation_items", "automation_charges", "automation_logs")


def run_ref() -> sa.Column[Any]:
    """The run a row belongs to, deleted with it."""
    return ref("run_pk", parent="automation_runs")


def upgrade() -> None:
    kernel_tables(op, directory=True)
    op.create_table(
        "automation_configs", identity(), ref("account_id"), ref("site_id"),
        flag("enabled"),
        varchar("frequency", 16), varchar("scheduled_time", 5), varchar("timezone", 64),
        json_object("batch_sizes"),
        number("within_stage_delay_seconds"), number("between_stage_delay_seconds"),
        varchar("publish_mode", 8), number("quality_threshold"), number("daily_publish_cap"),
        varchar("publish_window_start", 5), varchar("publish_window_end", 5),
        moment("last_run_at"), moment("next_run_at"),
        moment("created_at", now=True), moment("updated_at", now=True),
        sa.CheckConstraint("frequency IN ('daily', 'weekly', 'monthly')",
                           name="automation_config_frequency"),
        sa.CheckConstraint("publish_mode IN ('draft', 'auto')",
                           name="automation_config_publish_mode"),
    )
    op.create_index("uq_automation_configs_site", "automation_configs", ["site_id"], unique=True)
    op.create_index("ix_automation_configs_due", "automation_configs", ["next_run_at"],
                    postgresql_where=sa.text("enabled"))
    op.create_table(
        "automation_runs", identity(), varchar("run_id", 64), ref("account_id"),
        ref("site_id"), varchar("trigger", 16), ref("triggered_by", nullable=True),
        varchar("schedule_key", 120, nullable=True), varchar("status", 16),
        number("current_stage"), varchar("stop_requested", 16, nullable=True),
        json_object("results"), number("estimated_credits"), number("total_credits"),
        long_text("error", default=None, nullable=True),
        moment("wake_at"), moment("started_at", now=True), moment("paused_at"),
        moment("finished_at"), moment("updated_at", now=True),
        sa.UniqueConstraint("run_id"),
        sa.CheckConstraint(
            "status IN ('running', 'paused', 'cancelled', 'completed', 'failed')",
            name="automation_run_status"),
        sa.CheckConstraint("trigger IN ('manual', 'scheduled')", name="automation_run_trigger"),
    )
    op.create_index("uq_automation_runs_active_site", "automation_runs", ["site_id"],
                    unique=True, postgresql_where=sa.text("status IN ('running', 'paused')"))
    op.create_index("uq_automation_runs_schedule", "automation_runs", ["schedule_key"],
                    unique=True, postgresql_where=sa.text("schedule_key IS NOT NULL"))
    op.create_index("ix_automation_runs_site_started", "automation_runs",
                    ["site_id", sa.text("started_at DESC")])
    op.create_index("ix_automation_runs_active", "automation_runs", ["status", "wake_at"],
                    postgresql_where=sa.text("status = 'running'"))
    op.create_table(
        "automation_steps", identity(), ref("account_id"), run_ref(), number("stage"),
        number("batch"), varchar("key", 200), sa.Column("task_id", UUID(), nullable=True),
        json_list("item_ids"), varchar("status", 16), number("attempts"),
        sa.Column("result", JSONB(astext_type=sa.Text()), nullable=True),
        long_text("error", default=None, nullable=True),
        moment("created_at", now=True), moment("finished_at"),
        sa.UniqueConstraint("key"),
        sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed')",
                           name="automation_step_status"),
    )
    op.create_index("uq_automation_steps_run_stage_batch", "automation_steps",
                    ["run_pk", "stage", "batch"], unique=True)
    op.create_index("ix_automation_steps_task", "automation_steps", ["task_id"])
    op.create_table(
        "automation_items", identity(), ref("account_id"), run_ref(), number("stage"),
        ref("item_id"),
        owned_by("automation_steps", "step_id"),
        varchar("status", 16), long_text("reason"),
        moment("created_at", now=True), moment("updated_at", now=True),
        sa.CheckConstraint("status IN ('processing', 'done', 'failed', 'skipped')",
                           name="automation_item_status"),
    )
    op.create_index("uq_automation_items_run_stage_item", "automation_items",
                    ["run_pk", "stage", "item_id"], unique=True)
    op.create_table(
        "automation_charges", identity(), ref("account_id"), run_ref(), number("stage"),
        ref("transaction_id"), sa.Column("task_id", UUID(), nullable=False),
        number("amount"), varchar("operation_type", 64), moment("created_at", now=True),
        sa.UniqueConstraint("transaction_id"),
    )
    op.create_index("ix_automation_charges_run", "automation_charges", ["run_pk"])
    op.create_table(
        "automation_logs", identity(), ref("account_id"), run_ref(),
        number("stage", nullable=True), varchar("level", 8),
        long_text("message"),
        moment("created_at", now=True),
    )
    op.create_index("ix_automation_logs_run", "automation_logs", ["run_pk", "id"])
    enable_tenant_rls(op, *TENANT_TABLES)


def downgrade() -> None:
    for table in reversed(TENANT_TABLES):
        op.drop_table(table)
    drop_kernel_tables(op, directory=True)
