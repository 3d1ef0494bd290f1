"""Scoped limits, the reference's headers, and one limit shared by several gateways."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import httpx

from gateway.ratelimit import RateLimiter
from gateway.routes import RATE_LIMITS, scope_for
from gateway.tests.conftest import GatewayFactory, new_ids, random_address
from libs.common import nats as nats_kernel
from libs.common.testing.tokens import TestIssuer

STRICT = "/api/v1/auth/change-password/"


async def test_limit_headers_and_429(gw: httpx.AsyncClient, issuer: TestIssuer) -> None:
    assert scope_for("POST", STRICT) == "auth_strict"
    limit = RATE_LIMITS["auth_strict"]
    user_id, account_id = new_ids()
    headers = issuer.headers(user_id=user_id, account_id=account_id)
    for i in range(limit):
        resp = await gw.post(STRICT, json={}, headers=headers)
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-throttle-limit"] == str(limit)
        assert resp.headers["x-throttle-remaining"] == str(limit - 1 - i)
        reset = int(resp.headers["x-throttle-reset"])
        assert time.time() - 1 <= reset <= time.time() + 61
        assert resp.headers["ratelimit-policy"] == f'"auth_strict";q={limit};w=60'
        assert resp.headers["ratelimit"].startswith(f'"auth_strict";r={limit - 1 - i};t=')
    resp = await gw.post(STRICT, json={}, headers=headers)
    assert resp.status_code == 429
    assert resp.json() == {"success": False, "error": "Rate limit exceeded",
                           "request_id": resp.headers["x-request-id"]}
    retry_after = int(resp.headers["retry-after"])
    # One slot comes back every 60/5 = 12 s.
    assert 1 <= retry_after <= math.ceil(60 / limit)
    assert resp.headers["x-throttle-remaining"] == "0"
    assert resp.headers["x-throttle-limit"] == str(limit)
    assert "ratelimit" in resp.headers
    assert "ratelimit-policy" in resp.headers

    # Another user, and another scope of the same user, are not affected.
    other_user, _ = new_ids()
    other = issuer.headers(user_id=other_user, account_id=account_id)
    assert (await gw.post(STRICT, json={}, headers=other)).status_code == 200
    resp = await gw.get("/api/v1/planner/keywords/1/", headers=headers)
    assert resp.status_code == 200
    assert resp.headers["x-throttle-limit"] == str(RATE_LIMITS["planner"])


async def test_anonymous_callers_are_limited_per_address(gw: httpx.AsyncClient) -> None:
    address = random_address()
    statuses = []
    for _ in range(RATE_LIMITS["auth"] + 1):
        resp = await gw.post("/api/v1/auth/login/", json={},
                             headers={"X-Forwarded-For": address})
        statuses.append(resp.status_code)
    assert statuses == [200] * RATE_LIMITS["auth"] + [429]
    resp = await gw.post("/api/v1/auth/login/", json={},
                         headers={"X-Forwarded-For": random_address()})
    assert resp.status_code == 200


async def test_one_limit_shared_by_two_gateways(make_gateway: GatewayFactory,
                                                issuer: TestIssuer) -> None:
    user_id, account_id = new_ids()
    headers = issuer.headers(user_id=user_id, account_id=account_id)
    async with make_gateway() as first, make_gateway() as second:
        # Concurrent requests through both replicas race on the same key: CAS decides.
        calls = [first.post(STRICT, json={}, headers=headers),
                 second.post(STRICT, json={}, headers=headers)]
        calls += [(first if i % 2 else second).post(STRICT, json={}, headers=headers)
                  for i in range(22)]
        responses = await asyncio.gather(*calls)
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}
    assert statuses.count(200) == RATE_LIMITS["auth_strict"], statuses


async def test_debug_throttle_bypasses_limits(make_gateway: GatewayFactory,
                                              issuer: TestIssuer) -> None:
    user_id, account_id = new_ids()
    headers = issuer.headers(user_id=user_id, account_id=account_id)
    async with make_gateway(debug_throttle=True) as client:
        for _ in range(RATE_LIMITS["auth_strict"] + 2):
            resp = await client.post(STRICT, json={}, headers=headers)
            assert resp.status_code == 200
            assert "x-throttle-limit" not in resp.headers


async def test_operators_can_override_a_scope_limit(make_gateway: GatewayFactory,
                                                    issuer: TestIssuer) -> None:
    user_id, account_id = new_ids()
    headers = issuer.headers(user_id=user_id, account_id=account_id)
    async with make_gateway(rate_limit_overrides={"auth_strict": 2}) as client:
        statuses = [(await client.post(STRICT, json={}, headers=headers)).status_code
                    for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_overrides_naming_unknown_scopes_are_refused() -> None:
    import pytest

    from gateway.settings import GatewaySettings

    settings = GatewaySettings(rate_limit_overrides={"planner_typo": 5})
    with pytest.raises(ValueError, match="planner_typo"):
        settings.rate_limits(RATE_LIMITS)


async def test_a_burst_from_one_user_is_decided_together(gw: httpx.AsyncClient,
                                                         issuer: TestIssuer) -> None:
    """Concurrent requests of one key in one replica share one decision (one CAS), and
    still admit exactly the limit, each told how many remain."""
    limit = RATE_LIMITS["auth_strict"]
    user_id, account_id = new_ids()
    headers = issuer.headers(user_id=user_id, account_id=account_id)
    responses = await asyncio.gather(*(gw.post(STRICT, json={}, headers=headers)
                                       for _ in range(limit + 7)))
    admitted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(admitted) == limit
    assert len(refused) == 7
    assert sorted(int(r.headers["x-throttle-remaining"]) for r in admitted) == list(range(limit))
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)


async def test_busy_keys_lease_permits_and_replicas_still_share_one_limit(
        nats_url: str) -> None:
    """A busy key reserves permits in batches (one CAS for many requests), spent locally;
    two replicas leasing from the same key together never admit more than the limit."""
    limit = 3200  # leases of up to 100 permits
    period = 86_400.0  # one permit back every 27 s: none comes back during the test
    nc = await nats_kernel.connect(nats_url, "lease-test")
    try:
        kv = await nats_kernel.ensure_bucket(nc.jetstream(), nats_kernel.RATE_LIMIT_BUCKET)
        writes = 0
        update, create = kv.update, kv.create

        async def counted_update(*args: Any, **kwargs: Any) -> int:
            nonlocal writes
            writes += 1
            return await update(*args, **kwargs)

        async def counted_create(*args: Any, **kwargs: Any) -> int:
            nonlocal writes
            writes += 1
            return await create(*args, **kwargs)

        kv.update = counted_update  # type: ignore[method-assign]
        kv.create = counted_create  # type: ignore[method-assign]
        first = RateLimiter(kv, {"default": limit}, period)
        second = RateLimiter(kv, {"default": limit}, period)
        await first.start()
        await second.start()
        key = f"default.u{new_ids()[0]}"
        try:
            admitted = 0
            remaining = []
            for i in range(limit + 400):
                decision = await (first if i % 2 else second).check("default", key)
                admitted += decision.allowed
                if decision.allowed and i % 2:
                    remaining.append(decision.remaining)
            # Never more than the limit; fewer only if a lease expired unspent (the
            # replicas alternate, so each spends its lease within milliseconds).
            assert limit - 200 <= admitted <= limit, admitted
            assert remaining == sorted(remaining, reverse=True)
            assert all(0 <= r < limit for r in remaining)
            # One CAS per lease, not per request.
            assert writes < limit // 10, writes
            assert not (await first.check("default", key)).allowed
            assert not (await second.check("default", key)).allowed
        finally:
            await first.stop()
            await second.stop()
    finally:
        await nc.close()
