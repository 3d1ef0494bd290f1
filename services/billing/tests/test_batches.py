# ruff: noqa: PT018 - compound assertions read as one fact about a response
"""Holds and captures that arrive together run as one batch (one statement per step): each
command still gets its own answer, in order, and the ledger stays exact."""

from __future__ import annotations

import asyncio

import orjson
from nats.aio.client import Client as NATS

from libs.common import billing as wire
from libs.common.billing import CaptureRequest, HoldRequest
from libs.common.commands import INTERNAL, CommandServer, rounds
from libs.common.db import Database, TenantScope
from libs.common.problems import PaymentRequired, ValidationFailed
from libs.common.testing.checks import waiting_for_a_lock
from services.billing.service import BillingPolicy, BillingService
from services.billing.tests.conftest import (
    assert_ledger_consistent,
    fund,
    in_tx,
    ledger_state,
    new_account_id,
)
from services.billing.worker import BillingCommands


def test_rounds_keep_each_key_once_per_batch_and_in_order() -> None:
    items = [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("a", 3), ("b", 2)]
    assert rounds(items, lambda item: item[0]) == [
        [("a", 1), ("b", 1), ("c", 1)], [("a", 2), ("b", 2)], [("a", 3)]]


def _hold(account: int, key: str, operation: str = "clustering", **extra: object) -> bytes:
    return orjson.dumps({"account_id": account, "operation_type": operation,
                         "idempotency_key": key, **extra})


async def test_one_batch_answers_every_command_in_order(db: Database, nc: NATS) -> None:
    rich, poor, other = new_account_id(), new_account_id(), new_account_id()
    await fund(db, rich, plan=100)
    await fund(db, poor, plan=5)
    await fund(db, other, plan=100)
    responder = CommandServer(nc, BillingCommands(db, BillingPolicy()).handlers())
    replies = [orjson.loads(r) for r in await responder.answer(wire.HOLD, [
        _hold(rich, "r1"),
        b"{not json",
        _hold(poor, "p1"),                       # clustering costs 10: 402
        _hold(other, "o1", "teleportation"),     # unknown operation: 400
        _hold(rich, "r2"),                       # same account: runs in the next round
        _hold(rich, "r1"),                       # the first one's key: a replay
        _hold(other, "o2", amount=-1),
    ])]
    assert [r["ok"] for r in replies] == [True, False, False, False, True, True, False]
    assert replies[1]["code"] == ValidationFailed.code
    assert replies[2]["code"] == PaymentRequired.code and "5 available" in replies[2]["error"]
    assert replies[3]["code"] == ValidationFailed.code and "operation_type" in replies[3]["errors"]
    assert replies[6]["code"] == ValidationFailed.code and "amount" in replies[6]["errors"]
    assert replies[5]["replayed"] and replies[5]["hold_id"] == replies[0]["hold_id"]
    assert replies[4]["hold_id"] != replies[0]["hold_id"]
    assert replies[4]["available_after"] == 80

    rich_balance = await assert_ledger_consistent(db, rich)
    assert rich_balance.held == 20
    for account, plan in ((poor, 5), (other, 100)):
        balance = await assert_ledger_consistent(db, account)
        assert (balance.plan_credits, balance.held) == (plan, 0)


async def test_captures_of_one_account_in_one_batch_chain_the_ledger(db: Database) -> None:
    account = new_account_id()
    await fund(db, account, plan=15, purchased=100)
    holds = []
    for key in ("a", "b", "c"):
        holds.append(await in_tx(db, lambda svc, key=key: svc.hold(HoldRequest(
            account_id=account, operation_type="clustering", idempotency_key=key))))

    results = await in_tx(db, lambda svc: svc.capture_many([
        CaptureRequest(hold_id=holds[0].hold_id, units=1, model="m"),
        CaptureRequest(hold_id=holds[1].hold_id, units=2, model="m"),  # 20 credits
        CaptureRequest(hold_id=holds[2].hold_id, units=1, model="m"),
    ]))
    assert [r.credits_charged for r in results] == [10, 20, 10]
    assert [r.balance_after for r in results] == [105, 85, 75]
    balance = await assert_ledger_consistent(db, account)  # every balance_after chains
    assert (balance.plan_credits, balance.purchased_credits, balance.held) == (0, 75, 0)
    _, entries = await ledger_state(db, account)
    debits = [e for e in entries if e.transaction_type == "deduction"]
    assert [(e.plan_balance_after, e.purchased_balance_after) for e in debits] == [
        (5, 100), (0, 85), (0, 75)]


