"""Billing's credit commands, declared once for billing's worker and its callers, and the
typed client (NATS request-reply through `libs/common/commands.py`).

Planner, writer and automation reserve credits before AI work and settle them after:

    hold = await BillingClient(nc).hold(account_id, "clustering", units=1, idempotency_key=key)
    ...  # do the work
    await BillingClient(nc).capture(hold.hold_id, units=1, model="local-...", cost_usd=0)

`quote` answers the balance and what operations would cost (automation's estimate).
`hold` raises `PaymentRequired` (HTTP 402) when the spendable balance cannot cover the
estimate; `hold_batch` places one hold per item of a job in one command, all or none, and
`capture_batch` captures them in one.
Every command is idempotent: a hold by its key, a capture/release by its hold, a refund by
its key; the client sends a timed-out command again with the same payload.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from libs.common.commands import Command, CommandClient
from libs.common.fields import ShortText

SERVICE = "billing"


class HoldRequest(BaseModel):
    account_id: int
    operation_type: str
    idempotency_key: ShortText
    # Either the estimate in credits, or units of the operation (items, words, tokens) that
    # billing prices with the operation's cost configuration.
    amount: int | None = None
    units: int | None = None
    ttl_seconds: int | None = None


class HoldResult(BaseModel):
    hold_id: int
    account_id: int
    operation_type: str
    amount: int
    status: str
    expires_at: datetime
    available_after: int | None = None
    replayed: bool = False


class HoldItem(BaseModel):
    idempotency_key: ShortText
    amount: int | None = None
    units: int | None = None


class HoldBatchRequest(BaseModel):
    """One hold per item of one account and operation (a job that captures what each item
    cost), placed together in one statement: all of them, or none (402)."""

    account_id: int
    operation_type: str
    items: list[HoldItem] = Field(min_length=1, max_length=1000)
    ttl_seconds: int | None = None


class HoldBatchResult(BaseModel):
    account_id: int
    holds: list[HoldResult]  # in the order of the items
    available_after: int | None = None  # None: every hold was there already (replayed)


class CaptureRequest(BaseModel):
    hold_id: int
    account_id: int | None = None
    # Actual work: units for unit-priced operations, tokens for token-priced ones. With
    # neither, the held estimate is charged.
    units: int | None = None
    tokens_input: int = 0
    tokens_output: int = 0
    model: str = ""
    cost_usd: Decimal = Decimal("0")
    related_object_type: str | None = None
    related_object_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class CaptureResult(BaseModel):
    hold_id: int
    account_id: int
    operation_type: str
    credits_charged: int
    credits_released: int
    transaction_id: int | None
    usage_log_id: int | None
    balance_after: int
    replayed: bool = False


class CaptureBatchRequest(BaseModel):
    """A job's captures, one per hold (distinct holds), applied in one transaction."""

    captures: list[CaptureRequest] = Field(min_length=1, max_length=1000)


class CaptureFailure(BaseModel):
    hold_id: int
    code: str
    detail: str


class CaptureBatchResult(BaseModel):
    results: list[CaptureResult]  # those applied (or replayed), in the order asked
    failed: list[CaptureFailure] = Field(default_factory=list)  # each refused one's reason


class ReleaseRequest(BaseModel):
    hold_id: int
    account_id: int | None = None


class ReleaseResult(BaseModel):
    hold_id: int
    account_id: int
    credits_released: int
    status: str


class RefundRequest(BaseModel):
    hold_id: int
    idempotency_key: ShortText
    account_id: int | None = None
    # Defaults to everything captured and not yet refunded.
    credits: int | None = None
    reason: str = ""


class RefundResult(BaseModel):
    hold_id: int
    account_id: int
    credits_refunded: int
    transaction_id: int
    balance_after: int
    replayed: bool = False


class QuoteItem(BaseModel):
    operation_type: str
    units: int = Field(default=1, ge=1)


class QuoteRequest(BaseModel):
    """What `items` would cost the account now, and its balance (reads only)."""

    account_id: int
    items: list[QuoteItem] = Field(default_factory=list, max_length=100)


