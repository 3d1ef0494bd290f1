"""Planner's settings (environment `IGNY8_*`)."""

from __future__ import annotations

from libs.common.settings import ServiceSettings


class PlannerSettings(ServiceSettings):
    service_name: str = "planner"
    http_port: int = 8102
    database_url: str = "postgresql+psycopg://igny8_planner_app@127.0.0.1:5432/igny8_planner"

    # Batch limits of the AI functions (the reference's defaults).
    auto_cluster_max_keywords: int = 20
    auto_generate_ideas_max_clusters: int = 1
    # Credits held before an AI job is queued (billing's default cost table): clustering is
    # charged per request, ideas per idea (a cluster yields at most `ideas_max_per_cluster`).
    clustering_credits: int = 10
    idea_credits: int = 2
    ideas_max_per_cluster: int = 7
    # How long a hold may live: longer than a job's every retry, so a dead worker's job
    # that is redelivered still finds its hold.
    hold_ttl_seconds: int = 1800
    # Request-reply commands to auth and billing.
    command_timeout_seconds: float = 5.0
    # Job workers: how long a silent job waits before it is redelivered, and how often.
    job_ack_wait_seconds: float = 60.0
    job_max_deliver: int = 3
    # CSV import/export.
    import_max_bytes: int = 50 * 1024 * 1024
    import_max_error_rows: int = 1000
    export_batch_rows: int = 5000