async def test_ledger_ids_follow_the_order_captures_change_the_balance(db: Database) -> None:
    """Captures reach a batch in any order; the ledger reads in id order. Ids drawn while
    locking came in the lock's row order, not the batch's, and broke the chain."""
    account = new_account_id()
    await fund(db, account, plan=100)
    holds = [await in_tx(db, lambda svc, key=key: svc.hold(HoldRequest(
        account_id=account, operation_type="clustering", idempotency_key=key)))
        for key in ("first", "second", "third")]

    results = await in_tx(db, lambda svc: svc.capture_many([
        CaptureRequest(hold_id=hold.hold_id, units=1, model="m") for hold in reversed(holds)]))
    assert [r.balance_after for r in results] == [90, 80, 70]
    assert [r.transaction_id for r in results] == sorted(r.transaction_id for r in results)
    await assert_ledger_consistent(db, account)


async def test_a_capture_queued_behind_another_writer_chains_after_it(db: Database) -> None:
    """A capture that waits for a balance another transaction holds chains after that
    transaction's ledger entry, in id order too."""
    account = new_account_id()
    await fund(db, account, plan=100)
    hold = await in_tx(db, lambda svc: svc.hold(HoldRequest(
        account_id=account, operation_type="clustering", idempotency_key="queued")))
    async with db.session(TenantScope.system()) as first:
        writer = BillingService(first, BillingPolicy())
        await writer.repo.get_balance(account, lock=True)
        capture = asyncio.create_task(in_tx(db, lambda svc: svc.capture(
            CaptureRequest(hold_id=hold.hold_id, units=1, model="m"))))
        await waiting_for_a_lock(db, capture)
        await writer.add_credits(account, 5, transaction_type="purchase", description="top-up")
        await first.commit()
    assert (await capture).balance_after == 95
    await assert_ledger_consistent(db, account)


async def test_a_bad_command_cannot_fail_the_rest_of_its_batch(db: Database, nc: NATS) -> None:
    accounts = [new_account_id() for _ in range(3)]
    holds = []
    for account in accounts:
        await fund(db, account, plan=50)
        holds.append(await in_tx(db, lambda svc, account=account: svc.hold(HoldRequest(
            account_id=account, operation_type="clustering", idempotency_key="k"))))
    responder = CommandServer(nc, BillingCommands(db, BillingPolicy()).handlers())
    # The middle capture names a related object longer than its column: the batch's write
    # fails as a whole, and the batch runs again one command at a time.
    replies = [orjson.loads(r) for r in await responder.answer(wire.CAPTURE, [
        orjson.dumps({"hold_id": holds[0].hold_id, "units": 1}),
        orjson.dumps({"hold_id": holds[1].hold_id, "units": 1,
                      "related_object_id": "x" * 200}),
        orjson.dumps({"hold_id": holds[2].hold_id, "units": 1}),
    ])]
    assert [r["ok"] for r in replies] == [True, False, True]
    assert replies[1]["code"] == INTERNAL
    for account, spent in zip(accounts, (10, 0, 10), strict=True):
        balance = await assert_ledger_consistent(db, account)
        assert balance.plan_credits == 50 - spent
    assert (await assert_ledger_consistent(db, accounts[1])).held == 10


async def test_a_single_hold_is_a_batch_of_one(db: Database) -> None:
    account = new_account_id()
    await fund(db, account, plan=10)

    async def hold(svc: BillingService) -> object:
        return await svc.hold_many([HoldRequest(account_id=account, operation_type="clustering",
                                                idempotency_key="only")])

    (result,) = await in_tx(db, hold)
    assert result.amount == 10 and result.available_after == 0
