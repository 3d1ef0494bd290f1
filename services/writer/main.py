"""Writer's app factory: `uvicorn services.writer.main:create_app --factory`."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common import nats as nats_kernel
from libs.common.ai_jobs import AIJobRequests
from libs.common.app import create_service_app
from libs.common.auth import AuthClient
from libs.common.billing import BillingClient
from libs.common.jobs import TaskProgress
from libs.common.security import KeysFetcher
from libs.common.storage import build_storage
from services.writer.api import ROUTERS
from services.writer.models import AI_TASK_LOGS
from services.writer.service import Platform
from services.writer.settings import MIGRATIONS, WriterSettings

__all__ = ["MIGRATIONS", "create_app"]


def create_app(settings: WriterSettings | None = None, *,
               keys_fetcher: KeysFetcher | None = None) -> FastAPI:
    settings = settings or WriterSettings()

    async def platform(app: FastAPI) -> None:
        timeout = settings.command_timeout_seconds
        progress = TaskProgress(app.state.buckets[nats_kernel.TASK_PROGRESS_BUCKET])
        app.state.platform = Platform(
            settings, auth=AuthClient(app.state.nc, timeout=timeout),
            ai_jobs=AIJobRequests(AI_TASK_LOGS, BillingClient(app.state.nc, timeout=timeout),
                                  progress, hold_ttl_seconds=settings.hold_ttl_seconds),
            storage=build_storage(settings))

    async def close_storage(app: FastAPI) -> None:
        if app.state.platform.storage is not None:
            await app.state.platform.storage.aclose()

    return create_service_app(settings, title="IGNY8 writer", routers=ROUTERS,
                              migrations_dir=MIGRATIONS, keys_fetcher=keys_fetcher,
                              on_startup=[platform], on_shutdown=[close_storage])
