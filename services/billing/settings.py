"""Billing's settings (environment `IGNY8_*`)."""

from __future__ import annotations

from libs.common.settings import ServiceSettings


class BillingSettings(ServiceSettings):
    service_name: str = "billing"
    http_port: int = 8104
    # A `billing.balance.low` event fires when the spendable balance falls below this.
    low_balance_threshold: int = 100
    # How long a hold lives when the caller names no TTL, and the longest it may ask for.
    default_hold_ttl_seconds: int = 900
    max_hold_ttl_seconds: int = 6 * 3600
    # How often the worker looks for expired holds and for periods that have ended.
    hold_sweep_interval_seconds: float = 5.0
    renewal_interval_seconds: float = 60.0
    # Command handlers running at once per worker process (bounded by the DB pool).
    command_concurrency: int = 64
    # Hold and capture batches running at once per kind (commands arriving meanwhile wait
    # and run together), and the most commands in one batch.
    command_batches_in_flight: int = 8
    command_max_batch: int = 100
    worker_db_pool_size: int = 20
    worker_db_max_overflow: int = 10
    currency: str = "USD"
