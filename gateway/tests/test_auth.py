"""Credentials at the edge: every bad token is a 401 envelope; Basic and ApiKey are
exchanged at auth once and cached."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time

import httpx
import orjson
import pytest

from gateway.tests.conftest import new_ids
from gateway.tests.upstream import GOOD_API_KEY, GOOD_BASIC, Counters
from libs.common import nats as nats_kernel
from libs.common.security import revoke_sessions
from libs.common.testing.tokens import TestIssuer


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(issuer: TestIssuer, **overrides: object) -> dict[str, object]:
    now = int(time.time())
    user_id, account_id = new_ids()
    doc: dict[str, object] = {
        "sub": str(user_id), "user_id": user_id, "account_id": account_id, "role": "owner",
        "type": "access", "iat": now, "exp": now + 600, "iss": issuer.issuer,
        "aud": issuer.audience, "jti": "j", "sid": "s"}
    doc.update(overrides)
    return doc


def unsigned_token(issuer: TestIssuer) -> str:
    header = {"alg": "none", "kid": issuer.key.kid, "typ": "JWT"}
    return f"{b64(orjson.dumps(header))}.{b64(orjson.dumps(claims(issuer)))}."


def hs256_forged_token(issuer: TestIssuer) -> str:
    """The classic confusion attack: HMAC keyed with the public key's bytes."""
    header = {"alg": "HS256", "kid": issuer.key.kid, "typ": "JWT"}
    signing_input = f"{b64(orjson.dumps(header))}.{b64(orjson.dumps(claims(issuer)))}"
    public = orjson.dumps(issuer.jwks()["keys"][0])
    signature = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def wrong_audience_token(issuer: TestIssuer) -> str:
    other = TestIssuer(audience="someone-else")
    other.key = issuer.key
    user_id, account_id = new_ids()
    return other.issue(user_id=user_id, account_id=account_id)


def assert_401(resp: httpx.Response) -> None:
    assert resp.status_code == 401, resp.text
    body = resp.json()
    assert body["success"] is False
    assert body["error"]
    assert body["request_id"] == resp.headers["x-request-id"]


@pytest.mark.parametrize("kind", ["missing", "garbage", "alg_none", "hs256_forged",
                                  "expired", "wrong_audience", "wrong_scheme"])
async def test_bad_credentials_are_refused(gw: httpx.AsyncClient, issuer: TestIssuer,
                                           kind: str) -> None:
    user_id, account_id = new_ids()
    authorization = {
        "missing": None,
        "garbage": "Bearer not.a.token",
        "alg_none": f"Bearer {unsigned_token(issuer)}",
        "hs256_forged": f"Bearer {hs256_forged_token(issuer)}",
        "expired": "Bearer " + issuer.issue(user_id=user_id, account_id=account_id, ttl=-120),
        "wrong_audience": f"Bearer {wrong_audience_token(issuer)}",
        "wrong_scheme": "Digest abc",
    }[kind]
    headers = {"Authorization": authorization} if authorization else {}
    assert_401(await gw.get("/api/v1/planner/keywords/1/", headers=headers))


async def test_revoked_sessions_are_refused(gw: httpx.AsyncClient, issuer: TestIssuer,
                                            nats_url: str) -> None:
    # Through the KV watch (auth revokes; every gateway replica learns it).
    user_id, account_id = new_ids()
    headers = issuer.headers(user_id=user_id, account_id=account_id, session_id="sess-kv-1")
    assert (await gw.get("/api/v1/planner/keywords/1/", headers=headers)).status_code == 200
    nc = await nats_kernel.connect(nats_url, "test")
    try:
        kv = await nc.jetstream().key_value(nats_kernel.REVOCATIONS_BUCKET)
        await revoke_sessions(kv, "sess-kv-1")
    finally:
        await nc.close()
    for _ in range(100):
        resp = await gw.get("/api/v1/planner/keywords/1/", headers=headers)
        if resp.status_code == 401:
            break
        await asyncio.sleep(0.02)
    assert_401(resp)

    # Through the response header: applied before the answer reaches the client.
    headers = issuer.headers(user_id=user_id, account_id=account_id, session_id="sess-hdr-1")
    assert (await gw.get("/api/v1/planner/keywords/1/", headers=headers)).status_code == 200
    logout = await gw.post("/api/v1/auth/logout/?sid=sess-hdr-1", headers=headers)
    assert logout.status_code == 204
    assert "x-igny8-revoked-sessions" not in logout.headers
    assert_401(await gw.get("/api/v1/planner/keywords/1/", headers=headers))


async def test_public_routes_need_no_credentials(gw: httpx.AsyncClient) -> None:
    resp = await gw.post("/api/v1/auth/login/", json={"email": "a@b.c", "password": "x"},
                         headers={"X-Forwarded-For": "203.0.113.9"})
    assert resp.status_code == 200
    assert resp.json()["data"] == {"access": "token"}
    assert (await gw.get("/api/v1/system/ping/")).status_code == 200


