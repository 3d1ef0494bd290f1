"""Fixtures for planner's tests: a migrated database, the app in-process, the worker.
Billing's real worker (`billing`, a `Ledger`) and auth's commands answered by a fake
(`fake_auth`) come from billing's and the kernel's test helpers (services/billing/testing.py,
libs/common/testing/fake_auth.py)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NATS
from sqlalchemy import text

from libs.common import nats as nats_kernel
from libs.common.db import Database, TenantScope
from libs.common.jobs import TaskProgress
from libs.common.provision import ServiceDatabase
from libs.common.testing.apps import running_app
from libs.common.testing.factories import Factories, Tenant, next_id
from libs.common.testing.fake_auth import FakeAuth, answering_auth
from libs.common.testing.plugin import DatabaseFactory, MakeSettings, NatsIdentity
from libs.common.testing.tokens import TestIssuer
from services.billing.testing import Ledger, MakeTenant, running_billing, tenant_maker
from services.planner.main import MIGRATIONS, create_app
from services.planner.settings import PlannerSettings

__all__ = ["FakeAuth", "Ledger", "Tenant", "next_id"]  # the tests import them from here

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


@pytest.fixture(scope="package")
async def fake_auth(nc: NATS) -> AsyncIterator[FakeAuth]:
    async with answering_auth(nc) as auth:
        yield auth


@pytest.fixture(scope="package")
async def billing(make_settings: MakeSettings, nc: NATS) -> AsyncIterator[Ledger]:
    async with running_billing(make_settings, nc) as ledger:
        yield ledger


# --- the app ---------------------------------------------------------------------------

@pytest.fixture(scope="package")
async def client(planner_settings: PlannerSettings, issuer: TestIssuer, fake_auth: FakeAuth,
                 billing: Ledger) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(planner_settings, keys_fetcher=issuer.fetcher())
    async with running_app(app) as c:
        yield c


@pytest.fixture
def make_tenant(factories: Factories, fake_auth: FakeAuth, billing: Ledger) -> MakeTenant:
    return tenant_maker(factories, fake_auth, billing, credits=1000)


@pytest.fixture
async def tenant(make_tenant: MakeTenant) -> Tenant:
    return await make_tenant()


async def add_keywords(client: httpx.AsyncClient, t: Tenant, *items: dict[str, Any],
                       sector_id: int | None = None) -> list[dict[str, Any]]:
    out = []
    for item in items:
        body = {"site_id": t.site_id, "sector_id": sector_id or t.sector_id, **item}
        r = await client.post(f"{API}/keywords/", json=body, headers=t.headers())
        assert r.status_code == 201, r.text
        out.append(r.json())
    return out


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


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


async def task_progress(nc: NATS) -> TaskProgress:
    buckets = await nats_kernel.ensure_platform(nc.jetstream(), "planner")
    return TaskProgress(buckets[nats_kernel.TASK_PROGRESS_BUCKET])


async def finished_task(progress: TaskProgress, task_id: str,
                        timeout: float = 40) -> dict[str, Any]:
    """The task's final progress document, with the phases seen on the way
    (`phases_seen`)."""
    seen: list[str] = []

    async def done() -> bool:
        doc = await progress.get(task_id)
        if doc and doc["meta"].get("phase") not in seen[-1:]:
            seen.append(doc["meta"]["phase"])
        return bool(doc and doc["state"] in ("SUCCESS", "FAILURE"))

    await eventually(done, timeout)
    doc = await progress.get(task_id)
    assert doc is not None
    doc["phases_seen"] = seen
    return doc


async def ai_task_log(db: Database, account_id: int, task_id: str) -> dict[str, Any]:
    async with db.session(TenantScope.account(account_id)) as s:
        row = (await s.execute(text("SELECT * FROM ai_task_logs WHERE task_id = :t"),
                               {"t": uuid.UUID(task_id)})).mappings().one()
        return dict(row)
