"""Automation's tables, on automation's own SQLModel registry (Alembic sees only these).

A run is persisted state that the worker advances; nothing lives only in memory:

- `automation_configs`: one per site (frequency, time, batch sizes, delays, publish mode,
  the schedule's `next_run_at`);
- `automation_runs`: a run, its status and current stage, the per-stage results; the
  partial unique index `uq_automation_runs_active_site` is the rule "one active run per
  site" (two `run_now` at once: one insert wins, the other is a 409), and
  `uq_automation_runs_schedule` makes a due schedule start one run whichever automation
  process sees it first;
- `automation_steps`: one batch of one stage sent to the owning service, keyed
  (`key` unique) and carrying the job's task id derived from that key, so a step asked
  twice is one job;
- `automation_items`: one row per item a stage took (unique per run, stage, item): what
  happened to it, the reason when it was parked or skipped;
- `automation_charges`: billing's ledger deductions for the run's jobs (from
  `billing.credits.debited`, unique per transaction): the run's credits are their sum;
- `automation_logs`: the run's log lines.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from libs.common.columns import (
    Timestamped,
    bigint_ref,
    created_timestamp,
    identity_key,
    long_text,
    one_of,
    optional_timestamp,
)
from libs.common.directory import Directory


class Frequency(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


class PublishMode(StrEnum):
    DRAFT = "draft"  # everything stays a draft for a person to review (the default)
    AUTO = "auto"  # content that passes the gate is published


class RunStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    FAILED = "failed"


ACTIVE_STATUSES = (RunStatus.RUNNING, RunStatus.PAUSED)


class Trigger(StrEnum):
    MANUAL = "manual"
    SCHEDULED = "scheduled"


class StepStatus(StrEnum):
    QUEUED = "queued"  # recorded; the owner is being asked (or asked again)
    RUNNING = "running"  # the owner accepted it; its job runs
    DONE = "done"
    FAILED = "failed"


class ItemStatus(StrEnum):
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"  # parked with its reason; the run goes on
    SKIPPED = "skipped"  # left as it is, with the reason (stage 7's gate)


class AutomationModel(SQLModel, registry=registry()):
    """Base of automation's tables (`table=True`). Each change gets a migration under
    `migrations/versions/`; tests/test_migrations.py fails until the two agree."""


# Sites, sectors, site access, accounts and plans (the kernel's directory).
DIRECTORY = Directory(AutomationModel.metadata)


def _json(default: str) -> Any:
    return Field(default=None, sa_column=Column(JSONB, nullable=False,
                                                server_default=text(f"'{default}'::jsonb")))


class AutomationConfig(AutomationModel, Timestamped, table=True):
    __tablename__ = "automation_configs"
    __table_args__ = (
        Index("uq_automation_configs_site", "site_id", unique=True),
        Index("ix_automation_configs_due", "next_run_at", postgresql_where=text("enabled")),
        one_of("frequency", Frequency, name="automation_config_frequency"),
        one_of("publish_mode", PublishMode, name="automation_config_publish_mode"),
    )

    id: int | None = identity_key()
    account_id: int = bigint_ref()
    site_id: int = bigint_ref()
    enabled: bool = False
    frequency: str = Field(default=Frequency.DAILY, max_length=16)
    scheduled_time: str = Field(default="02:00", max_length=5)  # HH:MM, site's timezone
    timezone: str = Field(default="UTC", max_length=64)
    # Stage ("1".."7") → items per batch.
    batch_sizes: dict[str, int] | None = _json("{}")
    within_stage_delay_seconds: int = 0
    between_stage_delay_seconds: int = 0
    publish_mode: str = Field(default=PublishMode.DRAFT, max_length=8)
    quality_threshold: int = 80  # optimizer score an article needs to be auto-published
    daily_publish_cap: int = 10
    publish_window_start: str = Field(default="00:00", max_length=5)
    publish_window_end: str = Field(default="23:59", max_length=5)
    last_run_at: datetime | None = optional_timestamp()
    next_run_at: datetime | None = optional_timestamp()


class AutomationRun(AutomationModel, table=True):
    __tablename__ = "automation_runs"
    __table_args__ = (
        Index("uq_automation_runs_active_site", "site_id", unique=True,
              postgresql_where=text("status IN ('running', 'paused')")),
        Index("uq_automation_runs_schedule", "schedule_key", unique=True,
              postgresql_where=text("schedule_key IS NOT NULL")),
        Index("ix_automation_runs_site_started", "site_id", text("started_at DESC")),
        Index("ix_automation_runs_active", "status", "wake_at",
              postgresql_where=text("status = 'running'")),
        one_of("status", RunStatus, name="automation_run_status"),
        one_of("trigger", Trigger, name="automation_run_trigger"),
    )

    id: int | None = identity_key()
    run_id: str = Field(max_length=64, unique=True)
    account_id: int = bigint_ref()
    site_id: int = bigint_ref()
    trigger: str = Field(default=Trigger.MANUAL, max_length=16)
    triggered_by: int | None = bigint_ref(nullable=True)
    schedule_key: str | None = Field(default=None, max_length=120)
    status: str = Field(default=RunStatus.RUNNING, max_length=16)
    current_stage: int = 1
    # A pause or cancel asked for, applied once the current step is over.
    stop_requested: str | None = Field(default=None, max_length=16)
    # Stage ("1".."7") → {processed, created, failed, skipped, credits, reasons, ...}.
    results: dict[str, Any] | None = _json("{}")
    estimated_credits: int = 0
    total_credits: int = 0
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Not before this moment (the configured delays); the worker advances runs due.
    wake_at: datetime | None = optional_timestamp()
    started_at: datetime | None = created_timestamp()
    paused_at: datetime | None = optional_timestamp()
    finished_at: datetime | None = optional_timestamp()
    updated_at: datetime | None = created_timestamp()


class AutomationStep(AutomationModel, table=True):
    __tablename__ = "automation_steps"
    __table_args__ = (
        Index("uq_automation_steps_run_stage_batch", "run_pk", "stage", "batch", unique=True),
        Index("ix_automation_steps_task", "task_id"),
        one_of("status", StepStatus, name="automation_step_status"),
    )

    id: int | None = identity_key()
    account_id: int = bigint_ref()
    run_pk: int = Field(sa_column=Column(BigInteger, ForeignKey(
        "automation_runs.id", ondelete="CASCADE"), nullable=False))
    stage: int = Field(sa_column=Column(Integer, nullable=False))
    batch: int = Field(sa_column=Column(Integer, nullable=False))
    key: str = Field(max_length=200, unique=True)
    task_id: UUID | None = Field(default=None, sa_column=Column(PgUUID(as_uuid=True),
                                                                nullable=True))
    item_ids: list[int] | None = _json("[]")
    status: str = Field(default=StepStatus.QUEUED, max_length=16)
    attempts: int = 0
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime | None = created_timestamp()
    # When its owner was last asked for it: a job that shows no sign of starting is
    # asked for again STALE_JOB after this (a step re-queued waits out a pause first).
    asked_at: datetime | None = optional_timestamp()
    finished_at: datetime | None = optional_timestamp()


class AutomationItem(AutomationModel, Timestamped, table=True):
    __tablename__ = "automation_items"
    __table_args__ = (
        Index("uq_automation_items_run_stage_item", "run_pk", "stage", "item_id", unique=True),
        one_of("status", ItemStatus, name="automation_item_status"),
    )

    id: int | None = identity_key()
    account_id: int = bigint_ref()
    run_pk: int = Field(sa_column=Column(BigInteger, ForeignKey(
        "automation_runs.id", ondelete="CASCADE"), nullable=False))
    stage: int = Field(sa_column=Column(Integer, nullable=False))
    item_id: int = bigint_ref()
    step_id: int | None = Field(default=None, sa_column=Column(BigInteger, ForeignKey(
        "automation_steps.id", ondelete="SET NULL"), nullable=True))
    status: str = Field(default=ItemStatus.PROCESSING, max_length=16)
    reason: str = long_text()


class AutomationCharge(AutomationModel, table=True):
    __tablename__ = "automation_charges"
    __table_args__ = (Index("ix_automation_charges_run", "run_pk"),)

    id: int | None = identity_key()
    account_id: int = bigint_ref()
    run_pk: int = Field(sa_column=Column(BigInteger, ForeignKey(
        "automation_runs.id", ondelete="CASCADE"), nullable=False))
    stage: int = Field(sa_column=Column(Integer, nullable=False))
    transaction_id: int = Field(sa_column=Column(BigInteger, nullable=False, unique=True))
    task_id: UUID = Field(sa_column=Column(PgUUID(as_uuid=True), nullable=False))
    amount: int = 0
    operation_type: str = Field(default="", max_length=64)
    created_at: datetime | None = created_timestamp()


class AutomationLog(AutomationModel, table=True):
    __tablename__ = "automation_logs"
    __table_args__ = (Index("ix_automation_logs_run", "run_pk", "id"),)

    id: int | None = identity_key()
    account_id: int = bigint_ref()
    run_pk: int = Field(sa_column=Column(BigInteger, ForeignKey(
        "automation_runs.id", ondelete="CASCADE"), nullable=False))
    stage: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    level: str = Field(default="info", max_length=8)
    message: str = long_text()
    created_at: datetime | None = created_timestamp()


TENANT_TABLES = ("automation_configs", "automation_runs", "automation_steps",
                 "automation_items", "automation_charges", "automation_logs")
