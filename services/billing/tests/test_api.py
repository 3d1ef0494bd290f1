# ruff: noqa: PT018 - compound assertions read as one fact about a response
"""The HTTP API through the in-process app: the purchase flow end to end, the PDF,
roles, tenant isolation and bad input."""

from __future__ import annotations

import asyncio
import io

import httpx
import pytest
from nats.aio.client import Client as NATS
from pypdf import PdfReader

from libs.common.billing import BillingClient
from libs.common.db import Database, TenantScope
from libs.common.testing.checks import waiting_for_a_lock
from libs.common.testing.tokens import TestIssuer
from libs.common.uow import unit_of_work
from services.billing.service.accounts import AccountBilling
from services.billing.tests.conftest import (
    assert_ledger_consistent,
    fund,
    new_account_id,
    policy,
)

pytestmark = pytest.mark.usefixtures("worker")
B = "/api/v1/billing"


def who(issuer: TestIssuer, account: int, role: str = "owner", user: int = 7) -> dict[str, str]:
    return issuer.headers(user_id=user, account_id=account, role=role)


async def test_purchase_flow_through_the_api(client: httpx.AsyncClient, issuer: TestIssuer,
                                             db: Database, nc: NATS) -> None:
    account = new_account_id()
    owner, viewer = who(issuer, account), who(issuer, account, "viewer", 8)
    staff = who(issuer, new_account_id(), "developer", 9)
    await fund(db, account, plan=200)
    hold = await BillingClient(nc).hold(account, "idea_generation", units=5)
    await BillingClient(nc).capture(hold.hold_id, units=4, model="local-ideas",
                                    cost_usd="0.002", related_object_type="cluster",
                                    related_object_id=11)

    for path in ("/credits/balance/", "/credits/balance/balance/"):
        r = await client.get(B + path, headers=viewer)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["credits"] == 192 and body["credits_remaining"] == 192
        assert body["credits_used_this_month"] == 8 and body["plan_credits_per_month"] == 200

    usage = (await client.get(B + "/credits/usage/", headers=viewer)).json()
    assert usage["count"] == 1 and usage["results"][0]["credits_used"] == 8
    assert usage["results"][0]["operation_type"] == "idea_generation"
    log_id = usage["results"][0]["id"]
    assert (await client.get(f"{B}/credits/usage/{log_id}/", headers=viewer)).status_code == 200
    summary = (await client.get(B + "/credits/usage/summary/", headers=viewer)).json()
    assert summary["total_credits"] == 8 and summary["by_operation"][0]["count"] == 1
    limits = (await client.get(B + "/credits/usage/limits/", headers=viewer)).json()
    assert limits["credits"]["credits_remaining"] == 192
    analytics = (await client.get("/api/v1/account/usage/analytics/?days=7",
                                  headers=viewer)).json()
    assert len(analytics["daily"]) == 7 and analytics["total_credits_used"] == 8
    assert analytics["daily"][-1]["by_operation"] == {"idea_generation": 8}

    # Money is for owners and admins.
    assert (await client.get(B + "/credits/transactions/", headers=viewer)).status_code == 403
    txs = (await client.get(B + "/transactions/?transaction_type=deduction",
                            headers=owner)).json()
    assert txs["count"] == 1 and txs["results"][0]["amount"] == -8
    # An unknown query parameter is ignored (django-filter), an unknown ordering term
    # dropped (DRF's OrderingFilter, ADR 0041).
    same = (await client.get(B + "/transactions/?transaction_type=deduction&colour=red"
                             "&ordering=bogus,-amount", headers=owner))
    assert same.status_code == 200, same.text
    assert same.json()["results"] == txs["results"]

    packages = (await client.get(B + "/credit-packages/", headers=viewer)).json()
    assert [p["credits"] for p in packages["results"]] == [1000, 5000, 20000, 100000]
    growth = packages["results"][1]
    assert growth["price"] == "45.00"
    assert (await client.post(f"{B}/credit-packages/{growth['id']}/purchase/",
                              headers=viewer)).status_code == 403
    r = await client.post(f"{B}/credit-packages/{growth['id']}/purchase/", headers=owner)
    assert r.status_code == 201, r.text
    invoice = r.json()["data"]
    assert invoice["status"] == "pending" and invoice["total"] == "45.00"
    assert invoice["invoice_number"].startswith("INV-")

    pdf = await client.get(f"{B}/invoices/{invoice['id']}/download_pdf/", headers=owner)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert invoice["invoice_number"] in text and "45.00" in text and "5,000" in text

    methods = (await client.get(B + "/payments/available_methods/", headers=owner)).json()
    assert {m["type"] for m in methods["methods"]} == {"bank_transfer", "manual"}
    r = await client.post(B + "/payments/", headers=owner, json={
        "invoice_id": invoice["id"], "payment_method": "bank_transfer",
        "transaction_reference": "BANK-REF-1", "notes": "wired",
        "reference": "ignored"})  # no field: ignored, as DRF ignores it (ADR 0041)
    assert r.status_code == 201, r.text
    payment = r.json()["data"]
    assert payment["status"] == "pending_approval" and payment["amount"] == "45.00"
    dup = await client.post(B + "/payments/", headers=owner, json={
        "invoice_id": invoice["id"], "payment_method": "manual", "transaction_reference": "x"})
    assert dup.status_code == 409

    assert (await client.get("/api/v1/admin/payments/pending/", headers=owner)).status_code == 403
    pending = (await client.get("/api/v1/admin/payments/pending/?page_size=100",
                                headers=staff)).json()
    assert payment["id"] in [p["id"] for p in pending["results"]]
    first = await client.post(f"/api/v1/admin/payments/{payment['id']}/approve/", headers=staff)
    second = await client.post(f"/api/v1/admin/payments/{payment['id']}/approve/", headers=staff)
    assert first.status_code == 200 and second.status_code == 200
    assert "already" in second.json()["message"]
    reject = await client.post(f"/api/v1/admin/payments/{payment['id']}/reject/", headers=staff,
                               json={"reason": "late"})
    assert reject.status_code == 409

    body = (await client.get(B + "/credits/balance/", headers=viewer)).json()
    assert body["credits"] == 5192 and body["purchased_credits"] == 5000
    paid = (await client.get(f"{B}/invoices/{invoice['id']}/", headers=owner)).json()
    assert paid["status"] == "paid" and paid["paid_at"]
    purchases = (await client.get(B + "/credits/transactions/?transaction_type=purchase",
                                  headers=owner)).json()
    assert purchases["count"] == 1 and purchases["results"][0]["amount"] == 5000
    listed = (await client.get(B + "/payments/", headers=owner)).json()
    assert listed["results"][0]["status"] == "succeeded"
    await assert_ledger_consistent(db, account)


