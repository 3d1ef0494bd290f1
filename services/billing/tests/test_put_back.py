"""What clients of the reference send (issue 13): a credit package, payment method or
credit cost as GET answers it, edited and PUT back, is accepted (D1); names that are no
field are ignored, as DRF ignores them (ADR 0041); ids and numbers the database cannot
hold, and null where a column holds none, are 400s or 404s, never a 5xx (M5)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from libs.common.testing.checks import refusing_unknown_names
from libs.common.testing.tokens import TestIssuer
from services.billing.tests.conftest import new_account_id

pytestmark = pytest.mark.usefixtures("worker")
B = "/api/v1/billing"
ADMIN = "/api/v1/admin"
HUGE = 2**63


def who(issuer: TestIssuer, account: int, role: str = "owner", user: int = 7) -> dict[str, str]:
    return issuer.headers(user_id=user, account_id=account, role=role)


async def _put_back(client: httpx.AsyncClient, headers: dict[str, str], url: str,
                    edit: dict[str, Any]) -> dict[str, Any]:
    got = await client.get(url, headers=headers)
    assert got.status_code == 200, got.text
    put = await client.put(url, json={**got.json(), **edit}, headers=headers)
    assert put.status_code == 200, put.text
    again = (await client.get(url, headers=headers)).json()
    for key, value in edit.items():
        assert again[key] == value, (url, key)
    return dict(again)


async def test_a_get_answer_put_back_is_accepted(client: httpx.AsyncClient,
                                                 issuer: TestIssuer) -> None:
    account = new_account_id()
    staff = who(issuer, new_account_id(), "developer", 9)
    owner = who(issuer, account)
    created = await client.post(f"{ADMIN}/credit-packages/", headers=staff, json={
        "name": "Put back", "slug": f"put-back-{account}", "credits": 50, "price": "0.99",
        "is_active": False})  # hidden from the other tests' package lists
    assert created.status_code == 201, created.text
    package = await _put_back(client, staff, f"{ADMIN}/credit-packages/{created.json()['id']}/",
                              {"description": "Edited", "sort_order": 7})
    assert package["slug"] == f"put-back-{account}"  # read-only on update: unchanged
    assert package["is_active"] is False
    assert (await client.delete(f"{ADMIN}/credit-packages/{package['id']}/",
                                headers=staff)).status_code == 204
    method = await client.post(f"{B}/payment-methods/", headers=owner, json={
        "method_type": "bank_transfer", "display_name": "Bank"})
    assert method.status_code == 201, method.text
    await _put_back(client, owner, f"{B}/payment-methods/{method.json()['id']}/",
                    {"display_name": "Main bank"})
    cost = await _put_back(client, staff, f"{ADMIN}/credit-costs/linking/",
                           {"description": "Per linking run"})
    assert cost["operation_type"] == "linking"


async def test_names_that_are_no_field_are_ignored_and_nulls_refused(
        client: httpx.AsyncClient, issuer: TestIssuer) -> None:
    account = new_account_id()
    staff = who(issuer, new_account_id(), "developer", 9)
    owner = who(issuer, account)
    method = (await client.post(f"{B}/payment-methods/", headers=owner, json={
        "method_type": "paypal", "display_name": "PayPal"})).json()
    mine = f"{B}/payment-methods/{method['id']}/"
    # Unknown and fixed names are ignored (DRF's serializer reads only its writable
    # fields): the rest is applied, nothing they name changes.
    r = await client.patch(mine, headers=owner, json={
        "display_name": "Wallet", "colour": "red", "method_type": "bank_transfer",
        "is_default": not method["is_default"], "id": 1, "account_id": account + 1})
    assert r.status_code == 200, r.text
    after = (await client.get(mine, headers=owner)).json()
    assert after["display_name"] == "Wallet"
    assert {k: v for k, v in after.items() if k not in ("display_name", "updated_at")} == {
        k: v for k, v in method.items() if k not in ("display_name", "updated_at")}
    r = await client.patch(f"{ADMIN}/credit-costs/linking/", headers=staff,
                           json={"colour": 1, "operation_type": "clustering",
                                 "description": "Linking, again"})
    assert r.status_code == 200, r.text
    assert r.json()["operation_type"] == "linking"
    document = (await client.get("/openapi.json")).json()
    assert refusing_unknown_names(document) == []
    # A manual payment's method is one of two (schemathesis' positive_data_acceptance:
    # the document said any string, the service refused all others).
    payment = document["components"]["schemas"]["PaymentCreate"]["properties"]
    assert payment["payment_method"]["enum"] == ["bank_transfer", "manual"]
    for url, headers, body, field in (
            (mine, owner, {"display_name": None, "colour": "red"}, "display_name"),
            (f"{ADMIN}/credit-costs/linking/", staff, {"credits_cost": None}, "credits_cost")):
        r = await client.patch(url, json=body, headers=headers)
        assert r.status_code == 400, (url, body, r.text)
        assert list(r.json()["errors"]) == [field]
    # A column that holds null takes it.
    r = await client.patch(f"{ADMIN}/credit-costs/linking/", json={"tokens_per_credit": None},
                           headers=staff)
    assert r.status_code == 200, r.text


async def test_numbers_the_database_cannot_hold_are_400s_or_404s(
        client: httpx.AsyncClient, issuer: TestIssuer) -> None:
    account = new_account_id()
    staff = who(issuer, new_account_id(), "developer", 9)
    owner = who(issuer, account)
    for path in (f"{B}/credits/usage/{HUGE}/", f"{B}/credits/transactions/{HUGE}/",
                 f"{B}/transactions/{HUGE}/", f"{B}/invoices/{HUGE}/",
                 f"{B}/invoices/{HUGE}/download_pdf/", f"{B}/payments/{HUGE}/",
                 f"{B}/credit-packages/{HUGE}/", f"{B}/payment-methods/{HUGE}/",
                 f"{B}/invoices/?page={HUGE}"):
        r = await client.get(path, headers=owner)
        assert r.status_code in (400, 404), (path, r.text)
    # DRF caps a page size it cannot serve instead of refusing it.
    assert (await client.get(f"{B}/payments/?page_size={HUGE}", headers=owner)
            ).status_code == 200
    for method, path, headers, body in (
            ("POST", f"{B}/credit-packages/{HUGE}/purchase/", owner, None),
            ("POST", f"{B}/payment-methods/{HUGE}/set_default/", owner, None),
            ("DELETE", f"{B}/payment-methods/{HUGE}/", owner, None),
            ("POST", f"{ADMIN}/payments/{HUGE}/approve/", staff, None),
            ("POST", f"{ADMIN}/payments/{HUGE}/reject/", staff, {"reason": "x"}),
            ("GET", f"{ADMIN}/credit-packages/{HUGE}/", staff, None),
            ("PATCH", f"{ADMIN}/credit-packages/{HUGE}/", staff, {"name": "x"}),
            ("DELETE", f"{ADMIN}/credit-packages/{HUGE}/", staff, None)):
        r = await client.request(method, path, headers=headers, json=body)
        assert r.status_code in (400, 404), (method, path, r.text)
    for path, headers, body, field in (
            (f"{B}/payments/", owner, {"invoice_id": HUGE, "payment_method": "manual",
                                       "transaction_reference": "r"}, "invoice_id"),
            (f"{ADMIN}/credits/adjust/", staff, {"account_id": HUGE, "amount": 1,
                                                  "reason": "r"}, "account_id"),
            (f"{ADMIN}/credits/adjust/", staff, {"account_id": account, "amount": HUGE,
                                                  "reason": "r"}, "amount"),
            (f"{ADMIN}/credit-packages/", staff, {"name": "Big", "slug": f"big-{account}",
                                                  "credits": HUGE, "price": "1"}, "credits"),
            (f"{ADMIN}/credit-packages/", staff, {"name": "Big", "slug": f"big2-{account}",
                                                  "credits": 5, "price": "1",
                                                  "sort_order": HUGE}, "sort_order")):
        r = await client.post(path, json=body, headers=headers)
        assert r.status_code == 400, (path, body, r.text)
        assert field in r.json()["errors"]
    # Free-form details: a number past 64 bits was stored, then every list answer was a 500.
    for method, path in (("POST", f"{B}/payment-methods/"),):
        for number in ("18446744073709551616", "1e20", "-1e300", "1e400"):
            r = await client.request(method, path, headers={
                **owner, "Content-Type": "application/json"}, content=(
                '{"method_type": "paypal", "display_name": "Big", "details": {"n": ['
                + number + "]}}"))
            assert r.status_code == 400, (number, r.text)
            assert "details" in r.json()["errors"]
    assert (await client.get(f"{B}/payment-methods/", headers=owner)).status_code == 200
    r = await client.patch(f"{ADMIN}/credit-costs/linking/", headers=staff,
                           json={"credits_cost": HUGE})
    assert r.status_code == 400
    assert "credits_cost" in r.json()["errors"]
