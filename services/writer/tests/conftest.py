"""Writer's tests run against its migrated database, real NATS, the app in-process and,
where jobs run, its real worker. Billing's real worker (`billing`, a `Ledger`) and auth's
commands answered by a fake (`fake_auth`) come from billing's and the kernel's test
helpers; files go to a temporary folder through the kernel's storage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NATS

from libs.common import nats as nats_kernel
from libs.common.db import Database, TenantScope
from libs.common.events import Event
from libs.common.provision import ServiceDatabase
from libs.common.repository import Visibility
from libs.common.testing.apps import running_app
from libs.common.testing.factories import Tenant, next_id
from libs.common.testing.fake_auth import FakeAuth, fake_auth_fixture
from libs.common.testing.plugin import DatabaseFactory, MakeSettings
from libs.common.testing.tokens import TestIssuer
from libs.common.uow import unit_of_work
from services.billing.testing import (
    Ledger,
    MakeTenant,
    billing_fixture,
    make_tenant_fixture,
    tenant_fixture,
)
from services.planner.testing import PlannerBook, answering_planner
from services.writer.main import create_app
from services.writer.models import DIRECTORY
from services.writer.repository import PlannerRefs
from services.writer.settings import MIGRATIONS, WriterSettings

# What the tests import from here, and the fixtures taken from the kernel and billing
# (pytest registers the fixtures a conftest holds).
__all__ = ["FakeAuth", "Ledger", "MakeTenant", "PlannerBook", "Tenant", "billing_fixture",
           "fake_auth_fixture", "make_tenant_fixture", "next_id", "tenant_fixture"]

API = "/api/v1/writer"


@pytest.fixture(scope="package")
def writer_db_info(make_database: DatabaseFactory) -> ServiceDatabase:
    return make_database("writer", MIGRATIONS)


@pytest.fixture(scope="package")
def settings(writer_db_info: ServiceDatabase, nats_url: str,
             tmp_path_factory: pytest.TempPathFactory) -> WriterSettings:
    return WriterSettings(
        database_url=writer_db_info.app_url, nats_url=nats_url, environment="test",
        command_timeout_seconds=2.0, job_ack_wait_seconds=2.0, outbound_allow_private=True,
        storage_dir=tmp_path_factory.mktemp("writer-files"),
        public_url="http://gateway.test")


@pytest.fixture(scope="package")
async def writer_db(writer_db_info: ServiceDatabase) -> AsyncIterator[Database]:
    db = Database(writer_db_info.app_url)
    yield db
    await db.dispose()


@pytest.fixture(scope="package")
async def client(settings: WriterSettings, issuer: TestIssuer, fake_auth: FakeAuth,
                 billing: Ledger) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(create_app(settings, keys_fetcher=issuer.fetcher())) as c:
        yield c


@pytest.fixture(scope="package")
async def planner(make_settings: MakeSettings, nc: NATS) -> AsyncIterator[PlannerBook]:
    """Planner's real `lookup_cluster` on its own database (what writer asks on a miss)."""
    async with answering_planner(make_settings, nc) as book:
        yield book


async def set_plan(db: Database, account_id: int, **limits: Any) -> None:
    """What auth's events would have told the directory: the account on a plan."""
    plan_id = next_id()
    async with unit_of_work(db, TenantScope.system()) as uow:
        directory = DIRECTORY.repository(uow.session)
        await directory.upsert_plan({"id": plan_id, "slug": f"plan-{plan_id}", **limits})
        await directory.upsert_account({"account_id": account_id, "plan_id": plan_id})


async def add_cluster(db: Database, t: Tenant, *, site_id: int | None = None,
                      sector_id: int | None = None, name: str = "Coffee grinders",
                      account_id: int | None = None) -> int:
    """A planner cluster of the tenant (its site and first sector unless given) in
    writer's read model, as planner's `cluster.created` event puts it there."""
    cluster_id, account = next_id(), account_id or t.account_id
    async with unit_of_work(db, TenantScope.account(account)) as uow:
        await PlannerRefs(uow.session, Visibility(account)).upsert_cluster({
            "id": cluster_id, "account_id": account, "site_id": site_id or t.site_id,
            "sector_id": sector_id or t.sector_id, "name": name})
    return cluster_id


async def create(client: httpx.AsyncClient, t: Tenant, path: str,
                 *bodies: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows made through the API (`path` under `/api/v1/`), each answered 201."""
    out = []
    for body in bodies:
        r = await client.post(f"/api/v1/{path}", json=body, headers=t.headers())
        assert r.status_code == 201, r.text
        out.append(r.json())
    return out


def in_sector(t: Tenant, **fields: Any) -> dict[str, Any]:
    """A body in the tenant's site and first sector."""
    return {"site_id": t.site_id, "sector_id": t.sector_id, **fields}


async def publish(nc: NATS, event: Event, *, msg_id: str | None = None) -> None:
    """An event as another service's outbox relay sends it."""
    js = nc.jetstream()
    await nats_kernel.ensure_event_stream(js, event.service)
    await js.publish(event.subject, event.model_dump_json().encode(),
                     headers={"Nats-Msg-Id": msg_id or str(event.id)})


def storage_root(settings: WriterSettings) -> Path:
    return settings.local_storage_dir()
