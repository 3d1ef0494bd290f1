# ruff: noqa: PT018 - compound assertions read as one fact about a response
"""Issue 13's findings at the pipeline: failed credentials are limited per client address
and lockouts are honest 429s (M3), redirects and links name the public URL (L2), request
metrics are keyed by account (L3), /metrics, Server-Timing and Cache-Control (L5), HEAD
(L6)."""

from __future__ import annotations

import base64
import time

import httpx

from gateway.routes import RATE_LIMITS
from gateway.tests.conftest import GatewayFactory, new_ids, random_address
from gateway.tests.upstream import GOOD_BASIC, LOCKED_EMAIL, Counters
from libs.common.testing.tokens import TestIssuer


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_failed_credentials_are_limited_per_client_address(
        gw: httpx.AsyncClient, issuer: TestIssuer, counters: Counters) -> None:
    attacker, neighbour = random_address(), random_address()
    user_id, account_id = new_ids()
    signed_in = {"Authorization": f"Bearer {issuer.issue(user_id=user_id, account_id=account_id)}",
                 "X-Forwarded-For": attacker}
    assert (await gw.get("/api/v1/planner/keywords/1/", headers=signed_in)).status_code == 200
    limit = RATE_LIMITS["auth_failure"]
    statuses = []
    for i in range(limit + 10):
        authorization = (basic(GOOD_BASIC[0], f"guess-{i}") if i % 2
                         else "Bearer not.a.token")
        resp = await gw.get("/api/v1/writer/tasks/",
                            headers={"Authorization": authorization, "X-Forwarded-For": attacker})
        statuses.append(resp.status_code)
    assert statuses[:limit] == [401] * limit
    assert set(statuses[limit:]) == {429}
    refused = resp
    assert refused.json()["error"] == "Too many failed authentication attempts"
    assert refused.headers["x-throttle-remaining"] == "0"
    assert int(refused.headers["retry-after"]) >= 1
    # Refused before auth is asked: the guesses stop reaching it.
    exchanges = counters.exchanges
    await gw.get("/api/v1/writer/tasks/", headers={
        "Authorization": basic(*GOOD_BASIC), "X-Forwarded-For": attacker})
    assert counters.exchanges == exchanges
    # Someone already signed in behind the same address, and other addresses, go on.
    assert (await gw.get("/api/v1/planner/keywords/1/", headers=signed_in)).status_code == 200
    other = await gw.get("/api/v1/writer/tasks/", headers={
        "Authorization": basic(*GOOD_BASIC), "X-Forwarded-For": neighbour})
    assert other.status_code == 200


async def test_the_exchange_carries_the_client_address_and_a_lockout_is_429(
        gw: httpx.AsyncClient, counters: Counters) -> None:
    client = random_address()
    resp = await gw.get("/api/v1/writer/tasks/", headers={
        "Authorization": basic(LOCKED_EMAIL, "whatever"), "X-Forwarded-For": client})
    assert counters.exchange_addresses[-1] == client
    assert resp.status_code == 429, resp.text
    assert resp.json()["error"] == "Too many failed sign-in attempts. Try again later."
    assert resp.headers["retry-after"] == "900"
    assert resp.headers["x-throttle-remaining"] == "0"
    assert abs(int(resp.headers["x-throttle-reset"]) - (time.time() + 900)) < 60


async def test_a_services_own_429_is_told_truthfully(gw: httpx.AsyncClient) -> None:
    """The login lockout (D6): the gateway's `auth` scope admitted the request, so its
    headers (13 remaining, reset in seconds) contradicted the service's Retry-After."""
    resp = await gw.post("/api/v1/auth/login/", json={"email": LOCKED_EMAIL, "password": "x"},
                         headers={"X-Forwarded-For": random_address()})
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "900"
    assert resp.headers["x-throttle-remaining"] == "0"
    assert int(resp.headers["x-throttle-reset"]) >= time.time() + 800
    assert "ratelimit" not in resp.headers and "ratelimit-policy" not in resp.headers


async def test_redirects_and_links_name_the_public_url_not_the_clients_host(
        gw: httpx.AsyncClient, issuer: TestIssuer) -> None:
    user_id, account_id = new_ids()
    headers = {**issuer.headers(user_id=user_id, account_id=account_id),
               "Host": "evil.example"}
    moved = await gw.get("/api/v1/planner/moved/", headers=headers)
    assert moved.status_code == 307
    assert moved.headers["location"] == "http://testserver/api/v1/planner/keywords/"
    page = await gw.get("/api/v1/planner/keywords/?page_size=10", headers=headers)
    assert page.json()["next"].startswith("http://testserver/api/v1/planner/keywords/")


