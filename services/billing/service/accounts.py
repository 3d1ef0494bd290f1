"""What billing's HTTP API does: an account's balance, usage, ledger, invoices, payments,
packages and payment methods (`AccountBilling`), and the platform staff's reviews,
adjustments, packages and price table (`StaffBilling`).

Credits move only through `BillingService`; everything else is read and written through
the kernel's repositories, made for the caller's `Visibility`, so another account's id is
simply not found. No HTTP, no commit.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.problems import Conflict, NotFound, ValidationFailed
from libs.common.repository import ListQuery, Page, Visibility, choice
from services.billing import events as ev
from services.billing.models import (
    MANUAL_METHODS,
    CreditCostConfig,
    CreditPackage,
    CreditTransaction,
    CreditUsageLog,
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
)
from services.billing.pricing import UNITS
from services.billing.repository import (
    ActivePackages,
    CostConfigs,
    Invoices,
    Packages,
    PaymentMethods,
    Payments,
    PendingPayments,
    Transactions,
    UsageLogs,
)
from services.billing.service.credits import (
    BillingPolicy,
    BillingService,
    _day_start,
    month_start,
    utcnow,
)

T = TypeVar("T")

PAYMENT_INSTRUCTIONS = {
    "bank_transfer": "Transfer the invoice total quoting the invoice number, then submit "
                     "the bank's transaction reference; staff approve it.",
    "manual": "Pay by another arranged means and submit its reference; staff approve it.",
}


def found(row: T | None, what: str) -> T:
    if row is None:
        raise NotFound(f"{what} not found.")
    return row


class AccountBilling:
    """One account's billing, as its members see and change it."""

    def __init__(self, session: AsyncSession, account_id: int, policy: BillingPolicy) -> None:
        self.account_id = account_id
        self.credits = BillingService(session, policy)
        self.ledger = self.credits.repo
        mine = Visibility(account_id)
        self.usage_logs = UsageLogs(session, mine)
        self.transactions = Transactions(session, mine)
        self.invoices = Invoices(session, mine)
        self.payments = Payments(session, mine)
        self.methods = PaymentMethods(session, mine)
        self.packages = ActivePackages(session)

    # --- balance and usage ---------------------------------------------------------------

    async def balance(self) -> dict[str, Any]:
        account_id = self.account_id
        balance = await self.ledger.get_balance(account_id)
        subscription = await self.ledger.subscription_for(account_id)
        used = await self.ledger.credits_used_since(account_id, month_start(utcnow()))
        per_month = (subscription.included_credits if subscription is not None
                     else balance.plan_credits_per_month if balance else 0)
        return {
            "credits": balance.total if balance else 0,
            "plan_credits_per_month": per_month,
            "credits_used_this_month": used,
            "credits_remaining": balance.available if balance else 0,
            "plan_credits": balance.plan_credits if balance else 0,
            "purchased_credits": balance.purchased_credits if balance else 0,
            "held_credits": balance.held if balance else 0,
            "period_start": balance.period_start if balance else None,
            "period_end": balance.period_end if balance else None,
        }

    async def usage(self, query: ListQuery[Any]) -> Page[CreditUsageLog]:
        choice("operation_type", query.filters.operation_type,
               await self.ledger.operation_types())
        return await self.usage_logs.page(query)

    async def usage_log(self, log_id: int) -> CreditUsageLog:
        return found(await self.usage_logs.get(log_id), "Usage log")

    async def usage_limits(self) -> dict[str, Any]:
        summary = await self.balance()
        account = await self.ledger.get_account(self.account_id)
        plan = (await self.ledger.get_plan(account.plan_id)
                if account and account.plan_id else None)
        return {
            "plan": None if plan is None else {
                "id": plan.id, "name": plan.name, "slug": plan.slug,
                "included_credits": plan.included_credits, "billing_cycle": plan.billing_cycle,
            },
            "limits": dict(plan.limits) if plan is not None else {},
            "credits": {key: summary[key] for key in (
                "plan_credits_per_month", "credits_used_this_month", "credits_remaining",
                "credits", "period_end")},
        }

    async def usage_summary(self, start: date | None, end: date | None) -> dict[str, Any]:
        since = _day_start(start) if start else None
        until = _day_start(end) + timedelta(days=1) if end else None
        rows = await self.ledger.usage_summary(self.account_id, since, until)
        by_operation = [{
            "operation_type": r.operation_type, "count": int(r.n),
            "credits": int(r.credits or 0), "cost_usd": str(r.cost_usd or Decimal("0")),
            "tokens_input": int(r.tokens_input or 0), "tokens_output": int(r.tokens_output or 0),
        } for r in rows]
        return {
            "start_date": start.isoformat() if start else None,
            "end_date": end.isoformat() if end else None,
            "total_operations": sum(o["count"] for o in by_operation),
            "total_credits": sum(o["credits"] for o in by_operation),
            "total_cost_usd": str(sum((Decimal(o["cost_usd"]) for o in by_operation),
                                      Decimal("0"))),
            "by_operation": by_operation,
        }

    async def usage_analytics(self, days: int) -> dict[str, Any]:
        today = utcnow().date()
        first = today - timedelta(days=days - 1)
        since = _day_start(first)
        rows = await self.ledger.usage_by_day(self.account_id, since)
        ledger = await self.ledger.spend_by_day(self.account_id, since)
        series: dict[date, dict[str, Any]] = {
            first + timedelta(days=i): {"date": (first + timedelta(days=i)).isoformat(),
                                        "credits_used": 0, "operations": 0, "cost_usd": "0",
                                        "credits_added": 0, "by_operation": {}}
            for i in range(days)
        }
        totals: dict[str, dict[str, Any]] = {}
        for r in rows:
            day = series.get(r.day)
            if day is None:
                continue
            credits, count = int(r.credits or 0), int(r.n)
            day["credits_used"] += credits
            day["operations"] += count
            day["cost_usd"] = str(Decimal(day["cost_usd"]) + (r.cost_usd or 0))
            day["by_operation"][r.operation_type] = credits
            total = totals.setdefault(r.operation_type, {"operation_type": r.operation_type,
                                                         "credits": 0, "count": 0})
            total["credits"] += credits
            total["count"] += count
        for day_key, (added, _spent) in ledger.items():
            if day_key in series:
                series[day_key]["credits_added"] = added
        return {
            "days": days,
            "start_date": first.isoformat(),
            "end_date": today.isoformat(),
            "total_credits_used": sum(d["credits_used"] for d in series.values()),
            "total_operations": sum(d["operations"] for d in series.values()),
            "by_operation": sorted(totals.values(), key=lambda t: -t["credits"]),
            "daily": list(series.values()),
        }

    # --- the ledger, invoices, payments ----------------------------------------------------

    async def transaction(self, transaction_id: int) -> CreditTransaction:
        return found(await self.transactions.get(transaction_id), "Transaction")

    async def invoice(self, invoice_id: int) -> Invoice:
        return found(await self.invoices.get(invoice_id), "Invoice")

    async def account_name(self) -> str:
        account = await self.ledger.get_account(self.account_id)
        return account.name if account else ""

    async def payment(self, payment_id: int) -> Payment:
        return found(await self.payments.get(payment_id), "Payment")

    async def payment_options(self) -> dict[str, Any]:
        saved = await self.methods.find(self.methods.table.c.is_enabled.is_(True))
        saved.sort(key=lambda m: (not m.is_default, m.id))
        return {
            "methods": [{"type": m, "name": m.replace("_", " ").title(),
                         "instructions": PAYMENT_INSTRUCTIONS[m], "requires_approval": True}
                        for m in MANUAL_METHODS],
            "saved_methods": saved,
        }

    async def package(self, package_id: int) -> CreditPackage:
        return found(await self.packages.get(package_id), "Credit package")

    async def purchase(self, user_id: int, package_id: int) -> Invoice:
        package = await self.packages.get(package_id)
        if package is None:
            raise NotFound("Credit package not found.", errors={"id": ["Not found."]})
        line = {"description": f"{package.name} credit package: {package.credits:,} credits",
                "quantity": 1, "unit_price": str(package.price), "amount": str(package.price),
                "credits": package.credits}
        name = await self.account_name()
        now = utcnow()
        invoice = await self.invoices.add(Invoice.model_validate({
            "account_id": self.account_id, "invoice_number": f"PENDING-{now.timestamp()}",
            "invoice_type": "credit_package", "status": InvoiceStatus.PENDING,
            "currency": package.currency, "subtotal": package.price, "tax": Decimal("0"),
            "total": package.price, "lines": [line], "credit_package_id": package.id,
            "credits": package.credits, "notes": f"Account: {name}" if name else "",
            "created_by_user_id": user_id, "due_date": now + timedelta(days=14),
        }))
        await self.invoices.number(invoice, f"INV-{now.year}")
        await self.credits.publish(
            ev.INVOICE_CREATED, self.account_id, account_id=self.account_id,
            invoice_id=invoice.id, invoice_number=invoice.invoice_number,
            invoice_type=invoice.invoice_type, total=str(invoice.total),
            currency=invoice.currency, credits=invoice.credits)
        return invoice

    async def submit_payment(self, user_id: int, *, invoice_id: int, amount: Decimal | None,
                             payment_method: str, transaction_reference: str,
                             notes: str) -> Payment:
        if payment_method not in MANUAL_METHODS:
            raise ValidationFailed.field(
                "payment_method", f"Manual payments use one of: {', '.join(MANUAL_METHODS)}.")
        invoice = await self.invoices.locked(invoice_id)
        if invoice is None:
            raise NotFound("Invoice not found.", errors={"invoice_id": ["Not found."]})
        if invoice.status != InvoiceStatus.PENDING:
            raise ValidationFailed.field(
                "invoice_id", f"Invoice {invoice.invoice_number} is {invoice.status}; "
                "only pending invoices take payments.")
        amount = invoice.total if amount is None else amount
        if amount <= 0:
            raise ValidationFailed.field("amount", "Must be a positive amount.")
        if amount != invoice.total:
            raise ValidationFailed.field(
                "amount", f"Must equal the invoice total ({invoice.total} {invoice.currency}).")
        if await self.payments.pending_for(invoice_id) is not None:
            raise Conflict("A payment for this invoice is already awaiting approval.")
        payment = await self.payments.add(Payment.model_validate({
            "account_id": self.account_id, "invoice_id": invoice_id, "amount": amount,
            "currency": invoice.currency, "payment_method": payment_method,
            "status": PaymentStatus.PENDING_APPROVAL,
            "transaction_reference": transaction_reference,
            "notes": notes, "submitted_by_user_id": user_id,
        }))
        await self.credits.publish(
            ev.PAYMENT_SUBMITTED, self.account_id, account_id=self.account_id,
            payment_id=payment.id, invoice_id=invoice_id, amount=str(amount),
            currency=payment.currency, payment_method=payment_method)
        return payment

    # --- payment methods -----------------------------------------------------------------

    async def method(self, method_id: int, *, lock: bool = False) -> PaymentMethod:
        row = await (self.methods.locked(method_id) if lock else self.methods.get(method_id))
        return found(row, "PaymentMethod")

    async def create_method(self, values: dict[str, Any]) -> PaymentMethod:
        make_default = bool(values.pop("is_default", False)) or not await self.methods.find()
        if make_default:
            await self.methods.clear_default()
        return await self.methods.add(PaymentMethod.model_validate(
            {**values, "account_id": self.account_id, "is_default": make_default}))

    async def update_method(self, method_id: int, values: dict[str, Any]) -> PaymentMethod:
        return await changed(await self.method(method_id, lock=True), values, self.methods)

    async def delete_method(self, method_id: int) -> None:
        await self.methods.remove(await self.method(method_id, lock=True))

    async def set_default_method(self, method_id: int) -> PaymentMethod:
        method = await self.method(method_id, lock=True)
        await self.methods.clear_default(keep=method_id)
        method.is_default, method.updated_at = True, utcnow()
        await self.methods.session.flush()
        return method


