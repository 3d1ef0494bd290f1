"""Auth's tests run against real PostgreSQL and NATS (the kernel's fixtures) and the real
app in-process. One migrated database and one app per session; tests isolate themselves
by registering their own accounts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from libs.common import nats as nats_kernel
from libs.common.db import Database, TenantScope
from libs.common.models import outbox
from libs.common.provision import ServiceDatabase
from libs.common.runtime import WorkerContext
from libs.common.testing.apps import running_app
from libs.common.testing.plugin import DatabaseFactory, NatsIdentity
from services.auth import worker
from services.auth.main import MIGRATIONS_DIR, create_app
from services.auth.seed import seed_platform
from services.auth.settings import AuthSettings

DATA_DIR = Path(__file__).parent / "data"
PASSWORD = "correct-horse-battery"


@pytest.fixture(scope="session")
def auth_db_info(make_database: DatabaseFactory) -> ServiceDatabase:
    return make_database("auth", MIGRATIONS_DIR)


@pytest.fixture(scope="session")
def settings(auth_db_info: ServiceDatabase, nats_identity: NatsIdentity) -> AuthSettings:
    return AuthSettings(
        environment="test",
        database_url=auth_db_info.app_url,
        **nats_identity("auth"),
        login_max_failures_per_account=3,
        login_max_failures_per_address=6,
        secret_key="test-secret-key-for-auth",
        key_activation_delay_seconds=1.0,
        # The fake providers listen on 127.0.0.1 (the development setting `igny8 up` uses).
        outbound_allow_private=True,
    )


@pytest.fixture(scope="session")
async def db(auth_db_info: ServiceDatabase) -> AsyncIterator[Database]:
    database = Database(auth_db_info.app_url, pool_size=2, max_overflow=2)
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
async def seeded(db: Database) -> dict[str, int]:
    return await seed_platform(db, data_dir=DATA_DIR)


@pytest.fixture(scope="session")
async def client(
    settings: AuthSettings, seeded: dict[str, int]
) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(create_app(settings)) as http:
        yield http


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


class Tenant:
    """A registered account and its owner's session, with helpers to act as them."""

    def __init__(self, client: httpx.AsyncClient, email: str, login: dict[str, Any]) -> None:
        self.client = client
        self.email = email
        self.login = login
        self.user = login["user"]
        self.account_id: int = login["user"]["account"]["id"]
        self.user_id: int = login["user"]["id"]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.login['access']}"}

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        return await self.client.get(url, headers=self.headers, **kw)

    async def post(self, url: str, **kw: Any) -> httpx.Response:
        return await self.client.post(url, headers=self.headers, **kw)

    async def patch(self, url: str, **kw: Any) -> httpx.Response:
        return await self.client.patch(url, headers=self.headers, **kw)

    async def put(self, url: str, **kw: Any) -> httpx.Response:
        return await self.client.put(url, headers=self.headers, **kw)

    async def delete(self, url: str, **kw: Any) -> httpx.Response:
        return await self.client.delete(url, headers=self.headers, **kw)


async def register(
    client: httpx.AsyncClient, email: str | None = None, password: str = PASSWORD
) -> Tenant:
    email = email or unique_email("owner")
    resp = await client.post(
        "/api/v1/auth/register/",
        json={"email": email, "password": password, "password_confirm": password},
    )
    assert resp.status_code == 201, resp.text
    return await login_as(client, email, password)


async def login_as(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> Tenant:
    resp = await client.post(
        "/api/v1/auth/login/",
        json={"email": email, "password": password},
        headers={"X-Forwarded-For": f"10.9.{uuid.uuid4().int % 250}.1"},
    )
    assert resp.status_code == 200, resp.text
    return Tenant(client, email, resp.json()["data"])


async def add_member(owner: Tenant, role: str) -> Tenant:
    email = unique_email(role)
    resp = await owner.post(
        "/api/v1/auth/users/", json={"email": email, "password": PASSWORD, "role": role}
    )
    assert resp.status_code == 201, resp.text
    return await login_as(owner.client, email)


@pytest.fixture
async def owner(client: httpx.AsyncClient) -> Tenant:
    return await register(client)


@pytest.fixture
async def other(client: httpx.AsyncClient) -> Tenant:
    return await register(client)


async def outbox_events(db: Database, event_type: str, **match: Any) -> list[dict[str, Any]]:
    async with db.session(TenantScope.system()) as session:
        rows = (
            await session.execute(
                select(outbox.c.payload).where(outbox.c.payload["type"].astext == event_type)
            )
        ).scalars()
        return [p for p in rows if all(p["data"].get(k) == v for k, v in match.items())]


async def set_plan(db: Database, tenant: Tenant, slug: str) -> None:
    """Move a tenant to another plan directly (what platform staff or billing would do)."""
    from sqlalchemy import update

    from services.auth.models import Account, Plan

    async with db.session(TenantScope.system()) as session:
        plan_id = (await session.execute(select(Plan.id).where(Plan.slug == slug))).scalar_one()
        await session.execute(
            update(Account).where(Account.id == tenant.account_id).values(plan_id=plan_id)
        )
        await session.commit()


@pytest.fixture
async def worker_ctx(settings: AuthSettings, db: Database) -> AsyncIterator[WorkerContext]:
    """Auth's command responders, as its worker runs them, for one test."""
    nc = await nats_kernel.connect_as(settings, "auth", "auth-worker-test")
    ctx = WorkerContext(settings, db, nc, nc.jetstream(), {})
    task = asyncio.create_task(worker.serve_commands(ctx))
    await asyncio.sleep(0.2)
    yield ctx
    ctx.stop.set()
    await task
    await nc.close()
