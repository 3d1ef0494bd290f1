"""Billing's tables, on billing's own SQLModel registry (Alembic sees only these).

Credits are whole numbers. A balance is two pools, `plan_credits` (reset every period)
and `purchased_credits` (never expire); `held` is what open holds reserve, so the
spendable amount is `plan_credits + purchased_credits - held`. The ledger
(`credit_transactions`) is append-only and always sums to `plan_credits + purchased_credits`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Numeric,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from libs.common.columns import (
    Timestamped,
    bigint_ref,
    created_timestamp,
    given_key,
    identity_key,
    one_of,
    optional_timestamp,
)


class TransactionType(StrEnum):
    PURCHASE = "purchase"
    SUBSCRIPTION = "subscription"
    REFUND = "refund"
    DEDUCTION = "deduction"
    ADJUSTMENT = "adjustment"


class HoldStatus(StrEnum):
    """held → captured | released | expired"""

    HELD = "held"
    CAPTURED = "captured"
    RELEASED = "released"
    EXPIRED = "expired"


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    PENDING = "pending"
    PAID = "paid"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"


# The methods a manual payment (`POST /billing/payments/`) is submitted with.
MANUAL_METHODS = ("bank_transfer", "manual")


class PaymentStatus(StrEnum):
    PENDING_APPROVAL = "pending_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUNDED = "refunded"


class BillingModel(SQLModel, registry=registry()):
    pass


def _json(name: str | None = None, default: str = "'{}'::jsonb") -> Any:
    column = (Column(name, JSONB, nullable=False, server_default=text(default)) if name
              else Column(JSONB, nullable=False, server_default=text(default)))
    return Field(default=None, sa_column=column)


def _money(scale: int = 2) -> Any:
    return Field(default=Decimal("0"), sa_column=Column(Numeric(14, scale), nullable=False,
                                                       server_default=text("0")))


# --- read models of auth's facts -------------------------------------------------------


class Plan(BillingModel, table=True):
    """Auth's plans, as its `auth.plan.*` events describe them (global, not tenant data)."""

    __tablename__ = "plans"

    id: int = given_key()
    name: str = Field(max_length=255)
    slug: str = Field(max_length=255, index=True)
    price: Decimal = _money()
    billing_cycle: str = Field(default="monthly", max_length=32)
    included_credits: int = Field(default=0)
    limits: dict[str, Any] = _json()
    features: list[Any] = _json(default="'[]'::jsonb")
    is_active: bool = Field(default=True)
    updated_at: datetime | None = created_timestamp()


class Account(BillingModel, table=True):
    """Auth's accounts (the tenants), from `auth.account.*`."""

    __tablename__ = "accounts"

    account_id: int = given_key()
    name: str = Field(default="", max_length=255)
    slug: str = Field(default="", max_length=255)
    status: str = Field(default="active", max_length=32)
    owner_user_id: int | None = bigint_ref(nullable=True)
    plan_id: int | None = bigint_ref(nullable=True)
    plan_slug: str | None = Field(default=None, max_length=255)
    deleted: bool = Field(default=False)
    updated_at: datetime | None = created_timestamp()


class Subscription(BillingModel, table=True):
    """Auth's subscriptions, from `auth.subscription.*`: the plan and its current period."""

    __tablename__ = "subscriptions"

    id: int = given_key()
    account_id: int = bigint_ref(index=True)
    plan_id: int | None = bigint_ref(nullable=True)
    plan_slug: str | None = Field(default=None, max_length=255)
    included_credits: int = Field(default=0)
    status: str = Field(default="active", max_length=32)
    current_period_start: datetime | None = optional_timestamp()
    current_period_end: datetime | None = optional_timestamp()
    updated_at: datetime | None = created_timestamp()


# --- credits ----------------------------------------------------------------------------


class CreditBalance(BillingModel, Timestamped, table=True):
    __tablename__ = "credit_balances"
    __table_args__ = (
        CheckConstraint("plan_credits >= 0", name="plan_credits_not_negative"),
        CheckConstraint("purchased_credits >= 0", name="purchased_credits_not_negative"),
        CheckConstraint("held >= 0", name="held_not_negative"),
        Index("ix_credit_balances_period_end", "period_end"),
    )

    account_id: int = given_key()
    plan_credits: int = Field(default=0)
    purchased_credits: int = Field(default=0)
    held: int = Field(default=0)
    plan_credits_per_month: int = Field(default=0)
    period_start: datetime | None = optional_timestamp()
    period_end: datetime | None = optional_timestamp()
    # Last time the spendable balance was reported low (so `balance.low` fires on crossing).
    low_notified: bool = Field(default=False)


