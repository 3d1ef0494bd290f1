"""The gateway's own routes: task progress (tenancy), request metrics, status, ping,
OpenAPI merge, docs, metrics."""

from __future__ import annotations

import uuid

import httpx

from gateway.api import redoc_bundle
from gateway.tests.conftest import new_ids
from libs.common import nats as nats_kernel
from libs.common.jobs import TaskProgress
from libs.common.testing.tokens import TestIssuer


async def test_task_progress_only_for_its_account(gw: httpx.AsyncClient, issuer: TestIssuer,
                                                  nats_url: str) -> None:
    user_id, account_id = new_ids()
    task_id = str(uuid.uuid4())
    nc = await nats_kernel.connect(nats_url, "test")
    try:
        kv = await nc.jetstream().key_value(nats_kernel.TASK_PROGRESS_BUCKET)
        await TaskProgress(kv).put(task_id, account_id, "PROGRESS",
                                   {"phase": "AI_CALL", "percentage": 50,
                                    "message": "Processing keywords..."})
    finally:
        await nc.close()
    path = f"/api/v1/system/settings/task_progress/{task_id}/"
    owner = issuer.headers(user_id=user_id, account_id=account_id)
    resp = await gw.get(path, headers=owner)
    assert resp.status_code == 200
    assert resp.json() == {"state": "PROGRESS", "meta": {
        "phase": "AI_CALL", "percentage": 50, "message": "Processing keywords..."}}

    stranger_user, stranger_account = new_ids()
    stranger = issuer.headers(user_id=stranger_user, account_id=stranger_account)
    resp = await gw.get(path, headers=stranger)
    assert resp.status_code == 404
    assert resp.json() == {"success": False, "error": "Not found.",
                           "request_id": resp.headers["x-request-id"]}
    resp = await gw.get(f"/api/v1/system/settings/task_progress/{uuid.uuid4()}/",
                        headers=owner)
    assert resp.status_code == 404
    assert (await gw.get(path)).status_code == 401


async def test_task_progress_of_an_id_no_key_can_be_is_404(gw: httpx.AsyncClient,
                                                          issuer: TestIssuer) -> None:
    """Schemathesis' `.exe`: a dot at either end (or two together) is no KV key; the
    client library refused it and the gateway answered 500."""
    user_id, account_id = new_ids()
    owner = issuer.headers(user_id=user_id, account_id=account_id)
    for task_id in (".exe", "exe.", "a..b", "."):
        resp = await gw.get(f"/api/v1/system/settings/task_progress/{task_id}/",
                            headers=owner)
        assert resp.status_code == 404, (task_id, resp.text)
        assert resp.json()["error"] == "Not found."


async def test_request_metrics_for_the_same_account(gw: httpx.AsyncClient,
                                                    issuer: TestIssuer) -> None:
    user_id, account_id = new_ids()
    headers = issuer.headers(user_id=user_id, account_id=account_id)
    request_id = f"req-{uuid.uuid4()}"
    await gw.get("/api/v1/planner/keywords/1/", headers={**headers, "X-Request-ID": request_id})
    resp = await gw.get(f"/api/v1/system/request-metrics/{request_id}/", headers=headers)
    assert resp.status_code == 200
    data = resp.json()["data"]
    assert data["request_id"] == request_id
    assert data["status"] == 200
    assert data["service"] == "planner"
    assert data["total_ms"] >= data["upstream_ms"] > 0
    assert data["rate_limit_ms"] > 0
    assert data["upstream_server_timing"] is None or "dur=" in data["upstream_server_timing"]
    other_user, other_account = new_ids()
    resp = await gw.get(f"/api/v1/system/request-metrics/{request_id}/",
                        headers=issuer.headers(user_id=other_user, account_id=other_account))
    assert resp.status_code == 404


async def test_ping_and_status(gw: httpx.AsyncClient) -> None:
    resp = await gw.get("/api/v1/system/ping/")
    assert resp.status_code == 200
    assert resp.json()["data"]["status"] == "ok"
    assert "x-throttle-limit" not in resp.headers
    resp = await gw.get("/api/v1/system/status/")
    assert resp.status_code == 200
    data = resp.json()["data"]
    assert data["status"] == "degraded"
    assert data["gateway"]["nats"] == "ok"
    assert data["services"]["planner"]["status"] == "ok"
    assert data["services"]["planner"]["database"] == "ok"
    assert data["services"]["billing"]["status"] == "not_configured"
    assert data["services"]["automation"]["status"] == "down"


async def test_merged_schema_wraps_every_response(gw: httpx.AsyncClient) -> None:
    resp = await gw.get("/api/schema/")
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    assert "/api/v1/planner/keywords/{keyword_id}/" in paths
    assert "/internal/v1/auth/exchange" not in paths
    assert "/readyz" not in paths
    assert "/api/v1/system/settings/task_progress/{task_id}/" in paths
    op = paths["/api/v1/planner/keywords/{keyword_id}/"]["get"]
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(ok["required"]) == {"success", "data", "request_id"}
    for code in ("401", "429", "503", "504"):
        ref = op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/ErrorEnvelope"
    login = paths["/api/v1/auth/login/"]["post"]
    assert login["security"] == []
    assert "401" not in login["responses"]
    assert set(doc["x-igny8-unavailable-services"]) == {"automation", "billing"}


async def test_docs_are_served_from_installed_packages(gw: httpx.AsyncClient) -> None:
    resp = await gw.get("/api/docs/")
    assert resp.status_code == 200
    assert "swagger-ui-bundle.js" in resp.text
    asset = await gw.get("/api/docs/swagger-ui-bundle.js")
    assert asset.status_code == 200
    assert len(asset.content) > 100_000
    resp = await gw.get("/api/redoc/")
    if redoc_bundle() is None:
        assert resp.status_code == 503
        assert "fastapi-standalone-docs" in resp.json()["error"]
    else:
        assert resp.status_code == 200
        assert (await gw.get("/api/redoc/redoc.standalone.js")).status_code == 200


async def test_metrics(gw: httpx.AsyncClient) -> None:
    resp = await gw.get("/metrics")
    assert resp.status_code == 200
    assert "igny8_http_requests_total" in resp.text
    assert 'service="gateway"' in resp.text
    assert "igny8_rate_limit_rejections_total" in resp.text
