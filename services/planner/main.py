"""Planner's app factory: `uvicorn services.planner.main:create_app --factory`."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from libs.common.app import create_service_app
from libs.common.auth import AuthClient
from libs.common.billing import BillingClient
from libs.common.security import KeysFetcher
from services.planner.api import router
from services.planner.settings import PlannerSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: PlannerSettings | None = None, *,
               keys_fetcher: KeysFetcher | None = None) -> FastAPI:
    settings = settings or PlannerSettings()

    async def clients(app: FastAPI) -> None:
        timeout = settings.command_timeout_seconds
        app.state.auth_client = AuthClient(app.state.nc, timeout=timeout)
        app.state.billing = BillingClient(app.state.nc, timeout=timeout)

    return create_service_app(settings, title="IGNY8 planner", routers=[router],
                              migrations_dir=MIGRATIONS, keys_fetcher=keys_fetcher,
                              on_startup=[clients])
