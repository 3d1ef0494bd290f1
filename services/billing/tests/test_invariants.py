# ruff: noqa: PT018 - compound assertions read as one fact about a response
"""A Hypothesis state machine of holds, captures, releases, refunds, purchases and
renewals against the real database: the ledger always sums to the balance, every
`balance_after` chains, nothing goes negative, and `held` equals the open holds."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from libs.common.billing import CaptureRequest, HoldRequest, RefundRequest, ReleaseRequest
from libs.common.db import Database, TenantScope
from libs.common.problems import PaymentRequired, ValidationFailed
from services.billing.models import CreditBalance, CreditHold, CreditTransaction
from services.billing.service import BillingPolicy, BillingService, utcnow
from services.billing.tests.conftest import new_account_id

OPERATIONS = ["clustering", "idea_generation", "image_generation", "linking"]


class Ledger(RuleBasedStateMachine):
    """Runs each rule in its own committed transaction on a private event loop thread."""

    db: Database
    loop: asyncio.AbstractEventLoop

    holds = Bundle("holds")
    captured = Bundle("captured")

    def run(self, fn: Any) -> Any:
        async def go() -> Any:
            async with self.db.session(TenantScope.system()) as session:
                result = await fn(BillingService(session, BillingPolicy(low_balance_threshold=5)))
                await session.commit()
                return result

        return self.loop.run_until_complete(go())

    @initialize(plan=st.integers(0, 60), purchased=st.integers(0, 60))
    def open_account(self, plan: int, purchased: int) -> None:
        self.account = new_account_id()
        now = utcnow()

        async def go(svc: BillingService) -> None:
            await svc.reset_plan_credits(self.account, plan, period_start=now,
                                         period_end=now + timedelta(days=30),
                                         idempotency_key="signup", description="start")
            if purchased:
                await svc.add_credits(self.account, purchased, transaction_type="purchase",
                                      description="start")

        self.run(go)

    @rule(target=holds, operation=st.sampled_from(OPERATIONS), units=st.integers(1, 4))
    def hold(self, operation: str, units: int) -> Any:
        request = HoldRequest(account_id=self.account, operation_type=operation, units=units,
                              idempotency_key=uuid.uuid4().hex)
        try:
            result = self.run(lambda svc: svc.hold(request))
        except PaymentRequired:
            return None
        again = self.run(lambda svc: svc.hold(request))  # same key: same hold, no new credits
        assert again.hold_id == result.hold_id
        return result.hold_id

    @rule(target=captured, hold=consumes(holds), units=st.none() | st.integers(0, 6))
    def capture(self, hold: int | None, units: int | None) -> Any:
        if hold is None:
            return None
        request = CaptureRequest(hold_id=hold, units=units, model="local-test")
        first = self.run(lambda svc: svc.capture(request))
        second = self.run(lambda svc: svc.capture(request))
        assert second.credits_charged == first.credits_charged and second.replayed
        return hold

    @rule(hold=consumes(holds))
    def release(self, hold: int | None) -> None:
        if hold is not None:
            self.run(lambda svc: svc.release(ReleaseRequest(hold_id=hold)))

    @rule(hold=captured, credits=st.integers(1, 12))
    def refund(self, hold: int | None, credits: int) -> None:
        if hold is None:
            return
        request = RefundRequest(hold_id=hold, credits=credits, idempotency_key=uuid.uuid4().hex)
        # More than is left to refund is refused and changes nothing.
        with contextlib.suppress(ValidationFailed):
            self.run(lambda svc: svc.refund(request))

    @rule(credits=st.integers(1, 40))
    def purchase(self, credits: int) -> None:
        self.run(lambda svc: svc.add_credits(self.account, credits, transaction_type="purchase",
                                             description="package"))

    @rule(included=st.integers(0, 60))
    def renewal(self, included: int) -> None:
        async def go(svc: BillingService) -> None:
            await svc.repo.set_balance(self.account, period_end=utcnow() - timedelta(seconds=1),
                                       plan_credits_per_month=included)
            await svc.renew_due_periods()

        self.run(go)

    @invariant()
    def ledger_matches_balance(self) -> None:
        if not hasattr(self, "account"):
            return

        async def check(svc: BillingService) -> None:
            session = svc.session
            balance = await session.get(CreditBalance, self.account)
            assert balance is not None
            amounts = (await session.execute(
                select(CreditTransaction.amount, CreditTransaction.balance_after)
                .where(CreditTransaction.account_id == self.account)
                .order_by(CreditTransaction.id))).all()
            running = 0
            for amount, after in amounts:
                running += amount
                assert after == running
            assert running == balance.plan_credits + balance.purchased_credits
            assert min(balance.plan_credits, balance.purchased_credits, balance.held) >= 0
            open_holds = (await session.execute(
                select(func.coalesce(func.sum(CreditHold.amount), 0))
                .where(CreditHold.account_id == self.account, CreditHold.status == "held")
            )).scalar_one()
            assert balance.held == open_holds
            assert balance.held <= balance.plan_credits + balance.purchased_credits

        self.run(check)


def test_ledger_invariants_hold_under_random_operations(settings_for_machine: Any) -> None:
    run_state_machine_as_test(Ledger, settings=settings(
        max_examples=20, stateful_step_count=30, deadline=None,
        suppress_health_check=list(HealthCheck)))


@pytest.fixture
def settings_for_machine(db: Database) -> Any:
    """The machine runs synchronously, so it gets its own loop and engine."""
    loop = asyncio.new_event_loop()
    Ledger.loop = loop
    Ledger.db = Database(db.url, pool_size=2, max_overflow=0)
    yield
    loop.run_until_complete(Ledger.db.dispose())
    loop.close()
