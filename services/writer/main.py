"""Writer's app factory: `uvicorn services.writer.main:create_app --factory`."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common.ai_jobs import AIJobRequests
from libs.common.app import app_factory
from libs.common.auth import AuthClient
from libs.common.planner import PlannerClient
from libs.common.storage import build_storage
from services.writer.api import ROUTERS
from services.writer.models import AI_TASK_LOGS
from services.writer.service import Platform
from services.writer.settings import MIGRATIONS, WriterSettings

__all__ = ["MIGRATIONS", "create_app"]


async def platform(app: FastAPI) -> None:
    settings: WriterSettings = app.state.settings
    app.state.platform = Platform(
        settings, auth=AuthClient(app.state.nc, timeout=settings.command_timeout_seconds),
        planner=PlannerClient(app.state.nc, timeout=settings.command_timeout_seconds),
        ai_jobs=AIJobRequests.connected(AI_TASK_LOGS, settings, app.state.nc,
                                        app.state.buckets),
        storage=build_storage(settings))


async def close_storage(app: FastAPI) -> None:
    if app.state.platform.storage is not None:
        await app.state.platform.storage.aclose()


create_app = app_factory(WriterSettings, title="IGNY8 writer", routers=ROUTERS,
                         migrations_dir=MIGRATIONS, on_startup=[platform],
                         on_shutdown=[close_storage])
