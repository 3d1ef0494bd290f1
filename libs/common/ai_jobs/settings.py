"""The knobs of a service that runs billed AI jobs (`IGNY8_*`): a service's settings
inherit them (`class WriterSettings(ServiceSettings, AIJobSettings)`)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class AIJobSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IGNY8_", extra="ignore")

    # How long a hold may live: longer than a job's every retry, so a dead worker's job
    # that is redelivered still finds its hold.
    hold_ttl_seconds: int = 3600
    # Request-reply commands to auth and billing.
    command_timeout_seconds: float = 5.0
    # Job workers: how long a silent job waits before it is redelivered, and how often.
    job_ack_wait_seconds: float = 60.0
    job_max_deliver: int = 3
