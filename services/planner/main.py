"""Planner's app factory: `uvicorn services.planner.main:create_app --factory`."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from libs.common.ai_jobs import AIJobRequests
from libs.common.app import app_factory
from libs.common.auth import AuthClient
from services.planner.api import router
from services.planner.models import AI_TASK_LOGS
from services.planner.settings import PlannerSettings

MIGRATIONS = Path(__file__).parent / "migrations"


async def clients(app: FastAPI) -> None:
    settings: PlannerSettings = app.state.settings
    app.state.auth_client = AuthClient(app.state.nc, timeout=settings.command_timeout_seconds)
    app.state.ai_jobs = AIJobRequests.connected(AI_TASK_LOGS, settings, app.state.nc,
                                                app.state.buckets)


create_app = app_factory(PlannerSettings, title="IGNY8 planner", routers=[router],
                         migrations_dir=MIGRATIONS, on_startup=[clients])