async def test_admin_adjust_and_catalogue(client: httpx.AsyncClient, issuer: TestIssuer,
                                          db: Database) -> None:
    account = new_account_id()
    await fund(db, account, plan=10)
    staff = who(issuer, new_account_id(), "developer", 5)
    r = await client.post("/api/v1/admin/credits/adjust/", headers=staff, json={
        "account_id": account, "amount": 90, "reason": "goodwill", "idempotency_key": "gw-1"})
    assert r.status_code == 200 and r.json()["data"]["credits"] == 100
    again = await client.post("/api/v1/admin/credits/adjust/", headers=staff, json={
        "account_id": account, "amount": 90, "reason": "goodwill", "idempotency_key": "gw-1"})
    assert again.json()["data"]["credits"] == 100
    too_much = await client.post("/api/v1/admin/credits/adjust/", headers=staff, json={
        "account_id": account, "amount": -101, "reason": "oops"})
    assert too_much.status_code == 400 and "amount" in too_much.json()["errors"]
    unknown = await client.post("/api/v1/admin/credits/adjust/", headers=staff, json={
        "account_id": new_account_id(), "amount": 5, "reason": "who"})
    assert unknown.status_code == 404 and "account_id" in unknown.json()["errors"]
    owner_try = await client.post("/api/v1/admin/credits/adjust/",
                                  headers=who(issuer, account), json={
                                      "account_id": account, "amount": 5, "reason": "me"})
    assert owner_try.status_code == 403
    balance = await assert_ledger_consistent(db, account)
    assert balance.plan_credits + balance.purchased_credits == 100

    costs = (await client.get("/api/v1/admin/credit-costs/", headers=staff)).json()
    defaults = {c["operation_type"]: (c["credits_cost"], c["unit"]) for c in costs}
    assert defaults["clustering"] == (10, "per_request")
    assert defaults["idea_generation"] == (2, "per_item")
    assert defaults["content_generation"] == (1, "per_100_words")
    assert defaults["image_prompt_extraction"] == (2, "per_item")
    assert defaults["image_generation"] == (4, "per_image")
    assert defaults["optimization"] == (1, "per_200_words")
    assert defaults["linking"] == (1, "per_request")
    bad = await client.patch("/api/v1/admin/credit-costs/clustering/", headers=staff,
                             json={"credits_cost": -1})
    assert bad.status_code == 400 and "credits_cost" in bad.json()["errors"]
    ok = await client.patch("/api/v1/admin/credit-costs/clustering/", headers=staff,
                            json={"credits_cost": 12})
    assert ok.status_code == 200 and ok.json()["credits_cost"] == 12
    await client.patch("/api/v1/admin/credit-costs/clustering/", headers=staff,
                       json={"credits_cost": 10})

    created = await client.post("/api/v1/admin/credit-packages/", headers=staff, json={
        "name": "Tiny", "slug": f"tiny-{account}", "credits": 50, "price": "0.99",
        "is_active": False})
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    hidden = await client.get(f"{B}/credit-packages/{pid}/", headers=who(issuer, account))
    assert hidden.status_code == 404
    neg = await client.post("/api/v1/admin/credit-packages/", headers=staff, json={
        "name": "Neg", "slug": f"neg-{account}", "credits": -5, "price": "1"})
    assert neg.status_code == 400 and "credits" in neg.json()["errors"]
    for price in ("0", "0.00", "-1", 0, -1):  # a package is bought: its price is positive
        free = await client.post("/api/v1/admin/credit-packages/", headers=staff, json={
            "name": "Free", "slug": f"free-{account}", "credits": 5, "price": price})
        assert free.status_code == 400, (price, free.text)
        assert free.json()["errors"] == {"price": ["Ensure this value is greater than 0."]}
        zero = await client.patch(f"/api/v1/admin/credit-packages/{pid}/", headers=staff,
                                  json={"price": price})
        assert zero.status_code == 400 and "price" in zero.json()["errors"], zero.text
    upd = await client.patch(f"/api/v1/admin/credit-packages/{pid}/", headers=staff,
                             json={"price": "1.49"})
    assert upd.json()["price"] == "1.49"
    assert (await client.delete(f"/api/v1/admin/credit-packages/{pid}/",
                                headers=staff)).status_code == 204


