"""Automation's app factory: `uvicorn services.automation.main:create_app --factory`."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common.app import app_factory
from libs.common.auth import AuthClient
from libs.common.billing import BillingClient
from libs.common.pipeline import PipelineClient
from services.automation.api import ROUTERS
from services.automation.service import Clients
from services.automation.settings import MIGRATIONS, AutomationSettings

__all__ = ["MIGRATIONS", "create_app"]


async def clients(app: FastAPI) -> None:
    settings: AutomationSettings = app.state.settings
    nc, timeout = app.state.nc, settings.command_timeout_seconds
    app.state.clients = Clients(settings, auth=AuthClient(nc, timeout=timeout),
                                billing=BillingClient(nc, timeout=timeout),
                                pipeline=PipelineClient(nc, timeout=timeout))


create_app = app_factory(AutomationSettings, title="IGNY8 automation", routers=list(ROUTERS),
                         migrations_dir=MIGRATIONS, on_startup=[clients])