class Quote(BaseModel):
    operation_type: str
    units: int
    credits: int


class QuoteResult(BaseModel):
    account_id: int
    balance: int  # plan + purchased credits
    available: int  # the balance less what active holds reserve
    quotes: list[Quote] = Field(default_factory=list)


HOLD = Command(SERVICE, "hold", HoldRequest, HoldResult, idempotent=True)
HOLD_BATCH = Command(SERVICE, "hold_batch", HoldBatchRequest, HoldBatchResult, idempotent=True)
CAPTURE = Command(SERVICE, "capture", CaptureRequest, CaptureResult, idempotent=True)
CAPTURE_BATCH = Command(SERVICE, "capture_batch", CaptureBatchRequest, CaptureBatchResult,
                        idempotent=True)
RELEASE = Command(SERVICE, "release", ReleaseRequest, ReleaseResult, idempotent=True)
REFUND = Command(SERVICE, "refund", RefundRequest, RefundResult, idempotent=True)
QUOTE = Command(SERVICE, "quote", QuoteRequest, QuoteResult, idempotent=True)


class BillingClient(CommandClient):
    async def hold(self, account_id: int, operation_type: str, *, amount: int | None = None,
                   units: int | None = None, ttl_seconds: int | None = None,
                   idempotency_key: str | None = None) -> HoldResult:
        request = HoldRequest(account_id=account_id, operation_type=operation_type,
                              amount=amount, units=units, ttl_seconds=ttl_seconds,
                              idempotency_key=idempotency_key or uuid.uuid4().hex)
        return await self.call(HOLD, request)

    async def hold_batch(self, account_id: int, operation_type: str, units: Mapping[str, int],
                         *, ttl_seconds: int | None = None) -> HoldBatchResult:
        """A hold of `units[key]` under each idempotency key, all placed or none (402)."""
        request = HoldBatchRequest(
            account_id=account_id, operation_type=operation_type, ttl_seconds=ttl_seconds,
            items=[HoldItem(idempotency_key=key, units=n) for key, n in units.items()])
        return await self.call(HOLD_BATCH, request)

    async def capture(self, hold_id: int, *, account_id: int | None = None,
                      units: int | None = None, tokens_input: int = 0, tokens_output: int = 0,
                      model: str = "", cost_usd: Decimal | float | str = Decimal("0"),
                      related_object_type: str | None = None,
                      related_object_id: str | int | None = None,
                      metadata: dict[str, Any] | None = None) -> CaptureResult:
        request = CaptureRequest(
            hold_id=hold_id, account_id=account_id, units=units, tokens_input=tokens_input,
            tokens_output=tokens_output, model=model, cost_usd=Decimal(str(cost_usd)),
            related_object_type=related_object_type,
            related_object_id=None if related_object_id is None else str(related_object_id),
            metadata=metadata or {},
        )
        return await self.call(CAPTURE, request)

    async def capture_batch(self, captures: list[CaptureRequest]) -> CaptureBatchResult:
        """Several holds' captures in one command and one transaction; a refused one does
        not stop the others (`failed` says why)."""
        return await self.call(CAPTURE_BATCH, CaptureBatchRequest(captures=captures))

    async def quote(self, account_id: int, items: list[tuple[str, int]]) -> QuoteResult:
        """The account's balance, and what each (operation, units) would cost it."""
        request = QuoteRequest(account_id=account_id, items=[
            QuoteItem(operation_type=op, units=units) for op, units in items])
        return await self.call(QUOTE, request)

    async def release(self, hold_id: int, *, account_id: int | None = None) -> ReleaseResult:
        return await self.call(RELEASE, ReleaseRequest(hold_id=hold_id, account_id=account_id))

    async def refund(self, hold_id: int, *, idempotency_key: str, credits: int | None = None,
                     reason: str = "", account_id: int | None = None) -> RefundResult:
        request = RefundRequest(hold_id=hold_id, idempotency_key=idempotency_key,
                                credits=credits, reason=reason, account_id=account_id)
        return await self.call(REFUND, request)
