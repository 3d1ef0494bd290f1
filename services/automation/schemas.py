"""Request and response bodies of automation's HTTP API."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator

from libs.common.schemas import WriteModel
from services.automation.models import Frequency, PublishMode, RunStatus, Trigger

HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
# The document says what `_hhmm` checks (its message stays the validator's own).
_HHMM_DOC: dict[str, Any] = {"pattern": HHMM.pattern}

# Items per batch each stage takes at most: the owners' own limits (planner: 20 keywords
# per clustering request, 20 clusters per ideas job on the pipeline's path; writer: 50
# tasks, 50 contents, 100 images); stage 7 is automation's own.
MAX_BATCH = {1: 20, 2: 20, 3: 50, 4: 50, 5: 50, 6: 100, 7: 100}
# Every step costs round trips (hold, queue, job start, capture, the engine noticing), so
# the cheap stages take big batches; content (the long jobs) takes 10, which is how long
# a pause or cancel may wait (it takes effect after the current batch).
DEFAULT_BATCH = {1: 20, 2: 10, 3: 50, 4: 10, 5: 50, 6: 100, 7: 50}
STAGE_NAMES = {
    1: "Keywords → Clusters",
    2: "Clusters → Ideas",
    3: "Ideas → Tasks",
    4: "Tasks → Content",
    5: "Content → Image Prompts",
    6: "Image Prompts → Images",
    7: "Review Gate",
}


class ConfigOut(BaseModel):
    site_id: int
    enabled: bool
    frequency: Frequency
    scheduled_time: str
    timezone: str
    stage_1_batch_size: int
    stage_2_batch_size: int
    stage_3_batch_size: int
    stage_4_batch_size: int
    stage_5_batch_size: int
    stage_6_batch_size: int
    stage_7_batch_size: int
    within_stage_delay: int
    between_stage_delay: int
    publish_mode: PublishMode
    quality_threshold: int
    daily_publish_cap: int
    publish_window_start: str
    publish_window_end: str
    last_run_at: datetime | None = None
    next_run_at: datetime | None = None


class ConfigUpdate(WriteModel):
    resource = ConfigOut
    enabled: bool | None = None
    frequency: Frequency | None = None
    scheduled_time: str | None = Field(default=None, json_schema_extra=_HHMM_DOC)
    timezone: str | None = Field(default=None, max_length=64)
    stage_1_batch_size: int | None = Field(default=None, ge=1, le=MAX_BATCH[1])
    stage_2_batch_size: int | None = Field(default=None, ge=1, le=MAX_BATCH[2])
    stage_3_batch_size: int | None = Field(default=None, ge=1, le=MAX_BATCH[3])
    stage_4_batch_size: int | None = Field(default=None, ge=1, le=MAX_BATCH[4])
    stage_5_batch_size: int | None = Field(default=None, ge=1, le=MAX_BATCH[5])
    stage_6_batch_size: int | None = Field(default=None, ge=1, le=MAX_BATCH[6])
    stage_7_batch_size: int | None = Field(default=None, ge=1, le=MAX_BATCH[7])
    within_stage_delay: int | None = Field(default=None, ge=0, le=3600)
    between_stage_delay: int | None = Field(default=None, ge=0, le=3600)
    publish_mode: PublishMode | None = None
    quality_threshold: int | None = Field(default=None, ge=0, le=100)
    daily_publish_cap: int | None = Field(default=None, ge=0, le=1000)
    publish_window_start: str | None = Field(default=None, json_schema_extra=_HHMM_DOC)
    publish_window_end: str | None = Field(default=None, json_schema_extra=_HHMM_DOC)

    @field_validator("scheduled_time", "publish_window_start", "publish_window_end")
    @classmethod
    def _hhmm(cls, value: str | None) -> str | None:
        if value is not None and not HHMM.match(value):
            raise ValueError("Use the 24-hour HH:MM format.")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("Unknown time zone.") from None
        return value


class StageResult(BaseModel):
    stage: int
    name: str
    processed: int = 0
    created: int = 0
    failed: int = 0
    skipped: int = 0
    credits: int = 0
    reasons: dict[str, int] = Field(default_factory=dict)


class RunOut(BaseModel):
    run_id: str
    site_id: int
    trigger: Trigger
    status: RunStatus
    current_stage: int
    stop_requested: str | None = None
    estimated_credits: int
    total_credits: int
    error: str | None = None
    started_at: datetime | None = None
    paused_at: datetime | None = None
    finished_at: datetime | None = None
    stage_results: list[StageResult]


class LogLine(BaseModel):
    at: datetime | None
    stage: int | None
    level: str
    message: str


class LogsOut(BaseModel):
    run_id: str
    lines: list[LogLine]


class StageEstimate(BaseModel):
    stage: int
    name: str
    pending: int
    operation_type: str | None
    estimated_credits: int


class EstimateOut(BaseModel):
    estimated_credits: int
    current_balance: int
    required_credits: int
    sufficient: bool
    stages: list[StageEstimate]


class StagePending(BaseModel):
    stage: int
    name: str
    pending: int


class PipelineOverview(BaseModel):
    site_id: int
    stages: list[StagePending]


class CurrentProcessing(BaseModel):
    run_id: str
    status: RunStatus
    stage: int
    stage_name: str
    step: dict[str, Any] | None = None
    items: list[int] = Field(default_factory=list)


class RunStarted(BaseModel):
    run_id: str
    status: RunStatus
    estimated_credits: int
    message: str
