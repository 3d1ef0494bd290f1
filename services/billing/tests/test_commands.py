# ruff: noqa: PT018 - compound assertions read as one fact about a response
"""Credit commands over NATS against the real worker: no overdraw under concurrency,
idempotency by key, expiry of abandoned holds."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from nats.aio.client import Client as NATS
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from libs.common.billing import BillingClient, CaptureRequest
from libs.common.db import Database, TenantScope
from libs.common.problems import NotFound, PaymentRequired, ValidationFailed
from services.billing.models import CreditHold, CreditUsageLog
from services.billing.tests.conftest import (
    assert_ledger_consistent,
    fund,
    ledger_state,
    new_account_id,
)

pytestmark = pytest.mark.usefixtures("worker")


async def test_concurrent_holds_and_captures_never_overdraw(db: Database, nc: NATS) -> None:
    account = new_account_id()
    # 200 callers each want 10 credits (clustering); only 730 credits exist: 73 can succeed.
    await fund(db, account, plan=500, purchased=230)
    client = BillingClient(nc, timeout=20)

    async def one(i: int) -> str:
        try:
            hold = await client.hold(account, "clustering", idempotency_key=f"c-{account}-{i}")
        except PaymentRequired:
            return "refused"
        await asyncio.sleep(0)
        result = await client.capture(hold.hold_id, units=1, model="local-test",
                                      cost_usd="0.001", related_object_type="cluster",
                                      related_object_id=i)
        assert result.credits_charged == 10
        return "charged"

    outcomes = await asyncio.gather(*(one(i) for i in range(200)))
    assert outcomes.count("charged") == 73
    assert outcomes.count("refused") == 127
    balance = await assert_ledger_consistent(db, account)
    assert balance.plan_credits == 0 and balance.purchased_credits == 0 and balance.held == 0
    _, entries = await ledger_state(db, account)
    assert sum(1 for e in entries if e.transaction_type == "deduction") == 73


async def test_same_command_twice_charges_once(db: Database, nc: NATS) -> None:
    account = new_account_id()
    await fund(db, account, plan=100)
    client = BillingClient(nc)
    key = f"job-{uuid.uuid4()}"
    first = await client.hold(account, "content_generation", units=950, idempotency_key=key)
    again = await client.hold(account, "content_generation", units=950, idempotency_key=key)
    assert first.amount == 10  # 1 credit per 100 words, rounded up
    assert again.hold_id == first.hold_id and again.replayed
    captured = await client.capture(first.hold_id, units=720, model="local-draft")
    replay = await client.capture(first.hold_id, units=720, model="local-draft")
    assert captured.credits_charged == 8 and captured.credits_released == 2
    assert replay.replayed and replay.credits_charged == 8
    assert replay.transaction_id == captured.transaction_id
    released = await client.release(first.hold_id)
    assert released.credits_released == 0 and released.status == "captured"
    balance = await assert_ledger_consistent(db, account)
    assert balance.plan_credits == 92 and balance.held == 0
    async with db.session(TenantScope.system()) as s:
        logs = (await s.execute(select(func.count()).select_from(CreditUsageLog)
                                .where(CreditUsageLog.account_id == account))).scalar_one()
        holds = (await s.execute(select(func.count()).select_from(CreditHold)
                                 .where(CreditHold.account_id == account))).scalar_one()
    assert logs == 1 and holds == 1

    refund = await client.refund(first.hold_id, idempotency_key="r1", credits=3, reason="failed")
    refund_again = await client.refund(first.hold_id, idempotency_key="r1", credits=3)
    assert refund.credits_refunded == 3 and refund_again.replayed
    with pytest.raises(ValidationFailed) as too_many:
        await client.refund(first.hold_id, idempotency_key="r2", credits=6)  # only 5 left
    assert too_many.value.errors == {"credits": ["Ensure this value is less than or equal to 5."]}
    balance = await assert_ledger_consistent(db, account)
    assert balance.plan_credits == 95


async def test_hold_reserves_and_release_returns(db: Database, nc: NATS) -> None:
    account = new_account_id()
    await fund(db, account, plan=20, purchased=10)
    client = BillingClient(nc)
    hold = await client.hold(account, "image_generation", units=5)  # 4 per image
    assert hold.amount == 20 and hold.available_after == 10
    with pytest.raises(PaymentRequired):
        await client.hold(account, "image_generation", units=3)  # 12 > 10 spendable
    # Out of bounds, in DRF's words (ADR 0037), as every refusal the bus answers.
    for kw, field, message in (
            ({"ttl_seconds": 6 * 3600 + 1}, "ttl_seconds",
             "Ensure this value is less than or equal to 21600."),
            ({"ttl_seconds": -5}, "ttl_seconds",
             "Ensure this value is greater than or equal to 1."),
            ({"units": 0}, "units", "Ensure this value is greater than or equal to 1.")):
        with pytest.raises(ValidationFailed) as bad:
            await client.hold(account, "image_generation", **({"units": 1} | kw))
        assert bad.value.errors == {field: [message]}
    await client.release(hold.hold_id)
    again = await client.hold(account, "image_generation", units=3)
    result = await client.capture(again.hold_id)  # no actuals: the estimate is charged
    assert result.credits_charged == 12
    balance = await assert_ledger_consistent(db, account)
    assert (balance.plan_credits, balance.purchased_credits, balance.held) == (8, 10, 0)


async def test_a_batch_of_holds_is_placed_all_or_none_and_replayed_by_key(
        db: Database, nc: NATS) -> None:
    account = new_account_id()
    await fund(db, account, plan=30)
    client = BillingClient(nc)
    keys = {f"job-{account}:{i}": 1 for i in range(5)}  # 4 credits per image
    batch = await client.hold_batch(account, "image_generation", keys)
    assert [h.amount for h in batch.holds] == [4] * 5 and batch.available_after == 10
    assert len({h.hold_id for h in batch.holds}) == 5
    again = await client.hold_batch(account, "image_generation", keys)
    assert [h.hold_id for h in again.holds] == [h.hold_id for h in batch.holds]
    assert all(h.replayed for h in again.holds) and again.available_after is None
    # 3 more images need 12 credits, 10 are spendable: none is placed.
    with pytest.raises(PaymentRequired):
        await client.hold_batch(account, "image_generation",
                                {f"more-{account}:{i}": 1 for i in range(3)})
    balance, _ = await ledger_state(db, account)
    assert balance.held == 20
    # Replays and new holds together: only the new ones reserve.
    mixed = await client.hold_batch(account, "image_generation",
                                    {**dict(list(keys.items())[:2]), f"new-{account}": 2})
    assert [h.replayed for h in mixed.holds] == [True, True, False]
    assert mixed.holds[2].amount == 8 and mixed.available_after == 2
    with pytest.raises(ValidationFailed) as unknown:
        await client.hold_batch(account, "teleportation", {f"t-{account}": 1})
    assert "operation_type" in (unknown.value.errors or {})
    for h in batch.holds:
        await client.capture(h.hold_id)
    await client.release(mixed.holds[2].hold_id)
    balance = await assert_ledger_consistent(db, account)
    assert (balance.plan_credits, balance.held) == (10, 0)
    async with db.session(TenantScope.system()) as s:
        holds = (await s.execute(select(func.count()).select_from(CreditHold)
                                 .where(CreditHold.account_id == account))).scalar_one()
    assert holds == 6


async def test_a_batch_of_captures_applies_each_once_and_reports_the_refused(
        db: Database, nc: NATS) -> None:
    account = new_account_id()
    await fund(db, account, plan=40)
    client = BillingClient(nc)
    batch = await client.hold_batch(account, "image_generation",
                                    {f"cap-{account}:{i}": 1 for i in range(3)})
    # A hold that does not exist: its capture is refused, the others apply.
    holds = [h.hold_id for h in batch.holds] + [999_999_999]
    asked = [CaptureRequest(hold_id=h, account_id=account, units=1, model="local-test",
                            related_object_type="ai_task", related_object_id="job")
             for h in holds]
    done = await client.capture_batch(asked)
    assert [r.hold_id for r in done.results] == holds[:3]
    assert [r.credits_charged for r in done.results] == [4, 4, 4]
    assert [f.hold_id for f in done.failed] == [holds[3]]
    again = await client.capture_batch(asked[:3])
    assert all(r.replayed for r in again.results) and not again.failed
    assert [r.transaction_id for r in again.results] == [r.transaction_id for r in done.results]
    with pytest.raises(ValidationFailed):
        await client.capture_batch([asked[0], asked[0]])
    balance = await assert_ledger_consistent(db, account)
    assert (balance.plan_credits, balance.held) == (28, 0)
    _, entries = await ledger_state(db, account)
    assert sum(1 for e in entries if e.transaction_type == "deduction") == 3


async def test_bad_commands_are_refused_and_change_nothing(db: Database, nc: NATS) -> None:
    account = new_account_id()
    await fund(db, account, plan=50)
    client = BillingClient(nc)
    with pytest.raises(ValidationFailed) as unknown:
        await client.hold(account, "teleportation", units=1)
    assert "operation_type" in (unknown.value.errors or {})
    with pytest.raises(ValidationFailed) as negative:
        await client.hold(account, "clustering", amount=-5)
    assert "amount" in (negative.value.errors or {})
    with pytest.raises(ValidationFailed) as words:
        await client.hold(account, "content_generation")
    assert "units" in (words.value.errors or {})
    with pytest.raises(NotFound):
        await client.capture(999_999_999)
    other = new_account_id()
    await fund(db, other, plan=50)
    foreign = await client.hold(other, "linking")
    with pytest.raises(NotFound):
        await client.capture(foreign.hold_id, account_id=account)
    balance = await assert_ledger_consistent(db, account)
    assert (balance.plan_credits, balance.held) == (50, 0)


async def test_abandoned_hold_is_released_after_its_ttl(db: Database, nc: NATS) -> None:
    account = new_account_id()
    await fund(db, account, plan=30)
    client = BillingClient(nc)
    expired_before = REGISTRY.get_sample_value("igny8_credit_holds_expired_total")
    assert expired_before is not None  # 0 from the start: the first one is an increase
    hold = await client.hold(account, "clustering", units=2, ttl_seconds=1)  # worker "dies"
    balance, _ = await ledger_state(db, account)
    assert balance.held == 20
    for _ in range(60):
        await asyncio.sleep(0.1)
        balance, _ = await ledger_state(db, account)
        if balance.held == 0:
            break
    assert balance.held == 0
    async with db.session(TenantScope.system()) as s:
        row = await s.get(CreditHold, hold.hold_id)
        s.expunge_all()
    assert row is not None and row.status == "expired"
    # Counted once its batch committed (IGNY8CreditHoldsExpired); other tests' holds may
    # have expired meanwhile.
    for _ in range(50):
        expired = REGISTRY.get_sample_value("igny8_credit_holds_expired_total") or 0.0
        if expired >= expired_before + 1:
            break
        await asyncio.sleep(0.1)
    assert expired >= expired_before + 1
    # The 30 credits are spendable again; a late capture cannot charge beyond what exists.
    late = await client.capture(hold.hold_id, units=5)
    assert late.credits_charged == 30
    balance = await assert_ledger_consistent(db, account)
    assert balance.plan_credits == 0


async def test_token_priced_operation(db: Database, nc: NATS) -> None:
    from services.billing.service import BillingService
    from services.billing.service.accounts import StaffBilling
    from services.billing.tests.conftest import in_tx

    account = new_account_id()
    await fund(db, account, plan=100)

    async def to_tokens(svc: BillingService) -> None:
        await StaffBilling(svc.session, svc.policy).update_cost_config(
            "linking", {"unit": "per_tokens", "tokens_per_credit": 1000, "min_credits": 2},
            by_user=1)

    async def back(svc: BillingService) -> None:
        await StaffBilling(svc.session, svc.policy).update_cost_config(
            "linking", {"unit": "per_request", "tokens_per_credit": None, "min_credits": 0,
                        "credits_cost": 1}, by_user=1)

    await in_tx(db, to_tokens)
    try:
        client = BillingClient(nc)
        hold = await client.hold(account, "linking", units=4000)  # estimate: 4000 tokens
        assert hold.amount == 4
        done = await client.capture(hold.hold_id, tokens_input=2500, tokens_output=2600,
                                    model="gpt-test", cost_usd="0.0123")
        assert done.credits_charged == 6  # ceil(5100 / 1000), beyond the estimate but covered
        small = await client.hold(account, "linking", units=10)
        assert small.amount == 2  # minimum
    finally:
        await in_tx(db, back)
    await assert_ledger_consistent(db, account)
