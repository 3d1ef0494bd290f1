"""Sign-in and account forms sent form-encoded or multipart, as a client ported from the
DRF original may (`curl -d email=..&password=..`; ADR 0044)."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

import httpx

from .conftest import PASSWORD, unique_email

FORM = {"content-type": "application/x-www-form-urlencoded"}


def _from(address: int) -> dict[str, str]:
    return {"X-Forwarded-For": f"10.44.{address}.{uuid.uuid4().int % 250 + 1}"}


async def test_register_and_login_by_form(client: httpx.AsyncClient) -> None:
    email = unique_email("form")
    registered = await client.post(
        "/api/v1/auth/register/", headers=FORM,
        content=urlencode({"email": email, "password": PASSWORD,
                           "password_confirm": PASSWORD}))
    assert registered.status_code == 201, registered.text
    assert registered.json()["data"]["user"]["email"] == email

    login = await client.post("/api/v1/auth/login/", headers={**FORM, **_from(1)},
                              content=urlencode({"email": email, "password": PASSWORD}))
    assert login.status_code == 200, login.text
    assert login.json()["message"] == "Login successful"
    access = login.json()["data"]["access"]
    me = await client.get("/api/v1/auth/me/", headers={"Authorization": f"Bearer {access}"})
    assert me.json()["user"]["email"] == email

    multipart = await client.post("/api/v1/auth/login/", headers=_from(2),
                                  data={"email": email, "password": PASSWORD})
    assert multipart.status_code == 200, multipart.text
    assert multipart.json()["data"]["refresh"]

    refreshed = await client.post("/api/v1/auth/refresh/", headers=FORM,
                                  content=urlencode({"refresh": multipart.json()["data"]
                                                     ["refresh"]}))
    assert refreshed.status_code == 200, refreshed.text


async def test_a_bad_form_is_a_400_naming_the_field(client: httpx.AsyncClient) -> None:
    missing = await client.post("/api/v1/auth/login/", headers={**FORM, **_from(3)},
                                content="email=nobody%40example.com")
    assert missing.status_code == 400
    assert missing.json()["errors"] == {"password": ["This field is required."]}
    short = await client.post(
        "/api/v1/auth/register/", headers=FORM,
        content=urlencode({"email": "not-an-email", "password": PASSWORD,
                           "password_confirm": PASSWORD}))
    assert short.status_code == 400
    assert list(short.json()["errors"]) == ["email"]
    plain = await client.post("/api/v1/auth/login/", headers={"content-type": "text/plain"},
                              content="email=a&password=b")
    assert plain.status_code == 415
