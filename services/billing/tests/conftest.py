# ruff: noqa: PT018 - compound assertions read as one fact about a response
"""Billing against real PostgreSQL and NATS: a migrated database, the in-process app,
the real worker (command responders, consumer, sweeper, scheduler) in the test loop.
Tokens (`issuer`), the NATS connection (`nc`) and ids come from the kernel's plugin."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NATS
from sqlalchemy import select

from libs.common.db import Database, TenantScope
from libs.common.testing.apps import running_app
from libs.common.testing.factories import next_id
from libs.common.testing.plugin import MakeSettings
from libs.common.testing.tokens import TestIssuer
from libs.common.uow import unit_of_work
from services.billing.main import MIGRATIONS, create_app
from services.billing.models import CreditBalance, CreditTransaction
from services.billing.service import BillingPolicy, BillingService, utcnow
from services.billing.settings import BillingSettings
from services.billing.testing import wait_until_answering
from services.billing.worker import run as run_worker

new_account_id = next_id


@pytest.fixture(scope="package")
def settings(make_settings: MakeSettings) -> BillingSettings:
    return make_settings(BillingSettings, MIGRATIONS, hold_sweep_interval_seconds=0.2,
                         renewal_interval_seconds=0.5, low_balance_threshold=50,
                         worker_db_pool_size=30)


@pytest.fixture(scope="package")
async def db(settings: BillingSettings) -> AsyncIterator[Database]:
    database = Database(settings.database_url, pool_size=20, max_overflow=20)
    yield database
    await database.dispose()


@pytest.fixture(scope="package")
async def client(settings: BillingSettings, issuer: TestIssuer) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(create_app(settings, keys_fetcher=issuer.fetcher())) as c:
        yield c


@pytest.fixture(scope="package")
async def worker(settings: BillingSettings, nc: NATS) -> AsyncIterator[None]:
    """Package-scoped: billing's responders must not outlive billing's tests, or they
    would answer other packages' commands on the same NATS."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(stop, settings))
    await wait_until_answering(nc, task)
    yield
    stop.set()
    await asyncio.wait_for(task, 20)


def policy() -> BillingPolicy:
    return BillingPolicy(low_balance_threshold=50)


async def in_tx(db: Database, fn: Callable[[BillingService], Awaitable[Any]]) -> Any:
    async with unit_of_work(db, TenantScope.system()) as uow:
        return await fn(BillingService(uow.session, policy()))


async def fund(db: Database, account_id: int, *, plan: int = 0, purchased: int = 0) -> None:
    """Give an account plan credits (a period that runs for a month) and purchased credits."""
    from services.billing.pricing import add_month

    now = utcnow()

    async def go(svc: BillingService) -> None:
        await svc.reset_plan_credits(account_id, plan, period_start=now, period_end=add_month(now),
                                     idempotency_key="signup", description="test plan credits")
        if purchased:
            await svc.add_credits(account_id, purchased, transaction_type="purchase",
                                  description="test purchase")

    await in_tx(db, go)


async def ledger_state(db: Database,
                       account_id: int) -> tuple[CreditBalance, list[CreditTransaction]]:
    async with db.session(TenantScope.system()) as session:
        balance = await session.get(CreditBalance, account_id)
        entries = list((await session.execute(
            select(CreditTransaction).where(CreditTransaction.account_id == account_id)
            .order_by(CreditTransaction.id))).scalars().all())
        session.expunge_all()
    assert balance is not None
    return balance, entries


async def assert_ledger_consistent(db: Database, account_id: int) -> CreditBalance:
    balance, entries = await ledger_state(db, account_id)
    running = 0
    for entry in entries:
        running += entry.amount
        assert entry.balance_after == running, f"broken chain at ledger entry {entry.id}"
        assert entry.plan_balance_after + entry.purchased_balance_after == entry.balance_after
    assert running == balance.plan_credits + balance.purchased_credits
    assert balance.plan_credits >= 0 and balance.purchased_credits >= 0 and balance.held >= 0
    return balance
