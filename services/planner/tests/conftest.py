"""Fixtures for planner's tests: a migrated database, the app in-process, the worker.
Billing's real worker (`billing`, a `Ledger`) and auth's commands answered by a fake
(`fake_auth`) come from billing's and the kernel's test helpers (services/billing/testing.py,
libs/common/testing/fake_auth.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from libs.common.db import Database
from libs.common.provision import ServiceDatabase
from libs.common.testing.apps import running_app
from libs.common.testing.factories import Tenant, next_id
from libs.common.testing.fake_auth import FakeAuth, fake_auth_fixture
from libs.common.testing.plugin import DatabaseFactory, NatsIdentity
from libs.common.testing.tokens import TestIssuer
from services.billing.testing import (
    Ledger,
    MakeTenant,
    billing_fixture,
    make_tenant_fixture,
    tenant_fixture,
)
from services.planner.main import MIGRATIONS, create_app
from services.planner.settings import PlannerSettings

# What the tests import from here, and the fixtures taken from the kernel and billing
# (pytest registers the fixtures a conftest holds).
__all__ = ["FakeAuth", "Ledger", "MakeTenant", "Tenant", "billing_fixture",
           "fake_auth_fixture", "make_tenant_fixture", "next_id", "tenant_fixture"]

API = "/api/v1/planner"


@pytest.fixture(scope="package")
def planner_db_info(make_database: DatabaseFactory) -> ServiceDatabase:
    return make_database("planner", MIGRATIONS)


@pytest.fixture(scope="package")
def planner_settings(planner_db_info: ServiceDatabase,
                     nats_identity: NatsIdentity) -> PlannerSettings:
    return PlannerSettings(
        database_url=planner_db_info.app_url, **nats_identity("planner"), environment="test",
        command_timeout_seconds=2.0, job_ack_wait_seconds=2.0, outbound_allow_private=True,
    )


@pytest.fixture(scope="package")
async def planner_db(planner_db_info: ServiceDatabase) -> AsyncIterator[Database]:
    db = Database(planner_db_info.app_url)
    yield db
    await db.dispose()


# --- the app ---------------------------------------------------------------------------

@pytest.fixture(scope="package")
async def client(planner_settings: PlannerSettings, issuer: TestIssuer, fake_auth: FakeAuth,
                 billing: Ledger) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(planner_settings, keys_fetcher=issuer.fetcher())
    async with running_app(app) as c:
        yield c


async def add_keywords(client: httpx.AsyncClient, t: Tenant, *items: dict[str, Any],
                       sector_id: int | None = None) -> list[dict[str, Any]]:
    out = []
    for item in items:
        body = {"site_id": t.site_id, "sector_id": sector_id or t.sector_id, **item}
        r = await client.post(f"{API}/keywords/", json=body, headers=t.headers())
        assert r.status_code == 201, r.text
        out.append(r.json())
    return out


@contextlib.asynccontextmanager
async def running_worker(settings: PlannerSettings, **kw: Any) -> AsyncIterator[None]:
    from services.planner.worker import run

    stop = asyncio.Event()
    task = asyncio.create_task(run(stop, settings, **kw))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

