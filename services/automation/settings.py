"""Automation's settings (environment `IGNY8_*`), and where its migrations live."""

from __future__ import annotations

from pathlib import Path

from libs.common.settings import ServiceSettings

MIGRATIONS = Path(__file__).parent / "migrations"


class AutomationSettings(ServiceSettings):
    service_name: str = "automation"
    http_port: int = 8105
    database_url: str = (
        "postgresql+psycopg://igny8_automation_app@127.0.0.1:5432/igny8_automation")
    # Request-reply commands to auth, billing, planner and writer.
    command_timeout_seconds: float = 10.0
    # How often the worker looks at running runs when no event woke it (a safety net:
    # events from planner, writer and the task progress wake it at once).
    tick_seconds: float = 1.0
    # How often the scheduler looks for due configurations.
    schedule_check_seconds: float = 30.0
    # `run_now` needs a balance of at least this times the estimate.
    balance_margin: float = 1.2
    # A step whose owner does not answer is asked again after this long, this often,
    # before its items are parked.
    step_retry_seconds: float = 5.0
    step_max_attempts: int = 5
    # How long stage 7 waits for writer to publish one content (images uploaded, the post
    # made and published) before asking again under the same key.
    publish_timeout_seconds: float = 60.0
    # A stage whose work is done waits this long at most for billing's debits of its jobs
    # (events, after the jobs end) to add up to what the jobs say they charged, looking
    # again when the debit that completes a step's charges wakes the engine (or at its
    # tick); then it closes anyway, with a warning in the run's log.
    settle_wait_seconds: float = 30.0