class CreditTransaction(BillingModel, table=True):
    """One ledger entry. Never updated or deleted (a trigger refuses it)."""

    __tablename__ = "credit_transactions"
    __table_args__ = (
        UniqueConstraint("account_id", "idempotency_key", name="uq_credit_transactions_key"),
        Index("ix_credit_transactions_account_created", "account_id", "created_at"),
        Index("ix_credit_transactions_account_type", "account_id", "transaction_type",
              "created_at"),
        one_of("transaction_type", TransactionType, name="transaction_type_known"),
    )

    id: int | None = identity_key()
    account_id: int = bigint_ref()
    transaction_type: str = Field(max_length=32)
    amount: int
    balance_after: int
    plan_balance_after: int = Field(default=0)
    purchased_balance_after: int = Field(default=0)
    description: str = Field(default="", max_length=500)
    reference: str | None = Field(default=None, max_length=255)
    meta: dict[str, Any] = _json("metadata")
    idempotency_key: str | None = Field(default=None, max_length=255)
    created_at: datetime | None = created_timestamp()


class CreditHold(BillingModel, table=True):
    """Credits reserved for an AI operation until it captures or releases them."""

    __tablename__ = "credit_holds"
    __table_args__ = (
        UniqueConstraint("account_id", "idempotency_key", name="uq_credit_holds_key"),
        Index("ix_credit_holds_open_expiry", "expires_at",
              postgresql_where=text("status = 'held'")),
        Index("ix_credit_holds_account", "account_id", "created_at"),
        CheckConstraint("amount >= 0", name="hold_amount_not_negative"),
        one_of("status", HoldStatus, name="hold_status_known"),
    )

    id: int | None = identity_key()
    account_id: int = bigint_ref()
    operation_type: str = Field(max_length=64)
    amount: int
    status: str = Field(default=HoldStatus.HELD, max_length=16)
    idempotency_key: str = Field(max_length=255)
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    captured_credits: int = Field(default=0)
    refunded_credits: int = Field(default=0)
    from_plan: int = Field(default=0)
    from_purchased: int = Field(default=0)
    transaction_id: int | None = bigint_ref(nullable=True)
    usage_log_id: int | None = bigint_ref(nullable=True)
    created_at: datetime | None = created_timestamp()
    settled_at: datetime | None = optional_timestamp()


class CreditUsageLog(BillingModel, table=True):
    __tablename__ = "credit_usage_logs"
    __table_args__ = (
        Index("ix_credit_usage_account_created", "account_id", "created_at"),
        Index("ix_credit_usage_account_operation", "account_id", "operation_type", "created_at"),
    )

    id: int | None = identity_key()
    account_id: int = bigint_ref()
    operation_type: str = Field(max_length=64)
    credits_used: int
    cost_usd: Decimal = _money(6)
    model_used: str = Field(default="", max_length=255)
    tokens_input: int = Field(default=0)
    tokens_output: int = Field(default=0)
    units: int | None = Field(default=None)
    related_object_type: str | None = Field(default=None, max_length=64)
    related_object_id: str | None = Field(default=None, max_length=64)
    hold_id: int | None = bigint_ref(nullable=True)
    transaction_id: int | None = bigint_ref(nullable=True)
    meta: dict[str, Any] = _json("metadata")
    created_at: datetime | None = created_timestamp()


class CreditCostConfig(BillingModel, Timestamped, table=True):
    """What an operation costs: `credits_cost` per unit, or tokens per credit."""

    __tablename__ = "credit_cost_configs"
    __table_args__ = (
        CheckConstraint("credits_cost >= 0", name="credits_cost_not_negative"),
        CheckConstraint("min_credits >= 0", name="min_credits_not_negative"),
    )

    id: int | None = identity_key()
    operation_type: str = Field(max_length=64, unique=True)
    display_name: str = Field(default="", max_length=255)
    description: str = Field(default="", max_length=500)
    # per_request | per_100_words | per_200_words | per_item | per_image | per_tokens
    unit: str = Field(default="per_request", max_length=32)
    credits_cost: int = Field(default=1)
    tokens_per_credit: int | None = Field(default=None)
    min_credits: int = Field(default=0)
    is_active: bool = Field(default=True)
    updated_by_user_id: int | None = bigint_ref(nullable=True)


