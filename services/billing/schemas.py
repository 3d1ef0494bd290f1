"""Request and response bodies of billing's HTTP API."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from libs.common.fields import ShortText, json_numbers_fit
from libs.common.ids import Id
from libs.common.problems import ValidationFailed
from libs.common.repository import (
    Choice,
    DayFrom,
    DayUntil,
    Equals,
    FilterSet,
    ListQuery,
    NoFilters,
    Orderings,
)
from libs.common.schemas import WriteModel, partial_of
from services.billing.models import MANUAL_METHODS, InvoiceStatus, PaymentStatus, TransactionType
from services.billing.pricing import UNITS

PaymentMethodType = Literal["bank_transfer", "manual", "stripe", "paypal"]
Unit = Literal["per_request", "per_100_words", "per_200_words", "per_item", "per_image",
               "per_tokens"]
assert set(UNITS) == set(Unit.__args__)  # type: ignore[attr-defined]


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Money(Out):
    @field_serializer("*", when_used="json")
    def _money(self, value: Any) -> Any:
        return f"{value:.2f}" if isinstance(value, Decimal) else value


class BalanceOut(Out):
    credits: int
    plan_credits_per_month: int
    credits_used_this_month: int
    credits_remaining: int
    plan_credits: int
    purchased_credits: int
    held_credits: int
    period_start: datetime | None
    period_end: datetime | None


class UsageLogOut(Out):
    id: int
    operation_type: str
    credits_used: int
    cost_usd: Decimal
    model_used: str
    tokens_input: int
    tokens_output: int
    units: int | None
    related_object_type: str | None
    related_object_id: str | None
    metadata: dict[str, Any] = Field(validation_alias="meta")
    created_at: datetime

    @field_serializer("cost_usd")
    def _cost(self, value: Decimal) -> str:
        return f"{value:.6f}"


class TransactionOut(Out):
    id: int
    transaction_type: TransactionType
    amount: int
    balance_after: int
    plan_balance_after: int
    purchased_balance_after: int
    description: str
    reference: str | None
    metadata: dict[str, Any] = Field(validation_alias="meta")
    created_at: datetime


class InvoiceOut(Money):
    id: int
    invoice_number: str
    invoice_type: str
    status: InvoiceStatus
    currency: str
    subtotal: Decimal
    tax: Decimal
    total: Decimal
    lines: list[dict[str, Any]]
    credit_package_id: int | None
    credits: int
    notes: str
    issued_at: datetime | None
    due_date: datetime | None
    paid_at: datetime | None
    created_at: datetime


class PaymentOut(Money):
    id: int
    invoice_id: int
    amount: Decimal
    currency: str
    payment_method: str
    status: PaymentStatus
    transaction_reference: str
    notes: str
    failure_reason: str | None
    reviewed_at: datetime | None
    created_at: datetime


class AdminPaymentOut(PaymentOut):
    account_id: int
    submitted_by_user_id: int | None
    reviewed_by_user_id: int | None


# Counts and costs are PostgreSQL `integer` columns.
MAX_INT = 2**31 - 1


class PaymentCreate(WriteModel):
    resource = PaymentOut
    invoice_id: Id
    amount: Decimal | None = Field(default=None, gt=0, max_digits=14, decimal_places=2)
    # Checked by the service ("Manual payments use one of: ..."); the document says so.
    payment_method: str = Field(json_schema_extra={"enum": list(MANUAL_METHODS)})
    transaction_reference: ShortText
    notes: str = Field(default="", max_length=2000)


class PaymentReject(WriteModel):
    reason: str = Field(default="", max_length=2000)


class PackageOut(Money):
    id: int
    name: str
    slug: str
    credits: int
    price: Decimal
    currency: str
    description: str
    is_active: bool
    is_featured: bool
    sort_order: int


class PackageCreate(WriteModel):
    resource = PackageOut
    name: ShortText
    slug: str = Field(min_length=1, max_length=255, pattern=r"^[a-z0-9][a-z0-9-]*$")
    credits: int = Field(gt=0, le=MAX_INT)
    # Bought through an invoice whose payment must be positive (`PaymentCreate.amount`):
    # a package priced 0 could never be paid.
    price: Decimal = Field(gt=0, max_digits=14, decimal_places=2)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    description: str = Field(default="", max_length=500)
    is_active: bool = True
    is_featured: bool = False
    sort_order: int = Field(default=0, ge=-MAX_INT, le=MAX_INT)


@partial_of(PackageCreate, fixed={"slug"})
class PackageUpdate(WriteModel):
    """`slug` is fixed once created (read-only here)."""


class PaymentMethodOut(Out):
    id: int
    method_type: str
    display_name: str
    details: dict[str, Any]
    is_default: bool
    is_enabled: bool
    created_at: datetime


class PaymentMethodCreate(WriteModel):
    resource = PaymentMethodOut

    method_type: PaymentMethodType
    display_name: ShortText
    details: dict[str, Any] = Field(default_factory=dict)
    is_default: bool = False
    is_enabled: bool = True

    _details = field_validator("details")(json_numbers_fit)


# The default method is chosen by `set_default/`.
@partial_of(PaymentMethodCreate, fixed={"method_type", "is_default"})
class PaymentMethodUpdate(WriteModel):
    pass


class CostConfigOut(Out):
    id: int
    operation_type: str
    display_name: str
    description: str
    unit: str
    credits_cost: int
    tokens_per_credit: int | None
    min_credits: int
    is_active: bool
    updated_at: datetime | None


class CostConfigUpdate(WriteModel):
    resource = CostConfigOut
    display_name: ShortText | None = None
    description: str | None = Field(default=None, max_length=500)
    unit: Unit | None = None
    credits_cost: int | None = Field(default=None, ge=0, le=MAX_INT)
    tokens_per_credit: int | None = Field(default=None, gt=0, le=MAX_INT)
    min_credits: int | None = Field(default=None, ge=0, le=MAX_INT)
    is_active: bool | None = None


class AdjustCredits(WriteModel):
    account_id: Id
    amount: int = Field(ge=-MAX_INT, le=MAX_INT)
    reason: str = Field(min_length=1, max_length=400)
    idempotency_key: str | None = Field(default=None, max_length=200)


# --- what the lists accept -------------------------------------------------------------


class DateRange(FilterSet):
    """`start_date` / `end_date` (YYYY-MM-DD, whole days, UTC) on `created_at`."""

    start_date = DayFrom("created_at")
    end_date = DayUntil("created_at")

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        if self.start_date and self.end_date and self.start_date > self.end_date:
            raise ValidationFailed.field("end_date", "Must not be before start_date.")


class UsageFilters(DateRange):
    # One of the cost table's operations (checked by the service: the table can change).
    operation_type = Equals(str)


class TransactionFilters(DateRange):
    transaction_type = Choice(TransactionType)


class InvoiceFilters(FilterSet):
    status = Choice(InvoiceStatus)


class PaymentFilters(FilterSet):
    status = Choice(PaymentStatus)


USAGE_ORDERING = Orderings("created_at", "credits_used", "operation_type", "id",
                           default="-created_at")
TRANSACTION_ORDERING = Orderings("created_at", "amount", "id", default="-id")
INVOICE_ORDERING = Orderings("created_at", "issued_at", "total", "status", "id",
                             default="-created_at")
PAYMENT_ORDERING = Orderings("created_at", "amount", "status", "id", default="-created_at")
PENDING_ORDERING = Orderings("created_at", "amount", "id", default="created_at")
PACKAGE_ORDERING = Orderings("sort_order", "credits", "price", "name", "id",
                             default="sort_order,id")
METHOD_ORDERING = Orderings("created_at", "display_name", "id", default="-is_default,id")

UsageQuery = ListQuery.of(UsageFilters, USAGE_ORDERING)
TransactionQuery = ListQuery.of(TransactionFilters, TRANSACTION_ORDERING)
InvoiceQuery = ListQuery.of(InvoiceFilters, INVOICE_ORDERING)
PaymentQuery = ListQuery.of(PaymentFilters, PAYMENT_ORDERING)
PendingQuery = ListQuery.of(NoFilters, PENDING_ORDERING)
PackageQuery = ListQuery.of(NoFilters, PACKAGE_ORDERING)
MethodQuery = ListQuery.of(NoFilters, METHOD_ORDERING)