async def changed(row: T, values: dict[str, Any], rows: Any) -> T:
    """A PUT/PATCH: the fields the caller sent, set and flushed."""
    for key, value in values.items():
        setattr(row, key, value)
    await rows.session.flush()
    return row


class StaffBilling:
    """Platform staff's side: every account's payments to review, credit adjustments,
    the credit packages and the price table."""

    def __init__(self, session: AsyncSession, policy: BillingPolicy) -> None:
        self.credits = BillingService(session, policy)
        everyone = Visibility.all_accounts()
        self.pending = PendingPayments(session, everyone)
        self.payments = Payments(session, everyone)
        self.invoices = Invoices(session, everyone)
        self.packages = Packages(session)
        self.costs = CostConfigs(session)

    async def approve_payment(self, payment_id: int, reviewer_id: int) -> tuple[Payment, bool]:
        """Mark the payment paid, the invoice paid, and apply the invoice (credits).
        Returns (payment, changed); approving an approved payment changes nothing."""
        payment = found(await self.payments.locked(payment_id), "Payment")
        if payment.status == PaymentStatus.SUCCEEDED:
            return payment, False
        if payment.status != PaymentStatus.PENDING_APPROVAL:
            raise Conflict(f"Payment is {payment.status}; only pending payments can be approved.")
        now = utcnow()
        payment.status, payment.reviewed_by_user_id = PaymentStatus.SUCCEEDED, reviewer_id
        payment.reviewed_at, payment.updated_at = now, now
        invoice = found(await self.invoices.locked(payment.invoice_id), "Invoice")
        publish = self.credits.publish
        await publish(ev.PAYMENT_APPROVED, payment.account_id, account_id=payment.account_id,
                      payment_id=payment.id, invoice_id=invoice.id,
                      amount=str(payment.amount), currency=payment.currency)
        if invoice.status != InvoiceStatus.PAID:
            invoice.status, invoice.paid_at, invoice.updated_at = InvoiceStatus.PAID, now, now
            await self.credits.apply_paid_invoice(invoice)
            await publish(ev.INVOICE_PAID, invoice.account_id, account_id=invoice.account_id,
                          invoice_id=invoice.id, invoice_number=invoice.invoice_number,
                          total=str(invoice.total), currency=invoice.currency,
                          credits=invoice.credits)
        await self.payments.session.flush()
        return payment, True

    async def reject_payment(self, payment_id: int, reviewer_id: int, reason: str) -> Payment:
        payment = found(await self.payments.locked(payment_id), "Payment")
        if payment.status == PaymentStatus.FAILED:
            return payment
        if payment.status != PaymentStatus.PENDING_APPROVAL:
            raise Conflict(f"Payment is {payment.status}; only pending payments can be rejected.")
        now = utcnow()
        payment.status, payment.failure_reason = PaymentStatus.FAILED, reason
        payment.reviewed_by_user_id, payment.reviewed_at, payment.updated_at = reviewer_id, now, now
        await self.payments.session.flush()
        await self.credits.publish(
            ev.PAYMENT_REJECTED, payment.account_id, account_id=payment.account_id,
            payment_id=payment.id, invoice_id=payment.invoice_id, reason=reason)
        return payment

    async def adjust(self, account_id: int, amount: int, reason: str, by_user: int,
                     idempotency_key: str | None) -> dict[str, Any]:
        tx_id = await self.credits.adjust(account_id, amount, reason, by_user, idempotency_key)
        balance = await self.credits.repo.get_balance(account_id)
        return {"account_id": account_id, "amount": amount, "transaction_id": tx_id,
                "credits": balance.total if balance else 0,
                "credits_remaining": balance.available if balance else 0}

    # --- packages and the price table ------------------------------------------------------

    async def package(self, package_id: int, *, lock: bool = False) -> CreditPackage:
        row = await (self.packages.locked(package_id) if lock
                     else self.packages.get(package_id))
        if row is None:
            raise NotFound("Credit package not found.")
        return row

    async def create_package(self, values: dict[str, Any]) -> CreditPackage:
        if await self.packages.find(self.packages.table.c.slug == values["slug"]):
            raise ValidationFailed.field("slug", "A package with this slug already exists.")
        return await self.packages.add(CreditPackage.model_validate(values))

    async def update_package(self, package_id: int, values: dict[str, Any]) -> CreditPackage:
        return await changed(await self.package(package_id, lock=True), values, self.packages)

    async def delete_package(self, package_id: int) -> None:
        await self.packages.remove(await self.package(package_id, lock=True))

    async def cost_configs(self) -> list[CreditCostConfig]:
        return await self.costs.find()

    async def cost_config(self, key: str) -> CreditCostConfig:
        """By id or by operation type (the reference's admin uses both)."""
        for config in await self.costs.find():
            if key in (str(config.id), config.operation_type):
                return config
        raise NotFound("Cost configuration not found.",
                       errors={"operation_type": [f"Unknown operation '{key}'."]})

    async def update_cost_config(self, key: str, values: dict[str, Any],
                                 by_user: int) -> CreditCostConfig:
        config = await self.cost_config(key)
        unit = values.get("unit", config.unit)
        if unit not in UNITS:
            raise ValidationFailed.field("unit", f"Must be one of: {', '.join(UNITS)}.")
        tokens_per_credit = values.get("tokens_per_credit", config.tokens_per_credit)
        if unit == "per_tokens" and not tokens_per_credit:
            raise ValidationFailed.field("tokens_per_credit",
                                         "Token-priced operations need tokens per credit.")
        values = {**values, "updated_by_user_id": by_user, "updated_at": utcnow()}
        return await changed(config, values, self.costs)