async def test_tenant_isolation(client: httpx.AsyncClient, issuer: TestIssuer,
                                db: Database) -> None:
    mine, theirs = new_account_id(), new_account_id()
    await fund(db, mine, plan=10)
    await fund(db, theirs, plan=10_000)
    them = who(issuer, theirs)
    packages = (await client.get(B + "/credit-packages/", headers=them)).json()["results"]
    invoice = (await client.post(f"{B}/credit-packages/{packages[0]['id']}/purchase/",
                                 headers=them)).json()["data"]
    method = (await client.post(B + "/payment-methods/", headers=them, json={
        "method_type": "bank_transfer", "display_name": "Their bank"})).json()
    tx = (await client.get(B + "/credits/transactions/", headers=them)).json()["results"][0]

    me = who(issuer, mine)
    assert (await client.get(B + "/credits/balance/", headers=me)).json()["credits"] == 10
    for path in (f"/invoices/{invoice['id']}/", f"/invoices/{invoice['id']}/download_pdf/",
                 f"/payment-methods/{method['id']}/", f"/credits/transactions/{tx['id']}/"):
        assert (await client.get(B + path, headers=me)).status_code == 404, path
    assert (await client.post(f"{B}/payment-methods/{method['id']}/set_default/",
                              headers=me)).status_code == 404
    assert (await client.delete(f"{B}/payment-methods/{method['id']}/",
                                headers=me)).status_code == 404
    pay = await client.post(B + "/payments/", headers=me, json={
        "invoice_id": invoice["id"], "payment_method": "manual", "transaction_reference": "r"})
    assert pay.status_code == 404 and "invoice_id" in pay.json()["errors"]
    assert (await client.get(B + "/invoices/", headers=me)).json()["count"] == 0
    assert (await client.get(B + "/transactions/", headers=me)).json()["count"] == 1
    assert (await client.get(f"{B}/payment-methods/{method['id']}/",
                             headers=them)).status_code == 200


