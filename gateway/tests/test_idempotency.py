"""Idempotency-Key on POST: replay byte for byte, 422 on another body, 409 while in flight,
5xx not kept."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from gateway.tests.conftest import new_ids
from gateway.tests.upstream import Counters
from libs.common.testing.tokens import TestIssuer

PATH = "/api/v1/planner/keywords/"


async def test_replay_is_byte_for_byte(gw: httpx.AsyncClient, issuer: TestIssuer,
                                       counters: Counters) -> None:
    user_id, account_id = new_ids()
    headers = {**issuer.headers(user_id=user_id, account_id=account_id),
               "Idempotency-Key": f"k-{uuid.uuid4()}"}
    before = counters.posts
    first = await gw.post(PATH, json={"keyword": "seo"}, headers=headers)
    assert first.status_code == 201
    again = await gw.post(PATH, json={"keyword": "seo"}, headers=headers)
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers["idempotent-replayed"] == "true"
    assert counters.posts == before + 1

    # Another account using the same key is another request.
    other_user, other_account = new_ids()
    other = {**issuer.headers(user_id=other_user, account_id=other_account),
             "Idempotency-Key": headers["Idempotency-Key"]}
    third = await gw.post(PATH, json={"keyword": "seo"}, headers=other)
    assert third.status_code == 201
    assert third.content != first.content
    assert counters.posts == before + 2


async def test_same_key_other_body_is_422(gw: httpx.AsyncClient, issuer: TestIssuer) -> None:
    user_id, account_id = new_ids()
    headers = {**issuer.headers(user_id=user_id, account_id=account_id),
               "Idempotency-Key": f"k-{uuid.uuid4()}"}
    assert (await gw.post(PATH, json={"keyword": "a"}, headers=headers)).status_code == 201
    resp = await gw.post(PATH, json={"keyword": "b"}, headers=headers)
    assert resp.status_code == 422
    assert resp.json()["success"] is False
    assert "Idempotency-Key" in resp.json()["error"]


async def test_concurrent_duplicate_is_409(gw: httpx.AsyncClient, issuer: TestIssuer,
                                           counters: Counters) -> None:
    user_id, account_id = new_ids()
    headers = {**issuer.headers(user_id=user_id, account_id=account_id),
               "Idempotency-Key": f"k-{uuid.uuid4()}"}
    body = {"keyword": "slow", "delay": 0.6}
    before = counters.posts
    first = asyncio.create_task(gw.post(PATH, json=body, headers=headers))
    await asyncio.sleep(0.2)
    second = await gw.post(PATH, json=body, headers=headers)
    assert second.status_code == 409
    assert second.json()["success"] is False
    assert (await first).status_code == 201
    assert counters.posts == before + 1
    replay = await gw.post(PATH, json=body, headers=headers)
    assert replay.status_code == 201
    assert replay.content == (await first).content


async def test_server_errors_are_not_kept(gw: httpx.AsyncClient, issuer: TestIssuer,
                                          counters: Counters) -> None:
    user_id, account_id = new_ids()
    headers = {**issuer.headers(user_id=user_id, account_id=account_id),
               "Idempotency-Key": f"k-{uuid.uuid4()}"}
    before = counters.failures
    for _ in range(2):
        resp = await gw.post("/api/v1/planner/fail/", json={}, headers=headers)
        assert resp.status_code == 500
        assert resp.json()["error"] == "Database exploded"
    assert counters.failures == before + 2


async def test_invalid_key_is_400(gw: httpx.AsyncClient, issuer: TestIssuer) -> None:
    user_id, account_id = new_ids()
    headers = {**issuer.headers(user_id=user_id, account_id=account_id),
               "Idempotency-Key": "x" * 300}
    resp = await gw.post(PATH, json={"keyword": "a"}, headers=headers)
    assert resp.status_code == 400


async def test_login_and_refresh_answers_are_never_stored(gw: httpx.AsyncClient, nc) -> None:  # type: ignore[no-untyped-def]
    """Issue 13 H3: answers carrying tokens stay out of the idempotency bucket (anyone
    who could read it would hold the tokens); the key is ignored and the request runs."""
    from gateway.idempotency import IdempotencyStore
    from libs.common.nats import IDEMPOTENCY_BUCKET

    kv = await nc.jetstream().key_value(IDEMPOTENCY_BUCKET)
    for path in ("/api/v1/auth/login/", "/api/v1/auth/refresh/"):
        key = f"k-{uuid.uuid4()}"
        for _ in range(2):
            resp = await gw.post(path, json={"email": "a@example.com", "password": "x",
                                             "refresh": "r"},
                                 headers={"Idempotency-Key": key, "X-Forwarded-For": "10.9.9.9"})
            assert "idempotent-replayed" not in resp.headers
            assert resp.status_code != 409
        for tenant in ("ip10.9.9.9", "ip127.0.0.1", "iptestclient"):
            stored = IdempotencyStore.storage_key(tenant, key)
            try:
                entry = await kv.get(stored)
            except Exception:  # noqa: BLE001, S112 - not found is the point
                continue
            raise AssertionError(f"{path}: stored as {stored}: {entry.value!r}")
