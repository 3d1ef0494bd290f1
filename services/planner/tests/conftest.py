"""Fixtures for planner's tests: a migrated database, the app in-process, the worker,
billing's real worker on its own migrated database (credits funded and the ledger read
through billing's service layer), and NATS responders standing in for auth's commands
(real request-reply over the real NATS, with the contracts' shapes)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from sqlalchemy import select, text
from sqlmodel import col

from libs.common import nats as nats_kernel
from libs.common.billing import BillingClient
from libs.common.db import Database, TenantScope
from libs.common.jobs import TaskProgress
from libs.common.problems import NotFound, ServiceUnavailable
from libs.common.provision import ServiceDatabase
from libs.common.testing.apps import running_app
from libs.common.testing.plugin import DatabaseFactory
from libs.common.testing.tokens import TestIssuer
from services.billing.main import MIGRATIONS as BILLING_MIGRATIONS
from services.billing.models import CreditBalance, CreditHold, CreditTransaction
from services.billing.pricing import add_month
from services.billing.service import BillingPolicy, BillingService
from services.billing.service import utcnow as billing_utcnow
from services.billing.settings import BillingSettings
from services.billing.worker import policy_from
from services.billing.worker import run as run_billing_worker
from services.planner.main import MIGRATIONS, create_app
from services.planner.settings import PlannerSettings

API = "/api/v1/planner"
_ids = itertools.count(random.randint(10_000, 20_000) * 1000)


def next_id() -> int:
    return next(_ids)


@pytest.fixture(scope="package")
def planner_db_info(make_database: DatabaseFactory) -> ServiceDatabase:
    return make_database("planner", MIGRATIONS)


@pytest.fixture(scope="package")
def planner_settings(planner_db_info: ServiceDatabase, nats_url: str) -> PlannerSettings:
    return PlannerSettings(
        database_url=planner_db_info.app_url, nats_url=nats_url, environment="test",
        command_timeout_seconds=2.0, job_ack_wait_seconds=2.0,
    )


@pytest.fixture(scope="package")
async def planner_db(planner_db_info: ServiceDatabase) -> AsyncIterator[Database]:
    db = Database(planner_db_info.app_url)
    yield db
    await db.dispose()


@pytest.fixture(scope="package")
def issuer() -> TestIssuer:
    return TestIssuer()


@pytest.fixture(scope="package")
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    conn = await nats_kernel.connect(nats_url, "planner-tests")
    yield conn
    await conn.drain()


# --- auth's commands ------------------------------------------------------------------

@dataclass
class FakeAuth:
    """Auth's directory as the commands expose it: sites, sectors, seed keywords, and each
    account's AI settings (`local` unless `set_openai` gave it an OpenAI integration)."""

    sites: dict[int, dict[str, Any]] = field(default_factory=dict)
    sectors: dict[int, dict[str, Any]] = field(default_factory=dict)
    seeds: dict[int, dict[str, Any]] = field(default_factory=dict)
    lookups: list[tuple[int, int]] = field(default_factory=list)
    openai: dict[int, dict[str, str]] = field(default_factory=dict)
    prompts: dict[int, dict[str, str]] = field(default_factory=dict)
    ai_requests: list[dict[str, Any]] = field(default_factory=list)
    # Accounts whose ai_settings requests go unanswered (auth down, as far as they know).
    silent: set[int] = field(default_factory=set)

    async def start(self, nc: NATS) -> list[Any]:
        return [await nc.subscribe("igny8.cmd.auth.lookup_site", queue="auth", cb=self._lookup),
                await nc.subscribe("igny8.cmd.auth.seed_keywords", queue="auth", cb=self._seeds),
                await nc.subscribe("igny8.cmd.auth.ai_settings", queue="auth",
                                   cb=self._ai_settings)]

    def set_openai(self, account_id: int, base_url: str, api_key: str, model: str,
                   **prompts: str) -> None:
        self.openai[account_id] = {"base_url": base_url, "api_key": api_key, "model": model}
        self.prompts[account_id] = dict(prompts)

    async def _ai_settings(self, msg: Msg) -> None:
        body = orjson.loads(msg.data)
        self.ai_requests.append(body)
        account_id = body["account_id"]
        if account_id in self.silent:
            return
        saved = self.prompts.get(account_id, {})
        types = body.get("prompt_types")
        prompts = {t: v for t, v in saved.items() if types is None or t in types}
        openai = self.openai.get(account_id)
        await msg.respond(orjson.dumps({"ok": True, "provider": "openai" if openai else "local",
                                        "openai": openai, "prompts": prompts}))

    async def _lookup(self, msg: Msg) -> None:
        body = orjson.loads(msg.data)
        self.lookups.append((body["account_id"], body["site_id"]))
        site = self.sites.get(body["site_id"])
        if site is None or site["account_id"] != body["account_id"]:
            await msg.respond(orjson.dumps({"ok": False, "code": "not_found",
                                            "error": "Site not found"}))
            return
        sectors = [s for s in self.sectors.values() if s["site_id"] == site["id"]]
        await msg.respond(orjson.dumps({"ok": True, "site": site, "sectors": sectors}))

    async def _seeds(self, msg: Msg) -> None:
        ids = orjson.loads(msg.data)["ids"]
        found = [self.seeds[i] for i in ids if i in self.seeds]
        await msg.respond(orjson.dumps({"ok": True, "seed_keywords": found}))

    def add_site(self, account_id: int, sectors: int = 2) -> tuple[int, list[int]]:
        site_id = next_id()
        self.sites[site_id] = {"id": site_id, "account_id": account_id, "name": f"Site {site_id}",
                               "slug": f"site-{site_id}", "url": "https://example.com",
                               "industry_id": 1, "industry_slug": "tech", "is_active": True}
        sector_ids = []
        for n in range(sectors):
            sector_id = next_id()
            self.sectors[sector_id] = {"id": sector_id, "account_id": account_id,
                                       "site_id": site_id, "name": f"Sector {n}",
                                       "slug": f"sector-{n}", "industry_sector_id": None,
                                       "is_active": True}
            sector_ids.append(sector_id)
        return site_id, sector_ids

    def add_seed(self, keyword: str, volume: int = 100, difficulty: int = 30,
                 intent: str = "commercial") -> int:
        seed_id = next_id()
        self.seeds[seed_id] = {"id": seed_id, "keyword": keyword, "industry_id": 1,
                               "industry_slug": "tech", "sector_id": 1, "sector_slug": "s",
                               "volume": volume, "difficulty": difficulty, "intent": intent,
                               "country": "US", "is_active": True}
        return seed_id


