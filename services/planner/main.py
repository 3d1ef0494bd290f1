"""Planner's app factory: `uvicorn services.planner.main:create_app --factory`."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from libs.common import nats as nats_kernel
from libs.common.ai_jobs import AIJobRequests
from libs.common.app import create_service_app
from libs.common.auth import AuthClient
from libs.common.billing import BillingClient
from libs.common.jobs import TaskProgress
from libs.common.security import KeysFetcher
from services.planner.api import router
from services.planner.models import AI_TASK_LOGS
from services.planner.settings import PlannerSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: PlannerSettings | None = None, *,
               keys_fetcher: KeysFetcher | None = None) -> FastAPI:
    settings = settings or PlannerSettings()

    async def clients(app: FastAPI) -> None:
        timeout = settings.command_timeout_seconds
        app.state.auth_client = AuthClient(app.state.nc, timeout=timeout)
        progress = TaskProgress(app.state.buckets[nats_kernel.TASK_PROGRESS_BUCKET])
        app.state.ai_jobs = AIJobRequests(
            AI_TASK_LOGS, BillingClient(app.state.nc, timeout=timeout), progress,
            hold_ttl_seconds=settings.hold_ttl_seconds)

    return create_service_app(settings, title="IGNY8 planner", routers=[router],
                              migrations_dir=MIGRATIONS, keys_fetcher=keys_fetcher,
                              on_startup=[clients])