async def test_payment_methods_crud(client: httpx.AsyncClient, issuer: TestIssuer) -> None:
    owner = who(issuer, new_account_id())
    first = (await client.post(B + "/payment-methods/", headers=owner, json={
        "method_type": "bank_transfer", "display_name": "Main bank",
        "details": {"iban_last4": "1234"}})).json()
    second = (await client.post(B + "/payment-methods/", headers=owner, json={
        "method_type": "paypal", "display_name": "PayPal"})).json()
    assert first["is_default"] and not second["is_default"]
    r = await client.post(f"{B}/payment-methods/{second['id']}/set_default/", headers=owner)
    assert r.status_code == 200 and r.json()["is_default"]
    listed = (await client.get(B + "/payment-methods/", headers=owner)).json()["results"]
    assert [m["id"] for m in listed if m["is_default"]] == [second["id"]]
    r = await client.patch(f"{B}/payment-methods/{first['id']}/", headers=owner,
                           json={"display_name": "Old bank"})
    assert r.json()["display_name"] == "Old bank"
    bad = await client.post(B + "/payment-methods/", headers=owner, json={
        "method_type": "bitcoin", "display_name": "x"})
    assert bad.status_code == 400 and "method_type" in bad.json()["errors"]
    assert (await client.delete(f"{B}/payment-methods/{first['id']}/",
                                headers=owner)).status_code == 204


async def test_set_default_on_the_default_method_keeps_it(client: httpx.AsyncClient,
                                                          issuer: TestIssuer) -> None:
    """Found probing the public API: the account's default asked to be the default again
    was cleared with the others (the answer still said `is_default`), leaving no default."""
    owner = who(issuer, new_account_id())
    method = (await client.post(B + "/payment-methods/", headers=owner, json={
        "method_type": "manual", "display_name": "Cash"})).json()
    assert method["is_default"]
    for _ in range(2):
        r = await client.post(f"{B}/payment-methods/{method['id']}/set_default/",
                              headers=owner)
        assert r.status_code == 200 and r.json()["is_default"]
        got = (await client.get(f"{B}/payment-methods/{method['id']}/", headers=owner)).json()
        assert got["is_default"]