@pytest.fixture(scope="package")
async def fake_auth(nc: NATS) -> AsyncIterator[FakeAuth]:
    # Package-scoped and unsubscribed afterwards: another package's tests may run the
    # real auth responders on the same NATS, in the same queue group.
    auth = FakeAuth()
    subscriptions = await auth.start(nc)
    yield auth
    for sub in subscriptions:
        await sub.unsubscribe()


# --- billing ---------------------------------------------------------------------------

@pytest.fixture(scope="package")
def billing_settings(make_database: DatabaseFactory, nats_url: str) -> BillingSettings:
    info = make_database("billing", BILLING_MIGRATIONS)
    return BillingSettings(environment="test", database_url=info.app_url,
                           migration_database_url=info.owner_url, nats_url=nats_url)


@dataclass
class Ledger:
    """Billing's own tables, read and written through billing's service layer."""

    db: Database
    policy: BillingPolicy

    async def fund(self, account_id: int, credits: int) -> None:
        """Plan credits for a month, as billing grants them at signup."""
        now = billing_utcnow()
        async with self.db.session(TenantScope.system()) as session:
            await BillingService(session, self.policy).reset_plan_credits(
                account_id, credits, period_start=now, period_end=add_month(now),
                idempotency_key="signup", description="planner test credits")
            await session.commit()

    async def balance(self, account_id: int) -> CreditBalance:
        async with self.db.session(TenantScope.system()) as session:
            balance = await session.get(CreditBalance, account_id)
            assert balance is not None
            session.expunge_all()
            return balance

    async def spendable(self, account_id: int) -> int:
        balance = await self.balance(account_id)
        return balance.plan_credits + balance.purchased_credits

    async def holds(self, account_id: int | None = None) -> list[CreditHold]:
        query = select(CreditHold).order_by(col(CreditHold.id))
        if account_id is not None:
            query = query.where(col(CreditHold.account_id) == account_id)
        async with self.db.session(TenantScope.system()) as session:
            rows = list((await session.execute(query)).scalars().all())
            session.expunge_all()
            return rows

    async def debits(self, account_id: int) -> list[CreditTransaction]:
        async with self.db.session(TenantScope.system()) as session:
            rows = list((await session.execute(
                select(CreditTransaction)
                .where(col(CreditTransaction.account_id) == account_id,
                       col(CreditTransaction.transaction_type) == "deduction")
                .order_by(col(CreditTransaction.id)))).scalars().all())
            session.expunge_all()
            return rows


@pytest.fixture(scope="package")
async def billing(billing_settings: BillingSettings, nc: NATS) -> AsyncIterator[Ledger]:
    """Billing's real worker answering hold/capture/release on the test NATS. Package-scoped:
    its responders must not outlive planner's tests (billing's own tests run theirs)."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_billing_worker(stop, billing_settings))
    probe = BillingClient(nc, timeout=1.0)
    deadline = asyncio.get_running_loop().time() + 20
    while True:  # ready once a command gets billing's own answer
        assert not task.done(), task.exception() if task.done() else None
        try:
            await probe.release(0)
        except NotFound:
            break
        except ServiceUnavailable:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("billing's worker did not answer its commands")
        await asyncio.sleep(0.1)
    db = Database(billing_settings.database_url)
    yield Ledger(db, policy_from(billing_settings))
    await db.dispose()
    stop.set()
    await asyncio.wait_for(task, 20)


# --- the app ---------------------------------------------------------------------------

@pytest.fixture(scope="package")
async def client(planner_settings: PlannerSettings, issuer: TestIssuer, fake_auth: FakeAuth,
                 billing: Ledger) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(planner_settings, keys_fetcher=issuer.fetcher())
    async with running_app(app) as c:
        yield c


@dataclass
class Tenant:
    """An account with one site of two sectors, and tokens for its users."""

    account_id: int
    site_id: int
    sector_ids: list[int]
    issuer: TestIssuer
    user_id: int = field(default_factory=next_id)

    def headers(self, role: str = "owner", user_id: int | None = None,
                **extra: Any) -> dict[str, str]:
        return self.issuer.headers(user_id=user_id or self.user_id, account_id=self.account_id,
                                   role=role, **extra)

    @property
    def sector_id(self) -> int:
        return self.sector_ids[0]


MakeTenant = Callable[..., Awaitable[Tenant]]


@pytest.fixture
def make_tenant(issuer: TestIssuer, fake_auth: FakeAuth, billing: Ledger) -> MakeTenant:
    async def make(credits: int = 1000) -> Tenant:
        account_id = next_id()
        site_id, sector_ids = fake_auth.add_site(account_id)
        await billing.fund(account_id, credits)
        return Tenant(account_id, site_id, sector_ids, issuer)

    return make


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
