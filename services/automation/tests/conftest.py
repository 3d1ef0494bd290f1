"""Automation's tests run against its migrated database, real NATS, its app in-process, and
the real services it drives: planner's app, planner's and writer's workers as their own
processes (`planner_worker`, `writer_worker`: the fault tests kill them; their jobs on
the offline engines), billing's real worker (`billing`, a `Ledger`); auth's commands are
answered by the kernel's fake (`fake_auth`). Automation's own worker is started by the
tests that need it (`automation_worker`), so a run no worker advances can be inspected."""

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
from libs.common.testing.factories import Factories, Tenant
from libs.common.testing.fake_auth import FakeAuth, fake_auth_fixture
from libs.common.testing.plugin import DatabaseFactory
from libs.common.testing.tokens import TestIssuer
from libs.common.testing.workers import WorkerProcess, running_worker, worker_process
from services.automation.main import create_app
from services.automation.settings import MIGRATIONS, AutomationSettings
from services.billing.testing import (
    Ledger,
    MakeTenant,
    billing_fixture,
    tenant_fixture,
    tenant_maker,
)
from services.planner.main import MIGRATIONS as PLANNER_MIGRATIONS
from services.planner.main import create_app as create_planner
from services.planner.settings import PlannerSettings
from services.writer.settings import MIGRATIONS as WRITER_MIGRATIONS
from services.writer.settings import WriterSettings

# What the tests import from here, and the fixtures taken from the kernel and billing
# (pytest registers the fixtures a conftest holds); `make_tenant` is this package's own
# (more credits: a run pays for every stage).
__all__ = ["MakeTenant", "billing_fixture", "fake_auth_fixture", "tenant_fixture"]

API = "/api/v1/automation"


@pytest.fixture(scope="package")
def automation_db_info(make_database: DatabaseFactory) -> ServiceDatabase:
    return make_database("automation", MIGRATIONS)


@pytest.fixture(scope="package")
def settings(automation_db_info: ServiceDatabase, nats_url: str) -> AutomationSettings:
    return AutomationSettings(database_url=automation_db_info.app_url, nats_url=nats_url,
                              environment="test", command_timeout_seconds=5.0,
                              tick_seconds=0.2, schedule_check_seconds=0.5,
                              step_retry_seconds=0.5)


@pytest.fixture(scope="package")
async def automation_db(automation_db_info: ServiceDatabase) -> AsyncIterator[Database]:
    db = Database(automation_db_info.app_url)
    yield db
    await db.dispose()


@pytest.fixture(scope="package")
def planner_settings(make_database: DatabaseFactory, nats_url: str) -> PlannerSettings:
    info = make_database("planner", PLANNER_MIGRATIONS)
    return PlannerSettings(database_url=info.app_url, nats_url=nats_url, environment="test",
                           command_timeout_seconds=5.0, job_ack_wait_seconds=5.0,
                           outbound_allow_private=True)


@pytest.fixture(scope="package")
def writer_settings(make_database: DatabaseFactory, nats_url: str,
                    tmp_path_factory: pytest.TempPathFactory) -> WriterSettings:
    info = make_database("writer", WRITER_MIGRATIONS)
    return WriterSettings(database_url=info.app_url, nats_url=nats_url, environment="test",
                          command_timeout_seconds=5.0, job_ack_wait_seconds=5.0,
                          outbound_allow_private=True,
                          storage_dir=tmp_path_factory.mktemp("writer-files"),
                          public_url="http://gateway.test")


@pytest.fixture(scope="package")
async def planner_worker(planner_settings: PlannerSettings, fake_auth: FakeAuth,
                         billing: Ledger, tmp_path_factory: pytest.TempPathFactory
                         ) -> AsyncIterator[WorkerProcess]:
    """`python -m services.planner.worker`, its own process (a test may kill it; it is
    running again when the test ends)."""
    log = tmp_path_factory.mktemp("logs") / "planner-worker.log"
    async with worker_process("services.planner.worker", planner_settings, log) as worker:
        yield worker


@pytest.fixture(scope="package")
async def writer_worker(writer_settings: WriterSettings, fake_auth: FakeAuth,
                        billing: Ledger, tmp_path_factory: pytest.TempPathFactory
                        ) -> AsyncIterator[WorkerProcess]:
    """`python -m services.writer.worker` (its jobs, its pipeline commands, its
    consumers), its own process like planner's."""
    log = tmp_path_factory.mktemp("logs") / "writer-worker.log"
    async with worker_process("services.writer.worker", writer_settings, log) as worker:
        yield worker


@pytest.fixture(scope="package")
async def planner(planner_settings: PlannerSettings, issuer: TestIssuer,
                  planner_worker: WorkerProcess) -> AsyncIterator[httpx.AsyncClient]:
    """Planner's app (to add keywords as a user does), its worker running."""
    async with running_app(create_planner(planner_settings, keys_fetcher=issuer.fetcher())) as c:
        yield c


@pytest.fixture(scope="package")
def writer(writer_settings: WriterSettings, writer_worker: WorkerProcess) -> WriterSettings:
    """Writer's settings, its worker running."""
    return writer_settings


@pytest.fixture(scope="package")
async def client(settings: AutomationSettings, issuer: TestIssuer, planner: httpx.AsyncClient,
                 writer: WriterSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(create_app(settings, keys_fetcher=issuer.fetcher())) as c:
        yield c


@pytest.fixture
def make_tenant(factories: Factories, fake_auth: FakeAuth, billing: Ledger) -> MakeTenant:
    return tenant_maker(factories, fake_auth, billing, credits=5000)


@contextlib.asynccontextmanager
async def automation_worker(settings: AutomationSettings,
                            **kw: Any) -> AsyncIterator[dict[str, Any]]:
    from services.automation.worker import run

    async def start(stop: asyncio.Event, s: AutomationSettings) -> None:
        await run(stop, s, **kw)

    async with running_worker(start, settings, ready_within=60) as health:
        yield health


async def add_keywords(planner: httpx.AsyncClient, t: Tenant, words: list[str],
                       sector_id: int | None = None) -> list[int]:
    ids = []
    for word in words:
        body = {"site_id": t.site_id, "sector_id": sector_id or t.sector_id, "keyword": word,
                "volume": 100, "difficulty": 20}
        r = await planner.post("/api/v1/planner/keywords/", json=body, headers=t.headers())
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids

