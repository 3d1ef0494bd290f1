"""What billing publishes (through the outbox) and consumes.

Published, subject `igny8.<type>` on stream `IGNY8_BILLING`:

- `billing.credits.debited`: account_id, amount, transaction_type, transaction_id,
  balance_after, operation_type, hold_id?, usage_log_id?, model?, cost_usd?,
  related_object_type?, related_object_id?
- `billing.credits.added`: account_id, amount, transaction_type, transaction_id,
  balance_after, reference?
- `billing.credits.refunded`: account_id, amount, transaction_id, hold_id, operation_type,
  balance_after, reason
- `billing.balance.low`: account_id, credits, available, threshold
- `billing.invoice.created` / `.paid`: account_id, invoice_id, invoice_number, total,
  currency, credits
- `billing.payment.submitted` / `.approved` / `.rejected`: account_id, payment_id,
  invoice_id, amount?, reason?

Consumed: `auth.plan.*`, `auth.account.*`, `auth.subscription.*` (durable consumer
`billing-auth`), building the local read models and granting plan credits.
"""

from __future__ import annotations

CREDITS_DEBITED = "billing.credits.debited"
CREDITS_ADDED = "billing.credits.added"
CREDITS_REFUNDED = "billing.credits.refunded"
BALANCE_LOW = "billing.balance.low"
INVOICE_CREATED = "billing.invoice.created"
INVOICE_PAID = "billing.invoice.paid"
PAYMENT_SUBMITTED = "billing.payment.submitted"
PAYMENT_APPROVED = "billing.payment.approved"
PAYMENT_REJECTED = "billing.payment.rejected"

AUTH_CONSUMER = "billing-auth"
AUTH_SUBJECTS = ("igny8.auth.plan.>", "igny8.auth.account.>", "igny8.auth.subscription.>")
