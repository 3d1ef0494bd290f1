"""Billing's HTTP API: the billing section of the reference, its aliases, the usage
analytics of `/api/v1/account/`, and the platform staff's `/api/v1/admin/` endpoints.

Endpoints parse, call `AccountBilling` or `StaffBilling`, and answer: plain JSON for
single resources, `page_response` for lists, `message_response` where an action answers
with a message; the gateway adds the envelope. No SQL here, no commit (the unit of work
commits once, before the response).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from starlette.responses import Response

from libs.common.ids import Id
from libs.common.pagination import message_response, page_response
from libs.common.problems import Conflict, answers
from libs.common.repository import ListQuery, Page
from libs.common.tenancy import AdminOrOwner, CurrentPrincipal, PlatformStaff, UoW
from services.billing import schemas as s
from services.billing.pdf import render_invoice
from services.billing.service import BillingPolicy
from services.billing.service.accounts import AccountBilling, StaffBilling

billing = APIRouter(prefix="/api/v1/billing", tags=["billing"])
account = APIRouter(prefix="/api/v1/account", tags=["billing"])
admin = APIRouter(prefix="/api/v1/admin", tags=["billing-admin"])
# Approving or rejecting a payment that is no longer pending.
NOT_PENDING = answers(Conflict, description="The payment is not pending")


def policy(request: Request) -> BillingPolicy:
    settings = request.app.state.settings
    return BillingPolicy(
        low_balance_threshold=settings.low_balance_threshold,
        default_hold_ttl_seconds=settings.default_hold_ttl_seconds,
        max_hold_ttl_seconds=settings.max_hold_ttl_seconds, currency=settings.currency)


async def _mine(request: Request, uow: UoW, principal: CurrentPrincipal) -> AccountBilling:
    return AccountBilling(uow.session, principal.account_id, policy(request))


async def _owners(request: Request, uow: UoW, principal: AdminOrOwner) -> AccountBilling:
    return AccountBilling(uow.session, principal.account_id, policy(request))


async def _staff(request: Request, uow: UoW, _: PlatformStaff) -> StaffBilling:
    return StaffBilling(uow.session, policy(request))


Mine = Annotated[AccountBilling, Depends(_mine)]
Owners = Annotated[AccountBilling, Depends(_owners)]  # admins and owners of the account
Staff = Annotated[StaffBilling, Depends(_staff)]


def listed(request: Request, query: ListQuery[Any], page: Page[Any],
           out: type[s.Out]) -> Response:
    rows = [out.model_validate(row).model_dump(mode="json") for row in page.rows]
    return page_response(request, query.page, page.count, rows)


def patch(body: BaseModel) -> dict[str, Any]:
    """The fields a PUT/PATCH sent."""
    return body.model_dump(exclude_unset=True, exclude_none=True)


# ===================================================================== credits: balance


@billing.get("/credits/balance/", response_model=s.BalanceOut)
@billing.get("/credits/balance/balance/", response_model=s.BalanceOut)
async def balance(mine: Mine) -> dict[str, Any]:
    return await mine.balance()


# ======================================================================= credits: usage


@billing.get("/credits/usage/")
async def usage_list(request: Request, mine: Mine, query: s.UsageQuery) -> Response:
    return listed(request, query, await mine.usage(query), s.UsageLogOut)


@billing.get("/credits/usage/summary/")
async def usage_summary(
    mine: Mine, days: Annotated[s.DateRange, Depends(s.DateRange.from_query)],
) -> dict[str, Any]:
    return await mine.usage_summary(days.start_date, days.end_date)


@billing.get("/credits/usage/limits/")
async def usage_limits(mine: Mine) -> dict[str, Any]:
    return await mine.usage_limits()


@billing.get("/credits/usage/{log_id}/", response_model=s.UsageLogOut)
async def usage_detail(log_id: Id, mine: Mine) -> Any:
    return await mine.usage_log(log_id)


@account.get("/usage/analytics/")
async def usage_analytics(mine: Mine, days: int = Query(30, ge=1, le=365)) -> dict[str, Any]:
    return await mine.usage_analytics(days)


# ================================================================ credits: transactions


@billing.get("/credits/transactions/")
@billing.get("/transactions/")
async def transactions(request: Request, owners: Owners, query: s.TransactionQuery) -> Response:
    return listed(request, query, await owners.transactions.page(query), s.TransactionOut)


@billing.get("/credits/transactions/{transaction_id}/", response_model=s.TransactionOut)
@billing.get("/transactions/{transaction_id}/", response_model=s.TransactionOut)
async def transaction_detail(transaction_id: Id, owners: Owners) -> Any:
    return await owners.transaction(transaction_id)


# ============================================================================ invoices


@billing.get("/invoices/")
async def invoices(request: Request, owners: Owners, query: s.InvoiceQuery) -> Response:
    return listed(request, query, await owners.invoices.page(query), s.InvoiceOut)


@billing.get("/invoices/{invoice_id}/", response_model=s.InvoiceOut)
async def invoice_detail(invoice_id: Id, owners: Owners) -> Any:
    return await owners.invoice(invoice_id)


@billing.get("/invoices/{invoice_id}/download_pdf/", response_class=Response,
             responses={200: {"content": {"application/pdf": {}}}})
async def invoice_pdf(invoice_id: Id, owners: Owners) -> Response:
    invoice = await owners.invoice(invoice_id)
    content = render_invoice(invoice, await owners.account_name())
    return Response(content, media_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="{invoice.invoice_number}.pdf"'})


# ============================================================================ payments


@billing.get("/payments/")
async def payments(request: Request, owners: Owners, query: s.PaymentQuery) -> Response:
    return listed(request, query, await owners.payments.page(query), s.PaymentOut)


@billing.get("/payments/available_methods/")
async def available_methods(owners: Owners) -> dict[str, Any]:
    options = await owners.payment_options()
    options["saved_methods"] = [s.PaymentMethodOut.model_validate(m).model_dump(mode="json")
                                for m in options["saved_methods"]]
    return options


@billing.get("/payments/{payment_id}/", response_model=s.PaymentOut)
async def payment_detail(payment_id: Id, owners: Owners) -> Any:
    return await owners.payment(payment_id)


@billing.post("/payments/", status_code=201,
              responses=answers(Conflict, description="A payment awaits approval"))
async def submit_payment(body: s.PaymentCreate, owners: Owners,
                         principal: AdminOrOwner) -> Response:
    payment = await owners.submit_payment(
        principal.user_id, invoice_id=body.invoice_id, amount=body.amount,
        payment_method=body.payment_method, transaction_reference=body.transaction_reference,
        notes=body.notes)
    return message_response(s.PaymentOut.model_validate(payment),
                            "Payment submitted; it awaits approval.", 201)


# ===================================================================== credit packages


@billing.get("/credit-packages/")
async def packages(request: Request, mine: Mine, query: s.PackageQuery) -> Response:
    return listed(request, query, await mine.packages.page(query), s.PackageOut)


@billing.get("/credit-packages/{package_id}/", response_model=s.PackageOut)
async def package_detail(package_id: Id, mine: Mine) -> Any:
    return await mine.package(package_id)


@billing.post("/credit-packages/{package_id}/purchase/", status_code=201)
async def purchase(package_id: Id, owners: Owners, principal: AdminOrOwner) -> Response:
    invoice = await owners.purchase(principal.user_id, package_id)
    return message_response(s.InvoiceOut.model_validate(invoice),
                            f"Invoice {invoice.invoice_number} created; pay it to "
                            f"receive {invoice.credits:,} credits.", 201)


# ===================================================================== payment methods


@billing.get("/payment-methods/")
async def payment_methods(request: Request, owners: Owners, query: s.MethodQuery) -> Response:
    return listed(request, query, await owners.methods.page(query), s.PaymentMethodOut)


@billing.post("/payment-methods/", status_code=201, response_model=s.PaymentMethodOut)
async def create_payment_method(body: s.PaymentMethodCreate, owners: Owners) -> Any:
    return await owners.create_method(body.model_dump())


@billing.get("/payment-methods/{method_id}/", response_model=s.PaymentMethodOut)
async def payment_method_detail(method_id: Id, owners: Owners) -> Any:
    return await owners.method(method_id)


@billing.put("/payment-methods/{method_id}/", response_model=s.PaymentMethodOut)
@billing.patch("/payment-methods/{method_id}/", response_model=s.PaymentMethodOut)
async def update_payment_method(method_id: Id, body: s.PaymentMethodUpdate,
                                owners: Owners) -> Any:
    return await owners.update_method(method_id, patch(body))


@billing.delete("/payment-methods/{method_id}/", status_code=204)
async def delete_payment_method(method_id: Id, owners: Owners) -> Response:
    await owners.delete_method(method_id)
    return Response(status_code=204)


@billing.post("/payment-methods/{method_id}/set_default/", response_model=s.PaymentMethodOut)
async def set_default_payment_method(method_id: Id, owners: Owners) -> Any:
    return await owners.set_default_method(method_id)


# ============================================================== admin (platform staff)


@admin.get("/payments/pending/")
async def pending_payments(request: Request, staff: Staff, query: s.PendingQuery) -> Response:
    return listed(request, query, await staff.pending.page(query), s.AdminPaymentOut)


@admin.post("/payments/{payment_id}/approve/", responses=NOT_PENDING)
async def approve_payment(payment_id: Id, staff: Staff, reviewer: PlatformStaff) -> Response:
    payment, changed = await staff.approve_payment(payment_id, reviewer.user_id)
    return message_response(s.AdminPaymentOut.model_validate(payment),
                            "Payment approved." if changed
                            else "Payment was already approved; nothing changed.")


@admin.post("/payments/{payment_id}/reject/", responses=NOT_PENDING)
async def reject_payment(payment_id: Id, body: s.PaymentReject, staff: Staff,
                         reviewer: PlatformStaff) -> Response:
    payment = await staff.reject_payment(payment_id, reviewer.user_id, body.reason)
    return message_response(s.AdminPaymentOut.model_validate(payment), "Payment rejected.")


@admin.post("/credits/adjust/")
async def adjust_credits(body: s.AdjustCredits, staff: Staff,
                         reviewer: PlatformStaff) -> Response:
    data = await staff.adjust(body.account_id, body.amount, body.reason, reviewer.user_id,
                              body.idempotency_key)
    return message_response(data, "Credits adjusted." if data["transaction_id"] is not None
                            else "This adjustment was already applied; nothing changed.")


@admin.get("/credit-packages/")
async def admin_packages(request: Request, staff: Staff, query: s.PackageQuery) -> Response:
    return listed(request, query, await staff.packages.page(query), s.PackageOut)


@admin.post("/credit-packages/", status_code=201, response_model=s.PackageOut)
async def admin_create_package(body: s.PackageCreate, staff: Staff) -> Any:
    return await staff.create_package(body.model_dump())


@admin.get("/credit-packages/{package_id}/", response_model=s.PackageOut)
async def admin_package(package_id: Id, staff: Staff) -> Any:
    return await staff.package(package_id)


@admin.put("/credit-packages/{package_id}/", response_model=s.PackageOut)
@admin.patch("/credit-packages/{package_id}/", response_model=s.PackageOut)
async def admin_update_package(package_id: Id, body: s.PackageUpdate, staff: Staff) -> Any:
    return await staff.update_package(package_id, patch(body))


@admin.delete("/credit-packages/{package_id}/", status_code=204)
async def admin_delete_package(package_id: Id, staff: Staff) -> Response:
    await staff.delete_package(package_id)
    return Response(status_code=204)


@admin.get("/credit-costs/")
async def admin_costs(staff: Staff) -> list[dict[str, Any]]:
    return [s.CostConfigOut.model_validate(c).model_dump(mode="json")
            for c in await staff.cost_configs()]


@admin.get("/credit-costs/{key}/", response_model=s.CostConfigOut)
async def admin_cost(key: str, staff: Staff) -> Any:
    return await staff.cost_config(key)


@admin.put("/credit-costs/{key}/", response_model=s.CostConfigOut)
@admin.patch("/credit-costs/{key}/", response_model=s.CostConfigOut)
async def admin_update_cost(key: str, body: s.CostConfigUpdate, staff: Staff,
                            reviewer: PlatformStaff) -> Any:
    return await staff.update_cost_config(key, patch(body), reviewer.user_id)


ROUTERS = (billing, account, admin)
