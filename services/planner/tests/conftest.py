"""Fixtures for planner's tests: a migrated database, the app in-process, the worker, and
NATS responders standing in for auth's and billing's commands (real request-reply over
the real NATS, with the contracts' shapes and billing's idempotency rules)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from libs.common import billing as billing_contract
from libs.common import nats as nats_kernel
from libs.common.db import Database
from libs.common.provision import ServiceDatabase
from libs.common.testing.apps import running_app
from libs.common.testing.plugin import DatabaseFactory
from libs.common.testing.tokens import TestIssuer
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
    """Auth's directory as the commands expose it: sites, sectors, seed keywords."""

    sites: dict[int, dict[str, Any]] = field(default_factory=dict)
    sectors: dict[int, dict[str, Any]] = field(default_factory=dict)
    seeds: dict[int, dict[str, Any]] = field(default_factory=dict)
    lookups: list[tuple[int, int]] = field(default_factory=list)

    async def start(self, nc: NATS) -> list[Any]:
        return [await nc.subscribe("igny8.cmd.auth.lookup_site", queue="auth", cb=self._lookup),
                await nc.subscribe("igny8.cmd.auth.seed_keywords", queue="auth", cb=self._seeds)]

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


# --- billing's commands ---------------------------------------------------------------

COSTS = {"clustering": 10, "idea_generation": 2}


@dataclass
class FakeBilling:
    """Billing's hold/capture/release with its rules: a hold per idempotency key, a capture
    or release once per hold, 402 (`insufficient_credits`) when the balance cannot cover
    the estimate. Used until billing's own worker can run inside planner's tests."""

    balances: dict[int, int] = field(default_factory=dict)
    holds: dict[int, dict[str, Any]] = field(default_factory=dict)
    by_key: dict[tuple[int, str], int] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _next: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def start(self, nc: NATS) -> list[Any]:
        return [await nc.subscribe(billing_contract.HOLD, queue="billing", cb=self._hold),
                await nc.subscribe(billing_contract.CAPTURE, queue="billing", cb=self._capture),
                await nc.subscribe(billing_contract.RELEASE, queue="billing", cb=self._release)]

    def held(self, account_id: int) -> int:
        return sum(h["amount"] for h in self.holds.values()
                   if h["account_id"] == account_id and h["status"] == "held")

    def captures(self, account_id: int) -> list[dict[str, Any]]:
        return [h for h in self.holds.values()
                if h["account_id"] == account_id and h["status"] == "captured"]

    async def _hold(self, msg: Msg) -> None:
        req = billing_contract.HoldRequest.model_validate_json(msg.data)
        self.requests.append(("hold", req.model_dump()))
        key = (req.account_id, req.idempotency_key)
        if key in self.by_key:
            hold = self.holds[self.by_key[key]]
            await msg.respond(billing_contract.ok(self._hold_result(hold, replayed=True)))
            return
        amount = req.amount if req.amount is not None else COSTS[req.operation_type] * (
            req.units or 1)
        available = self.balances.get(req.account_id, 0) - self.held(req.account_id)
        if amount > available:
            await msg.respond(billing_contract.failure(
                billing_contract.INSUFFICIENT,
                f"Insufficient credits: {amount} needed, {available} available."))
            return
        hold = {"hold_id": next(self._next), "account_id": req.account_id,
                "operation_type": req.operation_type, "amount": amount, "status": "held",
                "charged": 0}
        self.holds[hold["hold_id"]] = hold
        self.by_key[key] = hold["hold_id"]
        await msg.respond(billing_contract.ok(self._hold_result(hold)))

    def _hold_result(self, hold: dict[str, Any], replayed: bool = False) -> Any:
        return billing_contract.HoldResult(
            hold_id=hold["hold_id"], account_id=hold["account_id"],
            operation_type=hold["operation_type"], amount=hold["amount"], status=hold["status"],
            expires_at=datetime.now(UTC) + timedelta(minutes=30), replayed=replayed)

    async def _capture(self, msg: Msg) -> None:
        req = billing_contract.CaptureRequest.model_validate_json(msg.data)
        self.requests.append(("capture", req.model_dump()))
        hold = self.holds[req.hold_id]
        replayed = hold["status"] == "captured"
        if not replayed:
            charged = COSTS[hold["operation_type"]] * (req.units if req.units is not None else 1)
            charged = min(charged, hold["amount"])
            hold.update(status="captured", charged=charged)
            self.balances[hold["account_id"]] -= charged
        await msg.respond(billing_contract.ok(billing_contract.CaptureResult(
            hold_id=hold["hold_id"], account_id=hold["account_id"],
            operation_type=hold["operation_type"], credits_charged=hold["charged"],
            credits_released=hold["amount"] - hold["charged"], transaction_id=None,
            usage_log_id=None, balance_after=self.balances[hold["account_id"]],
            replayed=replayed)))

    async def _release(self, msg: Msg) -> None:
        req = billing_contract.ReleaseRequest.model_validate_json(msg.data)
        self.requests.append(("release", req.model_dump()))
        hold = self.holds[req.hold_id]
        if hold["status"] == "held":
            hold["status"] = "released"
        await msg.respond(billing_contract.ok(billing_contract.ReleaseResult(
            hold_id=hold["hold_id"], account_id=hold["account_id"],
            credits_released=hold["amount"] if hold["status"] == "released" else 0,
            status=hold["status"])))


@pytest.fixture(scope="package")
async def fake_billing(nc: NATS) -> AsyncIterator[FakeBilling]:
    billing = FakeBilling()
    subscriptions = await billing.start(nc)
    yield billing
    for sub in subscriptions:
        await sub.unsubscribe()


# --- the app ---------------------------------------------------------------------------

@pytest.fixture(scope="package")
async def client(planner_settings: PlannerSettings, issuer: TestIssuer, fake_auth: FakeAuth,
                 fake_billing: FakeBilling) -> AsyncIterator[httpx.AsyncClient]:
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


@pytest.fixture
def make_tenant(issuer: TestIssuer, fake_auth: FakeAuth,
                fake_billing: FakeBilling) -> Callable[..., Tenant]:
    def make(credits: int = 1000) -> Tenant:
        account_id = next_id()
        site_id, sector_ids = fake_auth.add_site(account_id)
        fake_billing.balances[account_id] = credits
        return Tenant(account_id, site_id, sector_ids, issuer)

    return make


@pytest.fixture
def tenant(make_tenant: Callable[..., Tenant]) -> Tenant:
    return make_tenant()


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
