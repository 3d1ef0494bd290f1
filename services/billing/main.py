"""Billing's app factory."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from libs.common.app import create_service_app
from libs.common.security import KeysFetcher
from services.billing.api import ROUTERS
from services.billing.settings import BillingSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: BillingSettings | None = None, *,
               keys_fetcher: KeysFetcher | None = None) -> FastAPI:
    settings = settings or BillingSettings()
    return create_service_app(settings, title="IGNY8 billing", routers=ROUTERS,
                              migrations_dir=MIGRATIONS, keys_fetcher=keys_fetcher)
