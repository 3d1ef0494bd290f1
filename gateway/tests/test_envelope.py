"""The envelope and header handling of proxied answers."""

from __future__ import annotations

import httpx
import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.tests.conftest import new_ids
from libs.common import telemetry
from libs.common.telemetry import configure_tracing
from libs.common.testing.tokens import TestIssuer


def auth(issuer: TestIssuer, **kwargs: object) -> dict[str, str]:
    user_id, account_id = new_ids()
    return issuer.headers(user_id=user_id, account_id=account_id, **kwargs)  # type: ignore[arg-type]


async def test_plain_json_is_wrapped_as_data(gw: httpx.AsyncClient, issuer: TestIssuer) -> None:
    resp = await gw.get("/api/v1/planner/keywords/5/", headers=auth(issuer))
    assert resp.status_code == 200
    body = resp.json()
    rid = resp.headers["x-request-id"]
    assert body == {"success": True, "data": {"id": 5, "keyword": "seo tools", "volume": 1200},
                    "request_id": rid}
    assert not any(name.lower().startswith("x-igny8-") for name in resp.headers)
    assert resp.headers["content-type"] == "application/json"


async def test_page_members_are_spliced_into_the_envelope(gw: httpx.AsyncClient,
                                                          issuer: TestIssuer) -> None:
    resp = await gw.get("/api/v1/planner/keywords/?page=2&page_size=10", headers=auth(issuer))
    body = resp.json()
    assert list(body) == ["success", "count", "next", "previous", "results", "request_id"]
    assert body["success"] is True
    assert body["count"] == 25
    assert [r["id"] for r in body["results"]] == list(range(11, 21))
    # Public URLs: the host the caller used, as forwarded by the gateway.
    assert body["next"] == "http://testserver/api/v1/planner/keywords/?page_size=10&page=3"
    assert body["previous"] == "http://testserver/api/v1/planner/keywords/?page_size=10"
    assert body["request_id"] == resp.headers["x-request-id"]


async def test_message_and_empty_inline_bodies(gw: httpx.AsyncClient, issuer: TestIssuer) -> None:
    headers = auth(issuer)
    resp = await gw.get("/api/v1/planner/message/", headers=headers)
    rid = resp.headers["x-request-id"]
    assert resp.json() == {"success": True, "data": {"queued": 3},
                           "message": "Keywords queued", "request_id": rid}
    resp = await gw.get("/api/v1/planner/empty/", headers=headers)
    assert resp.json() == {"success": True, "request_id": resp.headers["x-request-id"]}


async def test_problem_details_become_error_envelopes(gw: httpx.AsyncClient,
                                                      issuer: TestIssuer) -> None:
    headers = auth(issuer)
    resp = await gw.get("/api/v1/planner/keywords/404/", headers=headers)
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == {"success": False, "error": "Keyword not found",
                           "request_id": resp.headers["x-request-id"]}
    resp = await gw.post("/api/v1/planner/keywords/bulk_delete/", json={}, headers=headers)
    assert resp.status_code == 400
    assert resp.json() == {"success": False, "error": "Validation failed",
                           "errors": {"ids": ["This field is required."]},
                           "request_id": resp.headers["x-request-id"]}


async def test_no_content_stays_empty_and_files_pass_through(gw: httpx.AsyncClient,
                                                             issuer: TestIssuer) -> None:
    headers = auth(issuer)
    resp = await gw.delete("/api/v1/planner/keywords/3/", headers=headers)
    assert resp.status_code == 204
    assert resp.content == b""
    resp = await gw.get("/api/v1/planner/keywords/export/", headers=headers)
    assert resp.status_code == 200
    assert resp.content == b"id,keyword\n1,seo\n"
    assert resp.headers["content-type"].startswith("text/csv")
    assert resp.headers["content-disposition"] == "attachment; filename=k.csv"


async def test_request_id_kept_when_sane_generated_otherwise_and_sent_upstream(
        gw: httpx.AsyncClient, issuer: TestIssuer) -> None:
    headers = auth(issuer)
    resp = await gw.get("/api/v1/planner/echo/",
                        headers={**headers, "X-Request-ID": "client-id.42",
                                 "X-Igny8-Envelope": "inline", "X-Igny8-Role": "developer",
                                 "X-Forwarded-For": "198.51.100.7"})
    assert resp.headers["x-request-id"] == "client-id.42"
    body = resp.json()
    assert body["request_id"] == "client-id.42"
    seen = body["data"]["headers"]
    assert seen["x-request-id"] == "client-id.42"
    assert seen["authorization"] == headers["Authorization"]
    assert seen["x-forwarded-for"] == "198.51.100.7"
    assert seen["x-forwarded-host"] == "testserver"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["traceparent"].startswith("00-")
    assert not any(k.startswith("x-igny8-") for k in seen)

    resp = await gw.get("/api/v1/planner/keywords/1/",
                        headers={**headers, "X-Request-ID": "no spaces <allowed>"})
    rid = resp.headers["x-request-id"]
    assert rid != "no spaces <allowed>"
    assert len(rid) == 36
    assert resp.json()["request_id"] == rid


