"""Billing for other services' tests: billing's real worker on its own migrated database
answering hold, capture, release and refund on the test NATS, and a `Ledger` that funds
accounts and reads what was charged. Other services' tests use this instead of billing's
internals: the package that needs it imports the fixtures into its conftest,

    from libs.common.testing.fake_auth import fake_auth_fixture
    from services.billing.testing import billing_fixture, make_tenant_fixture, tenant_fixture

(`make_tenant` funds each new tenant with `TENANT_CREDITS`; a package that wants more
declares its own). Billing's responders must not outlive that package, which is why these
are not a plugin: another package's tests may run their own billing worker, on another
database, in the same queue group."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from sqlalchemy import select
from sqlmodel import col

from libs.common.billing import BillingClient
from libs.common.db import Database, TenantScope
from libs.common.problems import NotFound, ServiceUnavailable
from libs.common.testing.factories import Factories, Tenant
from libs.common.testing.fake_auth import FakeAuth
from libs.common.testing.plugin import MakeSettings
from libs.common.uow import unit_of_work
from services.billing.main import MIGRATIONS
from services.billing.models import (
    CreditBalance,
    CreditHold,
    CreditTransaction,
    CreditUsageLog,
    TransactionType,
)
from services.billing.pricing import add_month
from services.billing.service import BillingPolicy, BillingService, utcnow
from services.billing.settings import BillingSettings
from services.billing.worker import policy_from, run


@dataclass
class Ledger:
    """Billing's books for one test package: fund accounts, read balances and charges."""

    db: Database
    policy: BillingPolicy

    async def fund(self, account_id: int, credits: int = 0, *, purchased: int = 0) -> None:
        """Plan credits for a month, as billing grants them at signup, and purchased ones."""
        now = utcnow()
        async with unit_of_work(self.db, TenantScope.system()) as uow:
            svc = BillingService(uow.session, self.policy)
            await svc.reset_plan_credits(account_id, credits, period_start=now,
                                         period_end=add_month(now), idempotency_key="signup",
                                         description="test plan credits")
            if purchased:
                await svc.add_credits(account_id, purchased,
                                      transaction_type=TransactionType.PURCHASE,
                                      description="test purchase")

    async def adjust(self, account_id: int, amount: int) -> None:
        """An admin's adjustment: credits added (> 0) or removed (< 0, at most what is
        spendable), as `POST .../adjust-credits/` makes it."""
        async with unit_of_work(self.db, TenantScope.system()) as uow:
            await BillingService(uow.session, self.policy).adjust(
                account_id, amount, "test adjustment", 0, None)

    async def balance(self, account_id: int) -> CreditBalance:
        balance = await self._read(lambda s: s.get(CreditBalance, account_id))
        assert balance is not None, f"account {account_id} has no balance"
        return balance

    async def spendable(self, account_id: int) -> int:
        balance = await self.balance(account_id)
        return balance.plan_credits + balance.purchased_credits

    async def holds(self, account_id: int | None = None) -> list[CreditHold]:
        query = select(CreditHold).order_by(col(CreditHold.id))
        if account_id is not None:
            query = query.where(col(CreditHold.account_id) == account_id)
        return await self._rows(query)

    async def debits(self, account_id: int) -> list[CreditTransaction]:
        return await self._rows(
            select(CreditTransaction)
            .where(col(CreditTransaction.account_id) == account_id,
                   col(CreditTransaction.transaction_type) == TransactionType.DEDUCTION)
            .order_by(col(CreditTransaction.id)))

    async def usage_logs(self, account_id: int) -> list[CreditUsageLog]:
        return await self._rows(select(CreditUsageLog)
                                .where(col(CreditUsageLog.account_id) == account_id)
                                .order_by(col(CreditUsageLog.id)))

    async def _rows(self, query: Any) -> list[Any]:
        return await self._read(lambda s: _scalars(s, query))

    async def _read(self, read: Any) -> Any:
        async with self.db.session(TenantScope.system(), read_only=True) as session:
            found = await read(session)
            session.expunge_all()
            return found


async def _scalars(session: Any, query: Any) -> list[Any]:
    return list((await session.execute(query)).scalars().all())


async def wait_until_answering(nc: NATS, worker: asyncio.Task[None],
                               within: float = 20.0) -> None:
    """Until a command gets billing's own answer (a release of no hold: not found)."""
    probe = BillingClient(nc, timeout=1.0)
    deadline = asyncio.get_running_loop().time() + within
    while True:
        assert not worker.done(), worker.exception() if worker.done() else None
        try:
            await probe.release(0)
            return
        except NotFound:
            return
        except ServiceUnavailable:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("billing's worker did not answer its commands")
        await asyncio.sleep(0.1)


@asynccontextmanager
async def running_billing(make_settings: MakeSettings, nc: NATS) -> AsyncIterator[Ledger]:
    settings = make_settings(BillingSettings, MIGRATIONS)
    stop = asyncio.Event()
    worker = asyncio.create_task(run(stop, settings))
    await wait_until_answering(nc, worker)
    db = Database(settings.database_url)
    try:
        yield Ledger(db, policy_from(settings))
    finally:
        await db.dispose()
        stop.set()
        await asyncio.wait_for(worker, 20)


MakeTenant = Callable[..., Awaitable[Tenant]]


def tenant_maker(factories: Factories, auth: FakeAuth, ledger: Ledger, *,
                 credits: int) -> MakeTenant:
    """The tests' tenants: a new account with a site and its sectors in fake auth, funded
    with `credits` (or the given number) in billing."""
    async def make(credits: int = credits) -> Tenant:
        tenant = factories.tenant()
        tenant.site_id, tenant.sector_ids = auth.add_site(tenant.account_id)
        await ledger.fund(tenant.account_id, credits)
        return tenant

    return make


# --- fixtures, for the conftest of a package that pays through billing -------------------
# (`name=`: a conftest's own fixtures take `billing` and `tenant` as arguments, which would
# shadow the imported functions.)

TENANT_CREDITS = 1000


@pytest.fixture(scope="package", name="billing")
async def billing_fixture(make_settings: MakeSettings, nc: NATS) -> AsyncIterator[Ledger]:
    async with running_billing(make_settings, nc) as ledger:
        yield ledger


@pytest.fixture(name="make_tenant")
def make_tenant_fixture(factories: Factories, fake_auth: FakeAuth, billing: Ledger) -> MakeTenant:
    return tenant_maker(factories, fake_auth, billing, credits=TENANT_CREDITS)


@pytest.fixture(name="tenant")
async def tenant_fixture(make_tenant: MakeTenant) -> Tenant:
    return await make_tenant()
