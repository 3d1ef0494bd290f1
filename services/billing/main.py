"""Billing's app factory: `uvicorn services.billing.main:create_app --factory`."""

from __future__ import annotations

from pathlib import Path

from libs.common.app import app_factory
from services.billing.api import ROUTERS
from services.billing.settings import BillingSettings

MIGRATIONS = Path(__file__).parent / "migrations"

create_app = app_factory(BillingSettings, title="IGNY8 billing", routers=ROUTERS,
                         migrations_dir=MIGRATIONS)
