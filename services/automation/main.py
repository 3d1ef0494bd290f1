"""Automation's app factory: `uvicorn services.automation.main:create_app --factory`."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common.app import create_service_app
from libs.common.auth import AuthClient
from libs.common.billing import BillingClient
from libs.common.pipeline import PipelineClient
from libs.common.security import KeysFetcher
from services.automation.api import ROUTERS
from services.automation.service import Clients
from services.automation.settings import MIGRATIONS, AutomationSettings

__all__ = ["MIGRATIONS", "create_app"]


def create_app(settings: AutomationSettings | None = None, *,
               keys_fetcher: KeysFetcher | None = None) -> FastAPI:
    settings = settings or AutomationSettings()

    async def clients(app: FastAPI) -> None:
        timeout = settings.command_timeout_seconds
        nc = app.state.nc
        app.state.clients = Clients(settings, auth=AuthClient(nc, timeout=timeout),
                                    billing=BillingClient(nc, timeout=timeout),
                                    pipeline=PipelineClient(nc, timeout=timeout))

    return create_service_app(settings, title="IGNY8 automation", routers=list(ROUTERS),
                              migrations_dir=MIGRATIONS, keys_fetcher=keys_fetcher,
                              on_startup=[clients])