async def test_bad_input_is_named_and_changes_nothing(client: httpx.AsyncClient,
                                                      issuer: TestIssuer, db: Database) -> None:
    account = new_account_id()
    await fund(db, account, plan=10)
    owner = who(issuer, account)
    cases = [
        ("/credits/usage/?start_date=2025-13-01", "start_date"),
        ("/credits/usage/?end_date=yesterday", "end_date"),
        ("/credits/usage/?start_date=2025-05-02&end_date=2025-05-01", "end_date"),
        ("/credits/usage/?operation_type=teleport", "operation_type"),
        ("/credits/transactions/?transaction_type=gift", "transaction_type"),
        ("/transactions/?start_date=01/02/2025", "start_date"),
        ("/credits/usage/summary/?start_date=2025-1-1", "start_date"),
    ]
    for path, field in cases:
        r = await client.get(B + path, headers=owner)
        assert r.status_code == 400, path
        assert field in r.json()["errors"], (path, r.json())
    r = await client.get("/api/v1/account/usage/analytics/?days=0", headers=owner)
    assert r.status_code == 400 and "days" in r.json()["errors"]
    assert (await client.get(B + "/credits/usage/999999999/", headers=owner)).status_code == 404
    assert (await client.post(B + "/credit-packages/999999999/purchase/",
                              headers=owner)).status_code == 404

    packages = (await client.get(B + "/credit-packages/", headers=owner)).json()["results"]
    invoice = (await client.post(f"{B}/credit-packages/{packages[0]['id']}/purchase/",
                                 headers=owner)).json()["data"]
    for body, field in (
        ({"amount": "-5"}, "amount"),
        ({"amount": "0"}, "amount"),
        ({"amount": "0.00"}, "amount"),
        ({"amount": 0}, "amount"),
        ({"amount": "3.00"}, "amount"),
        ({"payment_method": "stripe"}, "payment_method"),
        ({"transaction_reference": ""}, "transaction_reference"),
    ):
        payload = {"invoice_id": invoice["id"], "payment_method": "manual",
                   "transaction_reference": "ref", **body}
        r = await client.post(B + "/payments/", headers=owner, json=payload)
        assert r.status_code == 400, (body, r.text)
        assert field in r.json()["errors"], (body, r.json())
    assert (await client.get(B + "/payments/", headers=owner)).json()["count"] == 0
    balance = await assert_ledger_consistent(db, account)
    assert balance.plan_credits == 10
    assert (await client.get(B + "/credits/balance/")).status_code == 401


async def test_adjustment_past_the_balance_columns_range_is_a_400(
        client: httpx.AsyncClient, issuer: TestIssuer, db: Database) -> None:
    """Each amount fits the schema's bound, but the balance they add up to does not fit
    the `integer` columns: a 400 naming `amount`, nothing written (not a 5xx)."""
    account = new_account_id()
    await fund(db, account, plan=10)
    staff = who(issuer, new_account_id(), "developer", 5)
    biggest = 2**31 - 1
    r = await client.post("/api/v1/admin/credits/adjust/", headers=staff, json={
        "account_id": account, "amount": biggest - 10, "reason": "to the brim"})
    assert r.status_code == 200 and r.json()["data"]["credits"] == biggest
    for amount in (1, biggest):
        over = await client.post("/api/v1/admin/credits/adjust/", headers=staff, json={
            "account_id": account, "amount": amount, "reason": "overflow"})
        assert over.status_code == 400, over.text
        assert "amount" in over.json()["errors"]
    balance = await assert_ledger_consistent(db, account)
    assert balance.plan_credits + balance.purchased_credits == biggest


async def test_two_defaults_set_at_once_leave_one(client: httpx.AsyncClient, issuer: TestIssuer,
                                                  db: Database) -> None:
    """Schemathesis with two workers: two changes of the default at once each cleared
    the defaults committed before them, not the other's, and the second broke the
    one-default index (a 500). The second now waits for the first and clears its default."""
    account = new_account_id()
    owner = who(issuer, account)
    first, second, third = [(await client.post(B + "/payment-methods/", headers=owner, json={
        "method_type": "bank_transfer", "display_name": name})).json()
        for name in ("one", "two", "three")]
    assert first["is_default"] is True
    async with unit_of_work(db, TenantScope.account(account)) as uow:
        await AccountBilling(uow.session, account, policy()).set_default_method(second["id"])
        racing = asyncio.create_task(client.post(
            f"{B}/payment-methods/{third['id']}/set_default/", headers=owner))
        await waiting_for_a_lock(db, racing)
    answer = await racing
    assert answer.status_code == 200, answer.text
    methods = (await client.get(B + "/payment-methods/", headers=owner)).json()["results"]
    assert [m["id"] for m in methods if m["is_default"]] == [third["id"]]

