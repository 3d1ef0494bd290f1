"""Billing's domain logic: `credits` (balances, holds, captures, the ledger, auth's facts,
paid invoices) and `accounts` (what the HTTP API does for an account and for staff)."""

from services.billing.models import MANUAL_METHODS
from services.billing.service.credits import (
    INACTIVE_ACCOUNT,
    PAYMENT_METHOD_TYPES,
    BillingPolicy,
    BillingService,
    HoldRace,
    month_start,
    utcnow,
)

__all__ = ["INACTIVE_ACCOUNT", "MANUAL_METHODS", "PAYMENT_METHOD_TYPES", "BillingPolicy",
           "BillingService", "HoldRace", "month_start", "utcnow"]