# --- money --------------------------------------------------------------------------------


class CreditPackage(BillingModel, Timestamped, table=True):
    __tablename__ = "credit_packages"
    __table_args__ = (CheckConstraint("credits > 0", name="package_credits_positive"),
                      CheckConstraint("price >= 0", name="package_price_not_negative"))

    id: int | None = identity_key()
    name: str = Field(max_length=255)
    slug: str = Field(max_length=255, unique=True)
    credits: int
    price: Decimal = _money()
    currency: str = Field(default="USD", max_length=3)
    description: str = Field(default="", max_length=500)
    is_active: bool = Field(default=True)
    is_featured: bool = Field(default=False)
    sort_order: int = Field(default=0)


class Invoice(BillingModel, Timestamped, table=True):
    __tablename__ = "invoices"
    __table_args__ = (Index("ix_invoices_account_created", "account_id", "created_at"),
                      one_of("status", InvoiceStatus, name="invoice_status_known"))

    id: int | None = identity_key()
    account_id: int = bigint_ref()
    invoice_number: str = Field(max_length=64, unique=True)
    # subscription | credit_package | addon | custom
    invoice_type: str = Field(max_length=32)
    status: str = Field(default=InvoiceStatus.PENDING, max_length=32)
    currency: str = Field(default="USD", max_length=3)
    subtotal: Decimal = _money()
    tax: Decimal = _money()
    total: Decimal = _money()
    lines: list[Any] = _json(default="'[]'::jsonb")
    credit_package_id: int | None = bigint_ref(nullable=True)
    credits: int = Field(default=0)
    billing_email: str | None = Field(default=None, max_length=255)
    notes: str = Field(default="", max_length=2000)
    created_by_user_id: int | None = bigint_ref(nullable=True)
    issued_at: datetime | None = created_timestamp()
    due_date: datetime | None = optional_timestamp()
    paid_at: datetime | None = optional_timestamp()


class Payment(BillingModel, Timestamped, table=True):
    __tablename__ = "payments"
    __table_args__ = (
        Index("ix_payments_account_created", "account_id", "created_at"),
        Index("ix_payments_status", "status", "created_at"),
        Index("uq_payments_open_per_invoice", "invoice_id", unique=True,
              postgresql_where=text("status = 'pending_approval'")),
        CheckConstraint("amount > 0", name="payment_amount_positive"),
        one_of("status", PaymentStatus, name="payment_status_known"),
    )

    id: int | None = identity_key()
    account_id: int = bigint_ref()
    invoice_id: int = bigint_ref()
    amount: Decimal = _money()
    currency: str = Field(default="USD", max_length=3)
    # bank_transfer | manual | stripe | paypal
    payment_method: str = Field(max_length=32)
    status: str = Field(default=PaymentStatus.PENDING_APPROVAL, max_length=32)
    transaction_reference: str = Field(default="", max_length=255)
    notes: str = Field(default="", max_length=2000)
    failure_reason: str | None = Field(default=None, max_length=2000)
    submitted_by_user_id: int | None = bigint_ref(nullable=True)
    reviewed_by_user_id: int | None = bigint_ref(nullable=True)
    reviewed_at: datetime | None = optional_timestamp()


class PaymentMethod(BillingModel, Timestamped, table=True):
    __tablename__ = "payment_methods"
    __table_args__ = (
        Index("ix_payment_methods_account", "account_id"),
        Index("uq_payment_methods_default", "account_id", unique=True,
              postgresql_where=text("is_default")),
    )

    id: int | None = identity_key()
    account_id: int = bigint_ref()
    method_type: str = Field(max_length=32)
    display_name: str = Field(max_length=255)
    details: dict[str, Any] = _json()
    is_default: bool = Field(default=False)
    is_enabled: bool = Field(default=True)


TENANT_TABLES = (
    "accounts",
    "subscriptions",
    "credit_balances",
    "credit_transactions",
    "credit_holds",
    "credit_usage_logs",
    "invoices",
    "payments",
    "payment_methods",
)
