# ruff: noqa: PT018 - compound assertions read as one fact about a response
"""Auth's events build billing's read models and grant plan credits; renewals reset plan
credits once per period even with several schedulers."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from nats.aio.client import Client as NATS
from sqlalchemy import select

from libs.common import nats as nats_kernel
from libs.common.db import Database, TenantScope
from libs.common.events import Event
from services.billing.models import Account, CreditTransaction
from services.billing.service import utcnow
from services.billing.tests.conftest import (
    assert_ledger_consistent,
    fund,
    ledger_state,
    new_account_id,
)
from services.billing.worker import renew_periods_once

pytestmark = pytest.mark.usefixtures("worker")


async def _publish(nc: NATS, event: Event) -> None:
    js = nc.jetstream()
    await nats_kernel.ensure_event_stream(js, "auth")
    await js.publish(event.subject, event.model_dump_json().encode(),
                     headers={"Nats-Msg-Id": str(event.id)})


async def _wait(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_new_account_gets_its_plan_credits_once(db: Database, nc: NATS) -> None:
    account, plan_id = new_account_id(), new_account_id()
    await _publish(nc, Event(type="auth.plan.created", data={
        "id": plan_id, "name": "Starter", "slug": f"starter-{plan_id}", "price": "29.00",
        "billing_cycle": "monthly", "included_credits": 500, "max_users": 3, "max_sites": 2,
        "max_sectors_per_site": 5, "max_keywords": 1000, "max_author_profiles": 2,
        "features": ["ai"], "is_active": True}))
    created = Event(type="auth.account.created", account_id=account, data={
        "account_id": account, "name": "Acme", "slug": f"acme-{account}", "status": "active",
        "owner_user_id": 1, "plan_id": plan_id, "plan_slug": f"starter-{plan_id}"})
    await _publish(nc, created)
    now = utcnow()
    subscription = Event(type="auth.subscription.created", account_id=account, data={
        "id": account, "account_id": account, "plan_id": plan_id,
        "plan_slug": f"starter-{plan_id}", "included_credits": 500, "status": "active",
        "current_period_start": now.isoformat(),
        "current_period_end": (now + timedelta(days=30)).isoformat()})
    await _publish(nc, subscription)
    # Redelivery beyond JetStream's de-duplication: a new message id, the same event.
    js = nc.jetstream()
    await js.publish(created.subject, created.model_dump_json().encode(),
                     headers={"Nats-Msg-Id": f"again-{created.id}"})

    async def funded() -> bool:
        async with db.session(TenantScope.system()) as s:
            return await s.get(Account, account) is not None and len(
                (await s.execute(select(CreditTransaction.id).where(
                    CreditTransaction.account_id == account))).all()) >= 1

    await _wait(funded)
    await asyncio.sleep(0.5)  # let the subscription and the duplicate arrive
    balance = await assert_ledger_consistent(db, account)
    _, entries = await ledger_state(db, account)
    assert [e.transaction_type for e in entries] == ["subscription"]
    assert balance.plan_credits == 500 and balance.plan_credits_per_month == 500
    assert balance.period_end is not None
    assert abs(balance.period_end - (now + timedelta(days=30))) < timedelta(seconds=1)


async def test_renewal_resets_plan_credits_once_per_period_with_two_schedulers(
    db: Database, settings
) -> None:  # type: ignore[no-untyped-def]
    from services.billing.tests.conftest import in_tx, policy

    account = new_account_id()
    await fund(db, account, plan=300, purchased=40)

    async def spend_and_expire(svc) -> None:  # type: ignore[no-untyped-def]
        await svc.debit_adjustment(account, 250, description="spent", reference=None,
                                   idempotency_key=None, meta={})
        await svc.repo.set_balance(account, period_end=utcnow() - timedelta(seconds=1))

    await in_tx(db, spend_and_expire)
    replica_a = Database(settings.database_url, pool_size=3)
    replica_b = Database(settings.database_url, pool_size=3)
    try:
        for _ in range(3):
            await asyncio.gather(renew_periods_once(replica_a, policy()),
                                 renew_periods_once(replica_b, policy()))
    finally:
        await replica_a.dispose()
        await replica_b.dispose()
    balance = await assert_ledger_consistent(db, account)
    _, entries = await ledger_state(db, account)
    renewals = [e for e in entries if (e.idempotency_key or "").startswith("period:")]
    assert len(renewals) == 1
    # Plan credits back to 300 (the 50 left lapse and are replaced), purchased untouched.
    assert (balance.plan_credits, balance.purchased_credits) == (300, 0 + 40 - 0)
    assert balance.period_end is not None and balance.period_end > utcnow()