async def test_gateway_errors_are_enveloped(gw: httpx.AsyncClient, issuer: TestIssuer) -> None:
    headers = auth(issuer)
    cases = [
        # DRF's texts, as the services answer them (a miss read "Not found" here and
        # "Not found." one hop further).
        ("GET", "/api/v1/nothing-here/", 404, "Not found."),
        ("POST", "/internal/v1/auth/exchange", 404, "Not found."),
        ("TRACE", "/api/v1/planner/keywords/", 405, 'Method "TRACE" not allowed.'),
        ("POST", "/api/v1/system/ping/", 405, 'Method "POST" not allowed.'),
        ("GET", "/api/v1/billing/credits/balance/", 503, "Service unavailable"),
        ("GET", "/api/v1/automation/config/", 503, "Service unavailable"),
        ("GET", "/api/v1/writer/slow/", 504, "Gateway timeout"),
    ]
    for method, path, status, message in cases:
        resp = await gw.request(method, path, headers=headers)
        assert resp.status_code == status, (path, resp.text)
        assert resp.json() == {"success": False, "error": message,
                               "request_id": resp.headers["x-request-id"]}, path
    resp = await gw.post("/api/v1/planner/keywords/", content=b"x" * 5000,
                         headers={**headers, "content-type": "application/json"})
    assert resp.status_code == 413
    assert resp.json()["error"] == "Request body too large"


async def test_cors(gw: httpx.AsyncClient, issuer: TestIssuer) -> None:
    preflight = await gw.options("/api/v1/planner/keywords/", headers={
        "Origin": "https://app.igny8.test", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://app.igny8.test"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    refused = await gw.options("/api/v1/planner/keywords/", headers={
        "Origin": "https://evil.test", "Access-Control-Request-Method": "POST"})
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    resp = await gw.get("/api/v1/planner/keywords/1/",
                        headers={**auth(issuer), "Origin": "https://app.igny8.test"})
    assert resp.headers["access-control-allow-origin"] == "https://app.igny8.test"
    assert "X-Throttle-Remaining" in resp.headers["access-control-expose-headers"]


async def test_upstream_redirect_points_at_the_gateway(gw: httpx.AsyncClient,
                                                       issuer: TestIssuer) -> None:
    # FastAPI redirects a missing trailing slash to its own address.
    resp = await gw.get("/api/v1/planner/keywords?page=2", headers=auth(issuer))
    assert resp.status_code == 307
    assert resp.headers["location"] == "http://testserver/api/v1/planner/keywords/?page=2"
    resp = await gw.post("/api/v1/planner/keywords/", json={"keyword": "x"},
                         headers=auth(issuer))
    assert resp.status_code == 201
    assert resp.headers["location"] == "/api/v1/planner/keywords/" + str(
        orjson.loads(resp.content)["data"]["id"]) + "/"


async def test_a_gateway_bug_still_answers_the_envelope(
        gw: httpx.AsyncClient, issuer: TestIssuer, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = gw.app.pipeline  # type: ignore[attr-defined]

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(pipeline, "_shape", broken)
    resp = await gw.get("/api/v1/planner/keywords/1/", headers=auth(issuer))
    assert resp.status_code == 500
    assert resp.json() == {"success": False, "error": "Internal server error",
                           "request_id": resp.headers["x-request-id"]}


async def test_the_clients_trace_continues_upstream(gw: httpx.AsyncClient,
                                                    issuer: TestIssuer) -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    resp = await gw.get("/api/v1/planner/echo/", headers={
        **auth(issuer), "traceparent": f"00-{trace_id}-b7ad6b7169203331-01"})
    forwarded = resp.json()["data"]["headers"]["traceparent"].split("-")
    assert forwarded[0] == "00"
    assert forwarded[1] == trace_id
    assert len(forwarded[2]) == 16
    # An invalid one starts a new trace instead of being passed on.
    resp = await gw.get("/api/v1/planner/echo/", headers={
        **auth(issuer), "traceparent": "ff-nothex-01"})
    forwarded = resp.json()["data"]["headers"]["traceparent"].split("-")
    assert forwarded[0] == "00"
    assert len(forwarded[1]) == 32
    assert forwarded[1] != "0" * 32


async def test_gateway_spans_are_created_when_exported(gw: httpx.AsyncClient,
                                                       issuer: TestIssuer) -> None:
    spans = InMemorySpanExporter()
    provider = configure_tracing("gateway", exporter=spans)
    assert telemetry.exporting()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    resp = await gw.get("/api/v1/planner/echo/", headers={
        **auth(issuer), "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    provider.force_flush()
    forwarded = resp.json()["data"]["headers"]["traceparent"].split("-")
    mine = [s for s in spans.get_finished_spans()
            if s.attributes and s.attributes.get("igny8.request_id") == resp.headers[
                "x-request-id"]]
    assert len(mine) == 1
    context = mine[0].get_span_context()
    assert f"{context.trace_id:032x}" == trace_id == forwarded[1]
    assert f"{context.span_id:016x}" == forwarded[2]