async def test_a_public_gateway_path_answers_another_method_405_without_credentials(
        gw: httpx.AsyncClient) -> None:
    """DRF checks an AllowAny view's permissions (none) before the method: `POST ping/`
    is 405, where it was 401 "Authentication required" (a credential for nothing)."""
    for path in ("/api/v1/system/ping/", "/api/v1/system/status/", "/api/v1/",
                 "/api/v1/planner/", "/api/schema/"):
        resp = await gw.post(path)
        assert resp.status_code == 405, (path, resp.text)
        assert resp.json()["error"] == 'Method "POST" not allowed.'
    # Elsewhere credentials come first, as DRF's authentication does.
    assert (await gw.post("/api/v1/system/settings/task_progress/x/")).status_code == 401


async def test_the_api_root_says_where_things_are(gw: httpx.AsyncClient) -> None:
    """The URL `igny8 up` prints as "API" answered 404 "Not found"."""
    resp = await gw.get("/api/v1/")
    assert resp.status_code == 200
    data = resp.json()["data"]
    assert data["docs"].endswith("/api/docs/")
    assert data["modules"]["planner"].endswith("/api/v1/planner/")
    assert {"auth", "planner", "writer", "billing", "automation", "system"} <= set(
        data["modules"])


async def test_each_module_url_the_root_lists_answers_its_resources(
        gw: httpx.AsyncClient) -> None:
    """`GET /api/v1/` listed `/api/v1/planner/` and the others, which all answered 404.
    As DRF's DefaultRouter root, a module's URL lists its resources' URLs."""
    modules = (await gw.get("/api/v1/")).json()["data"]["modules"]
    for name, url in modules.items():
        resp = await gw.get(url.removeprefix("http://testserver"))
        assert resp.status_code == 200, (name, resp.text)
        assert isinstance(resp.json()["data"], dict)
    planner = (await gw.get("/api/v1/planner/")).json()["data"]
    assert planner["keywords"] == "http://testserver/api/v1/planner/keywords/"
    # Collections only: no detail routes, no nested actions, no POST-only paths.
    assert not any("{" in url or "bulk_delete" in url or "export" in url
                   for url in planner.values())
    writer = (await gw.get("/api/v1/writer/")).json()["data"]
    assert {"content", "tasks"} <= set(writer)
    assert (await gw.get("/api/v1/nothing-here/")).status_code == 404


async def test_the_gateways_own_paths_without_their_slash_redirect(
        gw: httpx.AsyncClient) -> None:
    """The reference's map writes `/api/schema`, `/api/docs`, `/api/redoc`: those were
    404 where every service path without its slash is redirected (307) to it."""
    for path in ("/api/schema", "/api/docs", "/api/redoc", "/api/v1", "/api/v1/planner",
                 "/api/v1/system/ping"):
        resp = await gw.get(path, params={"a": "1"})
        assert resp.status_code == 307, (path, resp.text)
        assert resp.headers["location"] == f"http://testserver{path}/?a=1"


async def test_basic_credentials_are_exchanged_once(gw: httpx.AsyncClient,
                                                    counters: Counters) -> None:
    good = "Basic " + base64.b64encode(":".join(GOOD_BASIC).encode()).decode()
    before = counters.exchanges
    for _ in range(3):
        resp = await gw.get("/api/v1/writer/tasks/", headers={"Authorization": good})
        assert resp.status_code == 200, resp.text
        assert resp.json()["data"]["authorization"].startswith("Bearer ey")
    assert counters.exchanges == before + 1

    bad = "Basic " + base64.b64encode(b"owner@example.com:wrong").decode()
    resp = await gw.get("/api/v1/writer/tasks/", headers={"Authorization": bad})
    assert_401(resp)
    assert resp.json()["error"] == "Invalid credentials"


async def test_api_keys_only_on_wordpress_paths(gw: httpx.AsyncClient) -> None:
    header = {"Authorization": f"ApiKey {GOOD_API_KEY}"}
    resp = await gw.get("/api/v1/integration/integrations/", headers=header)
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["authorization"].startswith("Bearer ey")
    assert (await gw.get("/api/v1/writer/tasks/", headers=header)).status_code == 200
    hook = await gw.post("/api/v1/webhooks/wordpress/status/", headers=header, json={})
    assert hook.status_code == 200, hook.text  # the plugin's webhooks, routed to writer
    assert hook.json()["data"]["authorization"].startswith("Bearer ey")
    assert_401(await gw.get("/api/v1/planner/keywords/1/", headers=header))
    assert_401(await gw.get("/api/v1/writer/tasks/",
                            headers={"Authorization": "ApiKey wrong-key"}))
