"""Billing's HTTP API: the billing section of the reference, its aliases, the usage
analytics of `/api/v1/account/`, and the platform staff's `/api/v1/admin/` endpoints.

Plain JSON for single resources, `page_response` for lists, `message_response` where an
action answers with a message; the gateway adds the envelope.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from sqlmodel import SQLModel
from starlette.responses import Response

from libs.common.pagination import PageParams, message_response, page_params, page_response
from libs.common.problems import NotFound, ValidationFailed
from libs.common.security import Principal
from libs.common.tenancy import AdminOrOwner, CurrentPrincipal, PlatformStaff, UnitOfWork, UoW
from services.billing import schemas as s
from services.billing.models import (
    CreditCostConfig,
    CreditPackage,
    CreditTransaction,
    CreditUsageLog,
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    TransactionType,
)
from services.billing.pdf import render_invoice
from services.billing.repository import table
from services.billing.service import MANUAL_METHODS, BillingPolicy, BillingService

billing = APIRouter(prefix="/api/v1/billing", tags=["billing"])
account = APIRouter(prefix="/api/v1/account", tags=["billing"])
admin = APIRouter(prefix="/api/v1/admin", tags=["billing-admin"])

Page = Annotated[PageParams, Depends(page_params)]
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def service(request: Request, uow: Any) -> BillingService:
    settings = request.app.state.settings
    policy = BillingPolicy(
        low_balance_threshold=settings.low_balance_threshold,
        default_hold_ttl_seconds=settings.default_hold_ttl_seconds,
        max_hold_ttl_seconds=settings.max_hold_ttl_seconds, currency=settings.currency)
    return BillingService(uow.session, policy)


def parse_day(name: str, value: str | None) -> date | None:
    if value is None or value == "":
        return None
    try:
        if not _DAY.match(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed.field(name, "Enter a valid date in YYYY-MM-DD format.") from None


def date_range(start_date: str | None, end_date: str | None) -> tuple[date | None, date | None]:
    start, end = parse_day("start_date", start_date), parse_day("end_date", end_date)
    if start and end and start > end:
        raise ValidationFailed.field("end_date", "Must not be before start_date.")
    return start, end


def _range_filters(column: Any, start: date | None, end: date | None) -> list[Any]:
    from services.billing.service import _day_start

    filters = []
    if start is not None:
        filters.append(column >= _day_start(start))
    if end is not None:
        from datetime import timedelta

        filters.append(column < _day_start(end) + timedelta(days=1))
    return filters


def _choice(name: str, value: str | None, allowed: Iterable[str]) -> str | None:
    if value is None or value == "":
        return None
    allowed = {str(choice) for choice in allowed}
    if value not in allowed:
        raise ValidationFailed.field(name, f"Unknown value '{value}'. Allowed: "
                                     f"{', '.join(sorted(allowed))}.")
    return value


def _dump(model: type[s.Out], rows: list[Any]) -> list[dict[str, Any]]:
    return [model.model_validate(r).model_dump(mode="json") for r in rows]


async def _owned(svc: BillingService, model: type[Any], ident: int, principal: Principal,
                 *, lock: bool = False) -> Any:
    row = await svc.repo.get(model, ident, account_id=principal.account_id, lock=lock)
    if row is None:
        raise NotFound(f"{model.__name__} not found.")
    return row


# ===================================================================== credits: balance


@billing.get("/credits/balance/", response_model=s.BalanceOut)
@billing.get("/credits/balance/balance/", response_model=s.BalanceOut)
async def balance(request: Request, uow: UoW, principal: CurrentPrincipal) -> dict[str, Any]:
    return await service(request, uow).balance_summary(principal.account_id)


# ======================================================================= credits: usage


@billing.get("/credits/usage/")
async def usage_list(request: Request, uow: UoW, principal: CurrentPrincipal, page: Page,
                     operation_type: str | None = None, start_date: str | None = None,
                     end_date: str | None = None) -> Response:
    svc = service(request, uow)
    start, end = date_range(start_date, end_date)
    tbl = table(CreditUsageLog)
    filters = [tbl.c.account_id == principal.account_id,
               *_range_filters(tbl.c.created_at, start, end)]
    if _choice("operation_type", operation_type, await svc.repo.operation_types()):
        filters.append(tbl.c.operation_type == operation_type)
    count, rows = await svc.repo.page(CreditUsageLog, filters=filters, offset=page.offset,
                                      limit=page.limit)
    return page_response(request, page, count, _dump(s.UsageLogOut, rows))


@billing.get("/credits/usage/summary/")
async def usage_summary(request: Request, uow: UoW, principal: CurrentPrincipal,
                        start_date: str | None = None,
                        end_date: str | None = None) -> dict[str, Any]:
    start, end = date_range(start_date, end_date)
    return await service(request, uow).usage_summary(principal.account_id, start, end)


@billing.get("/credits/usage/limits/")
async def usage_limits(request: Request, uow: UoW, principal: CurrentPrincipal) -> dict[str, Any]:
    return await service(request, uow).usage_limits(principal.account_id)


@billing.get("/credits/usage/{log_id}/", response_model=s.UsageLogOut)
async def usage_detail(log_id: int, request: Request, uow: UoW,
                       principal: CurrentPrincipal) -> Any:
    return await _owned(service(request, uow), CreditUsageLog, log_id, principal)


@account.get("/usage/analytics/")
async def usage_analytics(request: Request, uow: UoW, principal: CurrentPrincipal,
                          days: int = Query(30, ge=1, le=365)) -> dict[str, Any]:
    return await service(request, uow).usage_analytics(principal.account_id, days)


# ================================================================ credits: transactions


async def _transactions(request: Request, uow: Any, principal: Principal, page: PageParams,
                        transaction_type: str | None, start_date: str | None,
                        end_date: str | None) -> Response:
    svc = service(request, uow)
    start, end = date_range(start_date, end_date)
    tbl = table(CreditTransaction)
    filters = [tbl.c.account_id == principal.account_id,
               *_range_filters(tbl.c.created_at, start, end)]
    if _choice("transaction_type", transaction_type, TransactionType):
        filters.append(tbl.c.transaction_type == transaction_type)
    count, rows = await svc.repo.page(CreditTransaction, filters=filters, offset=page.offset,
                                      limit=page.limit, order=[tbl.c.id.desc()])
    return page_response(request, page, count, _dump(s.TransactionOut, rows))


@billing.get("/credits/transactions/")
async def transactions(request: Request, uow: UoW, principal: AdminOrOwner, page: Page,
                       transaction_type: str | None = None, start_date: str | None = None,
                       end_date: str | None = None) -> Response:
    return await _transactions(request, uow, principal, page, transaction_type, start_date,
                               end_date)


@billing.get("/transactions/")
async def transactions_alias(request: Request, uow: UoW, principal: AdminOrOwner, page: Page,
                             transaction_type: str | None = None, start_date: str | None = None,
                             end_date: str | None = None) -> Response:
    return await _transactions(request, uow, principal, page, transaction_type, start_date,
                               end_date)


@billing.get("/credits/transactions/{transaction_id}/", response_model=s.TransactionOut)
@billing.get("/transactions/{transaction_id}/", response_model=s.TransactionOut)
async def transaction_detail(transaction_id: int, request: Request, uow: UoW,
                             principal: AdminOrOwner) -> Any:
    return await _owned(service(request, uow), CreditTransaction, transaction_id, principal)


# ============================================================================ invoices


@billing.get("/invoices/")
async def invoices(request: Request, uow: UoW, principal: AdminOrOwner, page: Page,
                   status: str | None = None) -> Response:
    svc = service(request, uow)
    tbl = table(Invoice)
    filters = [tbl.c.account_id == principal.account_id]
    if _choice("status", status, InvoiceStatus):
        filters.append(tbl.c.status == status)
    count, rows = await svc.repo.page(Invoice, filters=filters, offset=page.offset,
                                      limit=page.limit)
    return page_response(request, page, count, _dump(s.InvoiceOut, rows))


@billing.get("/invoices/{invoice_id}/", response_model=s.InvoiceOut)
async def invoice_detail(invoice_id: int, request: Request, uow: UoW,
                         principal: AdminOrOwner) -> Any:
    return await _owned(service(request, uow), Invoice, invoice_id, principal)


@billing.get("/invoices/{invoice_id}/download_pdf/", response_class=Response,
             responses={200: {"content": {"application/pdf": {}}}})
async def invoice_pdf(invoice_id: int, request: Request, uow: UoW,
                      principal: AdminOrOwner) -> Response:
    svc = service(request, uow)
    invoice = await _owned(svc, Invoice, invoice_id, principal)
    account_row = await svc.repo.get_account(principal.account_id)
    content = render_invoice(invoice, account_row.name if account_row else "")
    return Response(content, media_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="{invoice.invoice_number}.pdf"'})


# ============================================================================ payments


@billing.get("/payments/")
async def payments(request: Request, uow: UoW, principal: AdminOrOwner, page: Page,
                   status: str | None = None) -> Response:
    svc = service(request, uow)
    tbl = table(Payment)
    filters = [tbl.c.account_id == principal.account_id]
    if _choice("status", status, PaymentStatus):
        filters.append(tbl.c.status == status)
    count, rows = await svc.repo.page(Payment, filters=filters, offset=page.offset,
                                      limit=page.limit)
    return page_response(request, page, count, _dump(s.PaymentOut, rows))


@billing.get("/payments/available_methods/")
async def available_methods(request: Request, uow: UoW,
                            principal: AdminOrOwner) -> dict[str, Any]:
    svc = service(request, uow)
    saved = await svc.repo.list_all(
        PaymentMethod,
        filters=[PaymentMethod.account_id == principal.account_id,
                 table(PaymentMethod).c.is_enabled.is_(True)],
        order=[table(PaymentMethod).c.is_default.desc(), table(PaymentMethod).c.id])
    instructions = {
        "bank_transfer": "Transfer the invoice total quoting the invoice number, then submit "
                         "the bank's transaction reference; staff approve it.",
        "manual": "Pay by another arranged means and submit its reference; staff approve it.",
    }
    return {
        "methods": [{"type": m, "name": m.replace("_", " ").title(),
                     "instructions": instructions[m], "requires_approval": True}
                    for m in MANUAL_METHODS],
        "saved_methods": _dump(s.PaymentMethodOut, saved),
    }


@billing.get("/payments/{payment_id}/", response_model=s.PaymentOut)
async def payment_detail(payment_id: int, request: Request, uow: UoW,
                         principal: AdminOrOwner) -> Any:
    return await _owned(service(request, uow), Payment, payment_id, principal)


@billing.post("/payments/", status_code=201)
async def submit_payment(body: s.PaymentCreate, request: Request, uow: UoW,
                         principal: AdminOrOwner) -> Response:
    payment = await service(request, uow).submit_payment(
        principal.account_id, principal.user_id, invoice_id=body.invoice_id, amount=body.amount,
        payment_method=body.payment_method, transaction_reference=body.transaction_reference,
        notes=body.notes)
    out = s.PaymentOut.model_validate(payment)
    return message_response(out, "Payment submitted; it awaits approval.", 201)


# ===================================================================== credit packages


@billing.get("/credit-packages/")
async def packages(request: Request, uow: UoW, _: CurrentPrincipal, page: Page) -> Response:
    svc = service(request, uow)
    tbl = table(CreditPackage)
    count, rows = await svc.repo.page(CreditPackage, filters=[tbl.c.is_active.is_(True)],
                                      offset=page.offset, limit=page.limit,
                                      order=[tbl.c.sort_order, tbl.c.id])
    return page_response(request, page, count, _dump(s.PackageOut, rows))


@billing.get("/credit-packages/{package_id}/", response_model=s.PackageOut)
async def package_detail(package_id: int, request: Request, uow: UoW,
                         _: CurrentPrincipal) -> Any:
    package = await service(request, uow).repo.get(CreditPackage, package_id)
    if package is None or not package.is_active:
        raise NotFound("Credit package not found.")
    return package


@billing.post("/credit-packages/{package_id}/purchase/", status_code=201)
async def purchase(package_id: int, request: Request, uow: UoW,
                   principal: AdminOrOwner) -> Response:
    invoice = await service(request, uow).purchase_package(
        principal.account_id, principal.user_id, package_id)
    out = s.InvoiceOut.model_validate(invoice)
    return message_response(out, f"Invoice {invoice.invoice_number} created; pay it to "
                                 f"receive {invoice.credits:,} credits.", 201)


# ===================================================================== payment methods


@billing.get("/payment-methods/")
async def payment_methods(request: Request, uow: UoW, principal: AdminOrOwner,
                          page: Page) -> Response:
    tbl = table(PaymentMethod)
    count, rows = await service(request, uow).repo.page(
        PaymentMethod, filters=[tbl.c.account_id == principal.account_id], offset=page.offset,
        limit=page.limit, order=[tbl.c.is_default.desc(), tbl.c.id])
    return page_response(request, page, count, _dump(s.PaymentMethodOut, rows))


@billing.post("/payment-methods/", status_code=201, response_model=s.PaymentMethodOut)
async def create_payment_method(body: s.PaymentMethodCreate, request: Request, uow: UoW,
                                principal: AdminOrOwner) -> Any:
    method = await service(request, uow).create_payment_method(principal.account_id,
                                                               body.model_dump())
    out = s.PaymentMethodOut.model_validate(method)
    return out


@billing.get("/payment-methods/{method_id}/", response_model=s.PaymentMethodOut)
async def payment_method_detail(method_id: int, request: Request, uow: UoW,
                                principal: AdminOrOwner) -> Any:
    return await _owned(service(request, uow), PaymentMethod, method_id, principal)


async def _patched(uow: UnitOfWork, row: SQLModel, body: BaseModel,
                   out: type[BaseModel]) -> BaseModel:
    """PUT/PATCH: set the fields the caller sent, then answer the row as it now is."""
    for key, value in body.model_dump(exclude_unset=True, exclude_none=True).items():
        setattr(row, key, value)
    await uow.session.flush()
    return out.model_validate(row)


@billing.put("/payment-methods/{method_id}/", response_model=s.PaymentMethodOut)
@billing.patch("/payment-methods/{method_id}/", response_model=s.PaymentMethodOut)
async def update_payment_method(method_id: int, body: s.PaymentMethodUpdate, request: Request,
                                uow: UoW, principal: AdminOrOwner) -> Any:
    method = await _owned(service(request, uow), PaymentMethod, method_id, principal, lock=True)
    return await _patched(uow, method, body, s.PaymentMethodOut)


@billing.delete("/payment-methods/{method_id}/", status_code=204)
async def delete_payment_method(method_id: int, request: Request, uow: UoW,
                                principal: AdminOrOwner) -> Response:
    svc = service(request, uow)
    method = await _owned(svc, PaymentMethod, method_id, principal, lock=True)
    await svc.repo.delete(method)
    return Response(status_code=204)


@billing.post("/payment-methods/{method_id}/set_default/", response_model=s.PaymentMethodOut)
async def set_default_payment_method(method_id: int, request: Request, uow: UoW,
                                     principal: AdminOrOwner) -> Any:
    svc = service(request, uow)
    method = await _owned(svc, PaymentMethod, method_id, principal, lock=True)
    method = await svc.set_default_payment_method(method)
    out = s.PaymentMethodOut.model_validate(method)
    return out


# ============================================================== admin (platform staff)


@admin.get("/payments/pending/")
async def pending_payments(request: Request, uow: UoW, _: PlatformStaff, page: Page) -> Response:
    tbl = table(Payment)
    count, rows = await service(request, uow).repo.page(
        Payment, filters=[tbl.c.status == PaymentStatus.PENDING_APPROVAL], offset=page.offset,
        limit=page.limit, order=[tbl.c.created_at, tbl.c.id])
    return page_response(request, page, count, _dump(s.AdminPaymentOut, rows))


@admin.post("/payments/{payment_id}/approve/")
async def approve_payment(payment_id: int, request: Request, uow: UoW,
                          staff: PlatformStaff) -> Response:
    payment, changed = await service(request, uow).approve_payment(payment_id, staff.user_id)
    out = s.AdminPaymentOut.model_validate(payment)
    return message_response(out, "Payment approved." if changed
                            else "Payment was already approved; nothing changed.")


@admin.post("/payments/{payment_id}/reject/")
async def reject_payment(payment_id: int, body: s.PaymentReject, request: Request, uow: UoW,
                         staff: PlatformStaff) -> Response:
    payment = await service(request, uow).reject_payment(payment_id, staff.user_id, body.reason)
    out = s.AdminPaymentOut.model_validate(payment)
    return message_response(out, "Payment rejected.")


@admin.post("/credits/adjust/")
async def adjust_credits(body: s.AdjustCredits, request: Request, uow: UoW,
                         staff: PlatformStaff) -> Response:
    svc = service(request, uow)
    tx_id = await svc.adjust(body.account_id, body.amount, body.reason, staff.user_id,
                             body.idempotency_key)
    balance = await svc.repo.get_balance(body.account_id)
    data = {"account_id": body.account_id, "amount": body.amount, "transaction_id": tx_id,
            "credits": balance.total if balance else 0,
            "credits_remaining": balance.available if balance else 0}
    return message_response(data, "Credits adjusted." if tx_id is not None
                            else "This adjustment was already applied; nothing changed.")


@admin.get("/credit-packages/")
async def admin_packages(request: Request, uow: UoW, _: PlatformStaff, page: Page) -> Response:
    tbl = table(CreditPackage)
    count, rows = await service(request, uow).repo.page(
        CreditPackage, filters=[], offset=page.offset, limit=page.limit,
        order=[tbl.c.sort_order, tbl.c.id])
    return page_response(request, page, count, _dump(s.PackageOut, rows))


@admin.post("/credit-packages/", status_code=201, response_model=s.PackageOut)
async def admin_create_package(body: s.PackageCreate, request: Request, uow: UoW,
                               _: PlatformStaff) -> Any:
    svc = service(request, uow)
    clash = await svc.repo.list_all(CreditPackage, filters=[CreditPackage.slug == body.slug],
                                    order=[])
    if clash:
        raise ValidationFailed.field("slug", "A package with this slug already exists.")
    package = await svc.repo.add(CreditPackage.model_validate(body.model_dump()))
    out = s.PackageOut.model_validate(package)
    return out


async def _package(svc: BillingService, package_id: int, *, lock: bool = False) -> CreditPackage:
    package = await svc.repo.get(CreditPackage, package_id, lock=lock)
    if package is None:
        raise NotFound("Credit package not found.")
    return package


@admin.get("/credit-packages/{package_id}/", response_model=s.PackageOut)
async def admin_package(package_id: int, request: Request, uow: UoW, _: PlatformStaff) -> Any:
    return await _package(service(request, uow), package_id)


@admin.put("/credit-packages/{package_id}/", response_model=s.PackageOut)
@admin.patch("/credit-packages/{package_id}/", response_model=s.PackageOut)
async def admin_update_package(package_id: int, body: s.PackageUpdate, request: Request,
                               uow: UoW, _: PlatformStaff) -> Any:
    package = await _package(service(request, uow), package_id, lock=True)
    return await _patched(uow, package, body, s.PackageOut)


@admin.delete("/credit-packages/{package_id}/", status_code=204)
async def admin_delete_package(package_id: int, request: Request, uow: UoW,
                               _: PlatformStaff) -> Response:
    svc = service(request, uow)
    await svc.repo.delete(await _package(svc, package_id, lock=True))
    return Response(status_code=204)


@admin.get("/credit-costs/")
async def admin_costs(request: Request, uow: UoW, _: PlatformStaff) -> list[dict[str, Any]]:
    return _dump(s.CostConfigOut, list(await service(request, uow).repo.cost_configs()))


async def _cost(svc: BillingService, key: str) -> CreditCostConfig:
    configs = {c.operation_type: c for c in await svc.repo.cost_configs()}
    by_id = {str(c.id): c for c in configs.values()}
    config = by_id.get(key) or configs.get(key)
    if config is None:
        raise NotFound("Cost configuration not found.",
                       errors={"operation_type": [f"Unknown operation '{key}'."]})
    return config


@admin.get("/credit-costs/{key}/", response_model=s.CostConfigOut)
async def admin_cost(key: str, request: Request, uow: UoW, _: PlatformStaff) -> Any:
    return await _cost(service(request, uow), key)


@admin.put("/credit-costs/{key}/", response_model=s.CostConfigOut)
@admin.patch("/credit-costs/{key}/", response_model=s.CostConfigOut)
async def admin_update_cost(key: str, body: s.CostConfigUpdate, request: Request, uow: UoW,
                            staff: PlatformStaff) -> Any:
    svc = service(request, uow)
    config = await _cost(svc, key)
    config = await svc.update_cost_config(config, body.model_dump(exclude_unset=True,
                                                                  exclude_none=True),
                                          staff.user_id)
    out = s.CostConfigOut.model_validate(config)
    return out


ROUTERS = (billing, account, admin)