async def test_request_metrics_are_keyed_by_account(gw: httpx.AsyncClient,
                                                    issuer: TestIssuer) -> None:
    """A request id chosen by another tenant does not hide (or show) yours."""
    victim_user, victim_account = new_ids()
    attacker_user, attacker_account = new_ids()
    victim = issuer.headers(user_id=victim_user, account_id=victim_account)
    attacker = issuer.headers(user_id=attacker_user, account_id=attacker_account)
    request_id = f"shared-{victim_user}"
    await gw.get("/api/v1/planner/keywords/1/", headers={**victim, "X-Request-ID": request_id})
    await gw.get("/api/v1/planner/keywords/2/", headers={**attacker, "X-Request-ID": request_id})
    seen = await gw.get(f"/api/v1/system/request-metrics/{request_id}/", headers=victim)
    assert seen.status_code == 200 and seen.json()["data"]["path"] == "/api/v1/planner/keywords/1/"
    theirs = await gw.get(f"/api/v1/system/request-metrics/{request_id}/", headers=attacker)
    assert theirs.json()["data"]["path"] == "/api/v1/planner/keywords/2/"


async def test_metrics_are_not_served_to_the_public(make_gateway: GatewayFactory) -> None:
    async with make_gateway(metrics_port=9999) as gw:
        # Through a proxy (the ingress), or from anywhere but loopback: not found.
        proxied = await gw.get("/metrics", headers={"X-Forwarded-For": "203.0.113.5"})
        assert proxied.status_code == 404
        # The metrics port answers whoever reaches it.
        transport = httpx.ASGITransport(app=gw.app,  # type: ignore[attr-defined]
                                        client=("10.0.0.7", 5000))
        async with httpx.AsyncClient(transport=transport,
                                     base_url="http://testserver:9999") as scraper:
            scrape = await scraper.get("/metrics")
        assert scrape.status_code == 200 and "igny8_http_requests_total" in scrape.text
        transport = httpx.ASGITransport(app=gw.app,  # type: ignore[attr-defined]
                                        client=("10.0.0.7", 5000))
        async with httpx.AsyncClient(transport=transport,
                                     base_url="http://testserver") as outsider:
            assert (await outsider.get("/metrics")).status_code == 404


async def test_scrapes_and_probes_are_counted_apart_from_traffic(
        make_gateway: GatewayFactory) -> None:
    """Dashboards count the gateway's traffic without Prometheus's scrapes and the
    kubelet's probes: those carry their path as the route, not `gateway`."""
    from prometheus_client import REGISTRY

    def count(route: str, path_status: str = "200") -> float:
        return REGISTRY.get_sample_value("igny8_http_requests_total", {
            "service": "gateway", "method": "GET", "route": route,
            "status": path_status}) or 0.0

    async with make_gateway(metrics_port=9998) as gw:
        before = {route: count(route) for route in ("/metrics", "/healthz", "gateway")}
        transport = httpx.ASGITransport(app=gw.app,  # type: ignore[attr-defined]
                                        client=("10.0.0.7", 5000))
        async with httpx.AsyncClient(transport=transport,
                                     base_url="http://testserver:9998") as scraper:
            assert (await scraper.get("/metrics")).status_code == 200
        assert (await gw.get("/healthz")).status_code == 200
        assert (await gw.get("/api/v1/system/ping/")).status_code == 200
        assert count("/metrics") == before["/metrics"] + 1
        assert count("/healthz") == before["/healthz"] + 1
        assert count("gateway") == before["gateway"] + 1


async def test_answers_carry_no_server_timing_and_are_not_stored(
        gw: httpx.AsyncClient, make_gateway: GatewayFactory) -> None:
    login = await gw.post("/api/v1/auth/login/", json={"email": "a@b.c", "password": "x"},
                          headers={"X-Forwarded-For": random_address()})
    assert login.status_code == 200
    assert login.headers["cache-control"] == "no-store"
    assert "server-timing" not in login.headers
    ping = await gw.get("/api/v1/system/ping/")
    assert ping.headers["cache-control"] == "no-store" and "server-timing" not in ping.headers
    async with make_gateway(server_timing=True) as timed:
        resp = await timed.get("/api/v1/system/ping/")
        assert resp.status_code == 200
        login = await timed.post("/api/v1/auth/login/", json={"email": "a@b.c", "password": "x"},
                                 headers={"X-Forwarded-For": random_address()})
        assert "gateway;dur=" in login.headers["server-timing"]


async def test_head_answers_the_length_get_would_have(gw: httpx.AsyncClient,
                                                      issuer: TestIssuer) -> None:
    user_id, account_id = new_ids()
    headers = issuer.headers(user_id=user_id, account_id=account_id)
    got = await gw.get("/api/v1/planner/keywords/7/", headers=headers)
    head = await gw.head("/api/v1/planner/keywords/7/", headers=headers)
    assert got.status_code == head.status_code == 200
    # The server, not the app, leaves the body out (test_server.py). The request ids of
    # the two answers differ, and have the same length.
    assert int(head.headers["content-length"]) == len(got.content)
    missing = await gw.head("/api/v1/planner/keywords/404/", headers=headers)
    assert missing.status_code == 404 and int(missing.headers["content-length"]) > 0
