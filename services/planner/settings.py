"""Planner's settings (environment `IGNY8_*`). Holds, job delivery and command timeouts
are the kernel's (`AIJobSettings`)."""

from __future__ import annotations

from libs.common.ai_jobs.settings import AIJobSettings
from libs.common.settings import ServiceSettings


class PlannerSettings(ServiceSettings, AIJobSettings):
    service_name: str = "planner"
    http_port: int = 8102

    # Batch limits of the AI functions (the reference's defaults).
    auto_cluster_max_keywords: int = 20
    auto_generate_ideas_max_clusters: int = 1
    # Automation's stage 2 (`pipeline_queue`) asks for the ideas of a batch of clusters in
    # one job (the job writes them cluster by cluster): one job per cluster made each
    # cluster pay a whole step's round trips (bench.automation). The API keeps the
    # reference's limit above.
    pipeline_ideas_max_clusters: int = 20
    # Credits held before an AI job is queued (billing's default cost table): clustering is
    # charged per request, ideas per idea (a cluster yields at most `ideas_max_per_cluster`).
    clustering_credits: int = 10
    idea_credits: int = 2
    ideas_max_per_cluster: int = 7
    # Planner's holds live 30 minutes (the kernel's default is an hour).
    hold_ttl_seconds: int = 1800
    # CSV import/export.
    import_max_bytes: int = 50 * 1024 * 1024
    import_max_error_rows: int = 1000
    export_batch_rows: int = 5000
