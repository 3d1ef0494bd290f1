"""Billing's credits: balances, holds and captures, the ledger, auth's facts (plans,
accounts, subscriptions), periods, paid invoices and adjustments.

No HTTP and no commits: callers (endpoints, command responders, consumers, schedulers)
own the transaction. Every credit movement locks the account's balance row or changes it
with a conditional update, appends one ledger entry carrying the balance after it, and
queues its event in the outbox of the same transaction.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common import outbox
from libs.common.auth import BLOCKED_ACCOUNT_STATUSES
from libs.common.billing import (
    CaptureRequest,
    CaptureResult,
    HoldBatchRequest,
    HoldBatchResult,
    HoldRequest,
    HoldResult,
    Quote,
    QuoteRequest,
    QuoteResult,
    RefundRequest,
    RefundResult,
    ReleaseRequest,
    ReleaseResult,
)
from libs.common.events import Event, utcnow
from libs.common.messages import max_value, min_value
from libs.common.metrics import CREDITS_CAPTURED, CREDITS_HELD
from libs.common.problems import (
    DomainError,
    NotFound,
    PaymentRequired,
    ValidationFailed,
)
from services.billing import events as ev
from services.billing.models import (
    Account,
    HoldStatus,
    Invoice,
    Plan,
    Subscription,
    TransactionType,
)
from services.billing.pricing import PricingError, add_month, price
from services.billing.repository import BalanceRow, BillingRepository, CaptureWrite, KeyTaken

log = logging.getLogger(__name__)

# Balances and ledger amounts are PostgreSQL `integer` columns: a change that would take
# an account past this is refused (400 on `amount`), never a database error (issue 13).
MAX_BALANCE = 2**31 - 1

T = TypeVar("T")

INACTIVE_ACCOUNT = frozenset(BLOCKED_ACCOUNT_STATUSES)
INACTIVE_SUBSCRIPTION = {"cancelled", "canceled", "expired", "inactive"}
PAYMENT_METHOD_TYPES = ("bank_transfer", "manual", "stripe", "paypal")


class HoldRace(Exception):
    """Another request with the same idempotency key committed first: retry to read it."""


@dataclass(frozen=True)
class BillingPolicy:
    low_balance_threshold: int = 100
    default_hold_ttl_seconds: int = 900
    max_hold_ttl_seconds: int = 6 * 3600
    currency: str = "USD"


def month_start(now: datetime) -> datetime:
    return datetime(now.year, now.month, 1, tzinfo=UTC)


class BillingService:
    def __init__(self, session: AsyncSession, policy: BillingPolicy | None = None) -> None:
        self.session = session
        self.repo = BillingRepository(session)
        self.policy = policy or BillingPolicy()
        # Set when a command queued an event without waking the outbox relay (captures do
        # not NOTIFY in their transaction, ADR 0013): the caller wakes it after committing,
        # or the relay's poll finds the event.
        self.relay_wake_needed = False

    async def publish(self, event_type: str, tenant: int | None, /, **data: Any) -> None:
        await outbox.add(self.session, Event(type=event_type, account_id=tenant, data=data))

    # ===================================================================== credits core

    async def _ensure_balance(self, account_id: int, *, plan_credits_per_month: int = 0,
                              period_start: datetime | None = None,
                              period_end: datetime | None = None) -> BalanceRow:
        await self.repo.create_balance(account_id, plan_credits_per_month=plan_credits_per_month,
                                       period_start=period_start, period_end=period_end)
        balance = await self.repo.get_balance(account_id, lock=True)
        assert balance is not None
        return balance

    async def _after_change(self, before: BalanceRow, after: BalanceRow) -> BalanceRow:
        """Track the low-balance flag; fire `balance.low` when the spendable balance crosses
        below the threshold (once per crossing, not on every debit)."""
        low = after.available < self.policy.low_balance_threshold
        if low and not before.low_notified:
            await self.publish(ev.BALANCE_LOW, after.account_id, account_id=after.account_id,
                                credits=after.total, available=after.available,
                                threshold=self.policy.low_balance_threshold)
        return replace(after, low_notified=low)

    async def _write_balance(self, before: BalanceRow, after: BalanceRow,
                             **extra: Any) -> BalanceRow:
        if after.total > MAX_BALANCE:  # the ledger's `balance_after` is an `integer` too
            raise ValidationFailed.field(
                "amount", f"The balance would exceed {MAX_BALANCE} credits, the most an "
                          f"account can hold ({before.total} now).")
        after = await self._after_change(before, after)
        await self.repo.set_balance(
            after.account_id, plan_credits=after.plan_credits,
            purchased_credits=after.purchased_credits, held=after.held,
            low_notified=after.low_notified, **extra,
        )
        return after

    async def add_credits(self, account_id: int, amount: int, *, transaction_type: str,
                          description: str, reference: str | None = None,
                          idempotency_key: str | None = None,
                          meta: dict[str, Any] | None = None) -> int | None:
        """Add purchased (never-expiring) credits. Returns the ledger id, or None when the
        idempotency key was already used."""
        if amount <= 0:
            raise ValidationFailed.field("amount", "Must be a positive number of credits.")
        if idempotency_key and await self.repo.transaction_by_key(account_id, idempotency_key):
            return None
        before = await self._ensure_balance(account_id)
        after = await self._write_balance(
            before, replace(before, purchased_credits=before.purchased_credits + amount))
        tx_id = await self.repo.add_transaction(
            account_id=account_id, transaction_type=transaction_type, amount=amount,
            balance=after, description=description, reference=reference, meta=meta or {},
            idempotency_key=idempotency_key)
        await self.publish(ev.CREDITS_ADDED, account_id, account_id=account_id, amount=amount,
                            transaction_type=transaction_type, transaction_id=tx_id,
                            balance_after=after.total, reference=reference)
        return tx_id

    async def debit_adjustment(self, account_id: int, amount: int, *, description: str,
                               reference: str | None, idempotency_key: str | None,
                               meta: dict[str, Any]) -> int | None:
        """Remove credits (plan credits first); never below what holds reserve."""
        if idempotency_key and await self.repo.transaction_by_key(account_id, idempotency_key):
            return None
        before = await self._ensure_balance(account_id)
        if amount > before.available:
            raise ValidationFailed.field(
                "amount", f"Cannot remove {amount} credits: only {before.available} are spendable.")
        from_plan = min(amount, before.plan_credits)
        after = await self._write_balance(before, replace(
            before, plan_credits=before.plan_credits - from_plan,
            purchased_credits=before.purchased_credits - (amount - from_plan)))
        tx_id = await self.repo.add_transaction(
            account_id=account_id, transaction_type=TransactionType.ADJUSTMENT, amount=-amount,
            balance=after,
            description=description, reference=reference, meta=meta,
            idempotency_key=idempotency_key)
        await self.publish(ev.CREDITS_DEBITED, account_id, account_id=account_id, amount=amount,
                            transaction_type=TransactionType.ADJUSTMENT, transaction_id=tx_id,
                            balance_after=after.total, operation_type=None)
        return tx_id

    async def reset_plan_credits(self, account_id: int, included: int, *, period_start: datetime,
                                 period_end: datetime, idempotency_key: str, description: str,
                                 reference: str | None = None) -> int | None:
        """Set the plan pool to `included` for a new period (unused plan credits lapse).
        Once per key: a period's reset never happens twice."""
        if await self.repo.transaction_by_key(account_id, idempotency_key):
            return None
        before = await self._ensure_balance(account_id, plan_credits_per_month=included)
        # Credits that open holds reserve stay covered: a hold placed before the boundary
        # was promised them (its capture or release settles them).
        plan_credits = max(included, before.held - before.purchased_credits)
        amount = plan_credits - before.plan_credits
        after = await self._write_balance(
            before, replace(before, plan_credits=plan_credits),
            plan_credits_per_month=included, period_start=period_start, period_end=period_end)
        tx_id = await self.repo.add_transaction(
            account_id=account_id, transaction_type=TransactionType.SUBSCRIPTION, amount=amount,
            balance=after,
            description=description, reference=reference,
            meta={"included_credits": included, "lapsed": before.plan_credits,
                  "period_start": period_start.isoformat(), "period_end": period_end.isoformat()},
            idempotency_key=idempotency_key)
        event_type = ev.CREDITS_ADDED if amount >= 0 else ev.CREDITS_DEBITED
        await self.publish(event_type, account_id, account_id=account_id, amount=abs(amount),
                            transaction_type=TransactionType.SUBSCRIPTION, transaction_id=tx_id,
                            balance_after=after.total, plan_credits=plan_credits,
                            period_start=period_start.isoformat(),
                            period_end=period_end.isoformat())
        return tx_id

    # ======================================================================= commands

    async def hold(self, req: HoldRequest) -> HoldResult:
        """Reserve credits for an operation (a batch of one, see `hold_many`)."""
        return _one(await self.hold_many([req]))

    async def hold_many(self, requests: Sequence[HoldRequest]) -> list[HoldResult | DomainError]:
        """Reserve credits for operations of distinct accounts: for each request, in order,
        its hold or the error it earns (402 when the balance cannot cover it). One read
        finds replays and pricing; one statement reserves and inserts every new hold.
        Neither needs the other's transaction (the reservations are conditional and die
        with a duplicate key), so the command responder runs them as two autocommitted
        statements. Raises `HoldRace` when another request under one of the keys
        committed first: run the batch again to read it."""
        if len({r.account_id for r in requests}) != len(requests):
            raise ValueError("hold_many takes one request per account")
        outcomes: list[HoldResult | DomainError | None] = [None] * len(requests)
        found = await self.repo.hold_lookups(
            [(r.account_id, r.idempotency_key, r.operation_type) for r in requests])
        reservations: list[tuple[int, str, int, str, datetime]] = []
        reserving: list[int] = []  # indexes of the requests in `reservations`
        now = utcnow()
        for i, (req, row) in enumerate(zip(requests, found, strict=True)):
            if row.id is not None:
                outcomes[i] = _hold_result(row, replayed=True)
                continue
            try:
                amount, ttl = self._hold_terms(req, row)
            except DomainError as exc:
                outcomes[i] = exc
                continue
            reservations.append((req.account_id, req.operation_type, amount,
                                 req.idempotency_key, now + timedelta(seconds=ttl)))
            reserving.append(i)
        if reservations:
            try:
                reserved = await self.repo.reserve_holds(reservations)
            except KeyTaken as exc:
                raise HoldRace(str(exc)) from exc
            for i, row in zip(reserving, reserved, strict=True):
                req = requests[i]
                if row.id is None:
                    outcomes[i] = PaymentRequired(
                        f"Insufficient credits: {req.operation_type} needs {row.amount}, "
                        f"{row.available} available.")
                    continue
                CREDITS_HELD.labels(req.operation_type).inc(row.amount)
                outcomes[i] = _hold_result(row, available_after=row.available)
        return [o for o in outcomes if o is not None]

    async def hold_batch(self, req: HoldBatchRequest) -> HoldBatchResult:
        """Reserve one hold per item of one account and operation, all or none: one read
        finds replays and pricing, one statement reserves the new holds' sum and inserts
        them (402, nothing placed, when the spendable balance cannot cover it). Items whose
        key holds already are answered as they are. A job's per-item holds were a round
        each (`hold_many` changes an account once per statement). Raises `HoldRace` when
        another request under one of the keys committed first."""
        keys = [item.idempotency_key for item in req.items]
        if len(set(keys)) != len(keys):
            raise ValidationFailed.field("items", "Idempotency keys must be distinct.")
        found = await self.repo.hold_lookups(
            [(req.account_id, key, req.operation_type) for key in keys])
        holds: list[HoldResult | None] = []
        new: list[tuple[int, int, str, datetime]] = []  # (index, amount, key, expiry)
        now = utcnow()
        for i, (item, row) in enumerate(zip(req.items, found, strict=True)):
            if row.id is not None:
                holds.append(_hold_result(row, replayed=True))
                continue
            amount, ttl = self._hold_terms(HoldRequest(
                account_id=req.account_id, operation_type=req.operation_type,
                idempotency_key=item.idempotency_key, amount=item.amount, units=item.units,
                ttl_seconds=req.ttl_seconds), row)
            holds.append(None)
            new.append((i, amount, item.idempotency_key, now + timedelta(seconds=ttl)))
        if not new:
            return HoldBatchResult(account_id=req.account_id,
                                   holds=[h for h in holds if h is not None])
        try:
            rows = await self.repo.reserve_hold_batch(
                req.account_id, req.operation_type, [n[1:] for n in new])
        except KeyTaken as exc:
            raise HoldRace(str(exc)) from exc
        total = sum(n[1] for n in new)
        if rows[0].id is None:
            raise PaymentRequired(f"Insufficient credits: {req.operation_type} needs {total}, "
                                  f"{rows[0].available} available.")
        CREDITS_HELD.labels(req.operation_type).inc(total)
        for (i, *_), row in zip(new, rows, strict=True):
            holds[i] = _hold_result(row, available_after=row.available)
        return HoldBatchResult(account_id=req.account_id,
                               holds=[h for h in holds if h is not None],
                               available_after=rows[0].available)

    def _hold_terms(self, req: HoldRequest, pricing: Any) -> tuple[int, int]:
        """The credits to reserve and the hold's time to live, or the error of the request."""
        if pricing.config_id is None or not pricing.is_active:
            raise ValidationFailed.field("operation_type",
                                         f"Unknown operation '{req.operation_type}'.")
        if req.amount is not None:
            if req.amount < 0:
                raise ValidationFailed.field("amount", min_value(0))
            amount = req.amount
        else:
            if req.units is not None and req.units <= 0:
                raise ValidationFailed.field("units", min_value(1))
            try:
                amount = price(pricing, units=req.units)
            except PricingError as exc:
                raise ValidationFailed.field(exc.field, str(exc)) from exc
        ttl = req.ttl_seconds or self.policy.default_hold_ttl_seconds
        if ttl < 1:
            raise ValidationFailed.field("ttl_seconds", min_value(1))
        if ttl > self.policy.max_hold_ttl_seconds:
            raise ValidationFailed.field("ttl_seconds",
                                         max_value(self.policy.max_hold_ttl_seconds))
        return amount, ttl

    async def _locked_hold(self, hold_id: int, account_id: int | None) -> Row[Any]:
        hold = await self.repo.get_hold(hold_id, lock=True)
        if hold is None or (account_id is not None and hold.account_id != account_id):
            raise NotFound(f"Hold {hold_id} not found.", errors={"hold_id": ["Not found."]})
        return hold

    async def capture(self, req: CaptureRequest) -> CaptureResult:
        """Charge a hold for the work done (a batch of one, see `capture_many`)."""
        return _one(await self.capture_many([req]))

    async def capture_many(self, requests: Sequence[CaptureRequest]
                           ) -> list[CaptureResult | DomainError]:
        """Charge holds (distinct ones) for the work done: for each request, in order, its
        result or the error it earns. One statement locks the holds and their balances and
        reads the pricing; one draws the ledger's ids, under those locks; one writes the
        balances, ledger entries, usage logs, settled holds and events. Captures of one
        account chain, each from the balance the previous one left, so every
        `balance_after` follows from the one before, in id order too."""
        if len({r.hold_id for r in requests}) != len(requests):
            raise ValueError("capture_many takes one request per hold")
        outcomes: dict[int, CaptureResult | DomainError] = {}
        valid: list[CaptureRequest] = []
        for req in requests:
            try:
                _check_capture(req)
                valid.append(req)
            except DomainError as exc:
                outcomes[req.hold_id] = exc
        locked = {row.id: row for row in await self.repo.lock_for_captures(
            [r.hold_id for r in valid])} if valid else {}
        for req in valid:
            if req.hold_id not in locked:  # no such hold, or (never in practice) no balance row
                with contextlib.suppress(NotFound):
                    orphan = await self._locked_hold(req.hold_id, None)
                    await self._ensure_balance(orphan.account_id)
                    locked.update((row.id, row)
                                  for row in await self.repo.lock_for_captures([req.hold_id]))

        def found(req: CaptureRequest) -> Any:
            hold = locked.get(req.hold_id)
            if hold is None or (req.account_id is not None and hold.account_id != req.account_id):
                return None
            return hold

        # Ids in the order the captures below change balances (see `ledger_ids`).
        to_write = sum(1 for req in valid
                       if (hold := found(req)) is not None and hold.status != HoldStatus.CAPTURED)
        ids = iter(await self.repo.ledger_ids(to_write) if to_write else [])
        balances: dict[int, BalanceRow] = {}  # each account's balance as the batch leaves it
        writes: list[CaptureWrite] = []
        for req in valid:
            hold = found(req)
            if hold is None:
                outcomes[req.hold_id] = NotFound(f"Hold {req.hold_id} not found.",
                                                 errors={"hold_id": ["Not found."]})
            elif hold.status == HoldStatus.CAPTURED:
                outcomes[req.hold_id] = await self._captured(hold)
            else:
                before = balances.get(hold.account_id) or BalanceRow(
                    account_id=hold.account_id, plan_credits=hold.plan_credits,
                    purchased_credits=hold.purchased_credits, held=hold.held,
                    plan_credits_per_month=hold.plan_credits_per_month,
                    period_start=hold.period_start, period_end=hold.period_end,
                    low_notified=hold.low_notified)
                write, result = await self._plan_capture(req, hold, before, *next(ids))
                balances[hold.account_id] = write.balance
                writes.append(write)
                outcomes[req.hold_id] = result
        if writes:
            await self.repo.record_captures(writes, settled_at=utcnow())
            self.relay_wake_needed = True
            for write in writes:
                CREDITS_CAPTURED.labels(write.operation_type).inc(write.charge)
        return [outcomes[r.hold_id] for r in requests]

    async def _captured(self, hold: Any) -> CaptureResult:
        """The answer a capture gave, for a capture sent again."""
        tx = await self.repo.transaction_by_key(hold.account_id, f"capture:{hold.id}")
        return CaptureResult(
            hold_id=hold.id, account_id=hold.account_id, operation_type=hold.operation_type,
            credits_charged=hold.captured_credits, credits_released=0,
            transaction_id=hold.transaction_id, usage_log_id=hold.usage_log_id,
            balance_after=tx.balance_after if tx else hold.plan_credits + hold.purchased_credits,
            replayed=True)

    async def _plan_capture(self, req: CaptureRequest, hold: Any, before: BalanceRow,
                            tx_id: int, usage_id: int) -> tuple[CaptureWrite, CaptureResult]:
        """What a capture writes and answers, from the locked hold, the balance before and
        the ids of its ledger entry and usage log."""
        tokens = req.tokens_input + req.tokens_output
        if hold.config_id is None:
            actual = hold.amount
        elif hold.unit == "per_tokens" and tokens > 0:
            actual = price(hold, tokens=tokens)
        elif hold.unit != "per_tokens" and req.units is not None:
            actual = price(hold, units=req.units)
        else:
            actual = hold.amount
        reserved = hold.amount if hold.status == HoldStatus.HELD else 0
        # Never more than the hold plus what is still spendable, never below zero.
        charge = max(0, min(actual, reserved + max(before.available, 0), before.total))
        from_plan = min(charge, before.plan_credits)
        after = await self._after_change(before, replace(
            before, plan_credits=before.plan_credits - from_plan,
            purchased_credits=before.purchased_credits - (charge - from_plan),
            held=max(before.held - reserved, 0)))
        display = hold.display_name if hold.config_id is not None else hold.operation_type
        meta = {"operation_type": hold.operation_type, "hold_id": hold.id,
                "estimated": hold.amount, "actual": actual, "from_plan": from_plan,
                "from_purchased": charge - from_plan, "model": req.model,
                "tokens_input": req.tokens_input, "tokens_output": req.tokens_output}
        if charge < actual:
            meta["capped"] = True
        debited = Event(type=ev.CREDITS_DEBITED, account_id=hold.account_id, data={
            "account_id": hold.account_id, "amount": charge,
            "transaction_type": TransactionType.DEDUCTION,
            "transaction_id": tx_id, "usage_log_id": usage_id, "hold_id": hold.id,
            "operation_type": hold.operation_type, "balance_after": after.total,
            "model": req.model, "cost_usd": str(req.cost_usd),
            "related_object_type": req.related_object_type,
            "related_object_id": req.related_object_id})
        write = CaptureWrite(
            hold_id=hold.id, account_id=hold.account_id, operation_type=hold.operation_type,
            transaction_id=tx_id, usage_log_id=usage_id, balance=after, charge=charge,
            from_plan=from_plan, description=f"{display}: {charge} credits", ledger_meta=meta,
            cost_usd=req.cost_usd, model_used=req.model, tokens_input=req.tokens_input,
            tokens_output=req.tokens_output, units=req.units,
            related_object_type=req.related_object_type,
            related_object_id=req.related_object_id, usage_meta=req.metadata, event=debited)
        result = CaptureResult(
            hold_id=hold.id, account_id=hold.account_id, operation_type=hold.operation_type,
            credits_charged=charge, credits_released=reserved - min(charge, reserved),
            transaction_id=tx_id, usage_log_id=usage_id, balance_after=after.total)
        return write, result

    async def quote(self, req: QuoteRequest) -> QuoteResult:
        """The balance, and each item's price from its operation's cost configuration
        (reads only; automation's estimate)."""
        balance = await self.repo.get_balance(req.account_id)
        quotes = []
        for item in req.items:
            config = await self.repo.cost_config(item.operation_type)
            if config is None or not config.is_active:
                raise ValidationFailed.field("operation_type",
                                             f"Unknown operation '{item.operation_type}'.")
            try:
                credits = price(config, units=item.units)
            except PricingError as exc:
                raise ValidationFailed.field(exc.field, str(exc)) from exc
            quotes.append(Quote(operation_type=item.operation_type, units=item.units,
                                credits=credits))
        return QuoteResult(account_id=req.account_id,
                           balance=balance.total if balance else 0,
                           available=balance.available if balance else 0, quotes=quotes)

    async def release(self, req: ReleaseRequest) -> ReleaseResult:
        hold = await self._locked_hold(req.hold_id, req.account_id)
        if hold.status != HoldStatus.HELD:
            return ReleaseResult(hold_id=hold.id, account_id=hold.account_id,
                                 credits_released=0, status=hold.status)
        await self.repo.release_held(hold.account_id, hold.amount)
        await self.repo.settle_hold(hold.id, status=HoldStatus.RELEASED, settled_at=utcnow())
        return ReleaseResult(hold_id=hold.id, account_id=hold.account_id,
                             credits_released=hold.amount, status=HoldStatus.RELEASED)

    async def refund(self, req: RefundRequest) -> RefundResult:
        hold = await self._locked_hold(req.hold_id, req.account_id)
        key = f"refund:{req.idempotency_key}"
        done = await self.repo.transaction_by_key(hold.account_id, key)
        if done is not None:
            return RefundResult(hold_id=hold.id, account_id=hold.account_id,
                                credits_refunded=done.amount, transaction_id=done.id or 0,
                                balance_after=done.balance_after, replayed=True)
        if hold.status != HoldStatus.CAPTURED:
            raise ValidationFailed.field("hold_id", "Only captured holds can be refunded.")
        refundable = hold.captured_credits - hold.refunded_credits
        credits = refundable if req.credits is None else req.credits
        # In DRF's words, as every refusal the bus answers (ADR 0037); the bound above is
        # what the hold captured and has not refunded yet.
        if credits < 1:
            raise ValidationFailed.field("credits", min_value(1))
        if credits > refundable:
            raise ValidationFailed.field("credits", max_value(refundable))
        # Credits go back to the pools they came from, purchased ones first.
        purchased_back = min(credits, max(0, hold.from_purchased - hold.refunded_credits))
        before = await self._ensure_balance(hold.account_id)
        after = await self._write_balance(before, replace(
            before, purchased_credits=before.purchased_credits + purchased_back,
            plan_credits=before.plan_credits + credits - purchased_back))
        tx_id = await self.repo.add_transaction(
            account_id=hold.account_id, transaction_type=TransactionType.REFUND, amount=credits,
            balance=after,
            description=f"Refund for {hold.operation_type}"
            + (f": {req.reason}" if req.reason else ""),
            reference=f"hold:{hold.id}", meta={"hold_id": hold.id, "reason": req.reason},
            idempotency_key=key)
        await self.repo.settle_hold(hold.id, refunded_credits=hold.refunded_credits + credits)
        await self.publish(ev.CREDITS_REFUNDED, hold.account_id, account_id=hold.account_id,
                            amount=credits, transaction_id=tx_id, hold_id=hold.id,
                            operation_type=hold.operation_type, balance_after=after.total,
                            reason=req.reason)
        return RefundResult(hold_id=hold.id, account_id=hold.account_id, credits_refunded=credits,
                            transaction_id=tx_id, balance_after=after.total)

    # ===================================================================== schedulers

    async def sweep_expired_holds(self, *, now: datetime | None = None, limit: int = 500) -> int:
        rows = await self.repo.expire_holds(now or utcnow(), limit)
        if rows:
            log.info("released %d expired holds", len(rows))
        return len(rows)

    async def renew_due_periods(self, *, now: datetime | None = None, limit: int = 100) -> int:
        """Reset plan credits of every balance whose period has ended. Rows are locked with
        SKIP LOCKED and each reset is keyed on its period, so any number of schedulers can
        run this at once and a period is renewed exactly once."""
        now = now or utcnow()
        renewed = 0
        for balance in await self.repo.due_balances(now, limit):
            assert balance.period_end is not None
            subscription = await self.repo.subscription_for(balance.account_id)
            account = await self.repo.get_account(balance.account_id)
            start, end = self._next_period(balance, subscription, now)
            included = (subscription.included_credits if subscription is not None
                        else balance.plan_credits_per_month)
            if (account is not None and (account.deleted or account.status in INACTIVE_ACCOUNT)) \
                    or (subscription is not None and subscription.status in INACTIVE_SUBSCRIPTION):
                included = 0
            done = await self.reset_plan_credits(
                balance.account_id, included, period_start=start, period_end=end,
                idempotency_key=f"period:{start.isoformat()}",
                description=f"Plan credits for the period from {start.date().isoformat()}")
            if done is None:  # this period was already granted: only move the boundary
                await self.repo.set_balance(balance.account_id, period_start=start, period_end=end)
            renewed += 1
        return renewed

    @staticmethod
    def _next_period(balance: BalanceRow, subscription: Subscription | None,
                     now: datetime) -> tuple[datetime, datetime]:
        if subscription is not None and subscription.current_period_start \
                and subscription.current_period_end \
                and subscription.current_period_start <= now < subscription.current_period_end:
            return subscription.current_period_start, subscription.current_period_end
        assert balance.period_end is not None
        start = balance.period_end
        end = add_month(start)
        while end <= now:
            start, end = end, add_month(end)
        return start, end

    # ==================================================================== read models

    async def apply_plan(self, data: dict[str, Any]) -> None:
        limits = {k: data.get(k) for k in ("max_users", "max_sites", "max_sectors_per_site",
                                             "max_keywords", "max_author_profiles")}
        features = data.get("features") or []
        await self.repo.upsert(Plan, ["id"], {
            "id": int(data["id"]), "name": str(data.get("name") or ""),
            "slug": str(data.get("slug") or ""), "price": Decimal(str(data.get("price") or 0)),
            "billing_cycle": str(data.get("billing_cycle") or "monthly"),
            "included_credits": int(data.get("included_credits") or 0), "limits": limits,
            "features": features if isinstance(features, list) else [features],
            "is_active": bool(data.get("is_active", True)),
        })

    async def apply_account(self, event_type: str, data: dict[str, Any],
                            occurred_at: datetime) -> None:
        account_id = int(data["account_id"])
        plan_id = data.get("plan_id")
        await self.repo.upsert(Account, ["account_id"], {
            "account_id": account_id, "name": str(data.get("name") or ""),
            "slug": str(data.get("slug") or ""), "status": str(data.get("status") or "active"),
            "owner_user_id": data.get("owner_user_id"),
            "plan_id": int(plan_id) if plan_id is not None else None,
            "plan_slug": data.get("plan_slug"), "deleted": event_type.endswith(".deleted"),
        })
        if not event_type.endswith(".created"):
            return
        plan = await self.repo.get_plan(int(plan_id)) if plan_id is not None else None
        end = add_month(occurred_at)
        if plan is None:
            # The plan's credits arrive with the subscription event.
            await self.repo.create_balance(account_id, plan_credits_per_month=0,
                                           period_start=None, period_end=None)
            return
        await self.reset_plan_credits(
            account_id, plan.included_credits, period_start=occurred_at, period_end=end,
            idempotency_key="signup", description=f"{plan.name} plan credits (new account)",
            reference=f"plan:{plan.id}")

    async def apply_subscription(self, data: dict[str, Any], occurred_at: datetime) -> None:
        account_id = int(data["account_id"])
        start = _parse_ts(data.get("current_period_start"))
        end = _parse_ts(data.get("current_period_end"))
        included = int(data.get("included_credits") or 0)
        await self.repo.upsert(Subscription, ["id"], {
            "id": int(data["id"]), "account_id": account_id,
            "plan_id": data.get("plan_id"), "plan_slug": data.get("plan_slug"),
            "included_credits": included, "status": str(data.get("status") or "active"),
            "current_period_start": start, "current_period_end": end,
        })
        start = start or occurred_at
        end = end if end and end > start else add_month(start)
        signup_done = await self.repo.transaction_by_key(account_id, "signup")
        if signup_done is None:
            await self.reset_plan_credits(
                account_id, included, period_start=start, period_end=end,
                idempotency_key="signup", description="Plan credits (new subscription)",
                reference=f"subscription:{data['id']}")
            return
        balance = await self._ensure_balance(account_id)
        now = utcnow()
        if balance.period_end is not None and balance.period_end <= start <= now:
            # Auth started a new period (renewal or plan change at the boundary).
            await self.reset_plan_credits(
                account_id, included, period_start=start, period_end=end,
                idempotency_key=f"period:{start.isoformat()}",
                description=f"Plan credits for the period from {start.date().isoformat()}",
                reference=f"subscription:{data['id']}")
        elif balance.period_start is None or abs(start - balance.period_start) < timedelta(days=1):
            # Same period as ours: adopt auth's exact boundaries; plan changes wait for them.
            await self.repo.set_balance(account_id, period_start=start, period_end=end)

    # =================================================== paid invoices, adjustments

    async def apply_paid_invoice(self, invoice: Invoice) -> None:
        """Credits for a paid invoice: the plan's for a subscription, the package's
        otherwise; once per invoice (the ledger key)."""
        key = f"invoice:{invoice.id}"
        if invoice.invoice_type == "subscription":
            subscription = await self.repo.subscription_for(invoice.account_id)
            balance = await self._ensure_balance(invoice.account_id)
            now = utcnow()
            start = balance.period_start or now
            end = balance.period_end if balance.period_end and balance.period_end > now \
                else add_month(now)
            included = invoice.credits or (subscription.included_credits if subscription else 0)
            await self.reset_plan_credits(
                invoice.account_id, included, period_start=start, period_end=end,
                idempotency_key=key, description=f"Plan credits (invoice {invoice.invoice_number})",
                reference=invoice.invoice_number)
        elif invoice.credits > 0:
            await self.add_credits(
                invoice.account_id, invoice.credits, transaction_type=TransactionType.PURCHASE,
                description=f"Credit purchase (invoice {invoice.invoice_number})",
                reference=invoice.invoice_number, idempotency_key=key,
                meta={"invoice_id": invoice.id, "credit_package_id": invoice.credit_package_id})

    async def adjust(self, account_id: int, amount: int, reason: str, by_user: int,
                     idempotency_key: str | None) -> int | None:
        if amount == 0:
            raise ValidationFailed.field("amount", "Must not be zero.")
        if await self.repo.get_account(account_id) is None \
                and await self.repo.get_balance(account_id) is None:
            raise NotFound("Account not found.", errors={"account_id": ["Unknown account."]})
        key = f"adjust:{idempotency_key}" if idempotency_key else None
        meta = {"reason": reason, "by_user_id": by_user}
        if amount > 0:
            return await self.add_credits(account_id, amount,
                                          transaction_type=TransactionType.ADJUSTMENT,
                                          description=f"Adjustment: {reason}",
                                          reference=f"user:{by_user}", idempotency_key=key,
                                          meta=meta)
        return await self.debit_adjustment(account_id, -amount, description=f"Adjustment: {reason}",
                                           reference=f"user:{by_user}", idempotency_key=key,
                                           meta=meta)


def _one(outcomes: Sequence[T | DomainError]) -> T:
    """The result of a batch of one, or its error raised."""
    (outcome,) = outcomes
    if isinstance(outcome, DomainError):
        raise outcome
    return outcome


def _check_capture(req: CaptureRequest) -> None:
    if req.units is not None and req.units < 0:
        raise ValidationFailed.field("units", "Must not be negative.")
    if req.tokens_input < 0 or req.tokens_output < 0:
        raise ValidationFailed.field("tokens_input", "Token counts must not be negative.")
    if req.cost_usd < 0:
        raise ValidationFailed.field("cost_usd", "Must not be negative.")


def _hold_result(row: Row[Any], *, replayed: bool = False,
                 available_after: int | None = None) -> HoldResult:
    return HoldResult(hold_id=row.id, account_id=row.account_id,
                      operation_type=row.operation_type, amount=row.amount, status=row.status,
                      expires_at=row.expires_at, available_after=available_after,
                      replayed=replayed)


def _parse_ts(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float):
        moment = datetime.fromtimestamp(value, UTC)
    else:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)
