"""The route table and the scope rules, without any server."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import envelope
from gateway.routes import GATEWAY, RATE_LIMITS, RouteTable, is_public, scope_for

ROUTES = RouteTable()


@pytest.mark.parametrize(("path", "service"), [
    ("/api/v1/auth/login/", "auth"),
    ("/api/v1/account/settings/", "auth"),
    ("/api/v1/account/team/5/", "auth"),
    ("/api/v1/account/usage/analytics/", "billing"),
    ("/api/v1/system/prompts/by_type/x/", "auth"),
    ("/api/v1/system/settings/integrations/openai/test/", "auth"),
    ("/api/v1/system/integrations/image_generation/", "auth"),
    ("/api/v1/system/author-profiles/", "writer"),
    ("/api/v1/system/settings/task_progress/abc/", GATEWAY),
    ("/api/v1/system/request-metrics/abc/", GATEWAY),
    ("/api/v1/system/ping/", GATEWAY),
    ("/api/v1/billing/invoices/", "billing"),
    ("/api/v1/admin/billing/", "billing"),
    ("/api/v1/planner/keywords/", "planner"),
    ("/api/v1/writer/tasks/", "writer"),
    ("/api/v1/integration/integrations/", "writer"),
    ("/api/v1/linker/apply/", "writer"),
    ("/api/v1/optimizer/analyze/", "writer"),
    ("/api/v1/publisher/publications/", "writer"),
    # A module's own URL lists its resources: the gateway answers it.
    ("/api/v1/linker/", GATEWAY),
    ("/api/v1/planner/", GATEWAY),
    ("/api/v1/account/", GATEWAY),
    ("/api/v1/automation/run_now/", "automation"),
    ("/api/v1/system/unknown/", None),
    ("/internal/v1/auth/exchange", None),
    ("/api/v1/unknown/", None),
])
def test_longest_prefix_routing(path: str, service: str | None) -> None:
    assert ROUTES.service_for(path) == service


@pytest.mark.parametrize(("method", "path", "scope"), [
    ("POST", "/api/v1/auth/login/", "auth"),
    ("POST", "/api/v1/auth/register/", "auth"),
    ("POST", "/api/v1/auth/refresh/", "auth"),
    ("POST", "/api/v1/auth/change-password/", "auth_strict"),
    ("POST", "/api/v1/auth/sites/3/regenerate_api_key/", "auth_strict"),
    ("GET", "/api/v1/auth/users/", "default"),
    ("POST", "/api/v1/planner/keywords/auto_cluster/", "planner_ai"),
    ("POST", "/api/v1/planner/clusters/auto_generate_ideas/", "planner_ai"),
    ("GET", "/api/v1/planner/keywords/", "planner"),
    ("POST", "/api/v1/writer/tasks/auto_generate_content/", "writer_ai"),
    ("POST", "/api/v1/writer/content/generate_image_prompts/", "writer_ai"),
    ("POST", "/api/v1/writer/images/generate_images/", "image_gen"),
    ("GET", "/api/v1/writer/content/", "content_read"),
    ("PUT", "/api/v1/writer/content/4/", "content_write"),
    ("GET", "/api/v1/writer/tasks/", "writer"),
    ("POST", "/api/v1/system/settings/integrations/openai/test/", "ai_function"),
    ("POST", "/api/v1/system/settings/integrations/runware/generate/", "ai_function"),
    ("POST", "/api/v1/system/settings/integrations/openai/save/", "system_admin"),
    ("GET", "/api/v1/system/prompts/", "system"),
    ("GET", "/api/v1/system/settings/task_progress/x/", "system"),
    ("GET", "/api/v1/admin/billing/stats/", "billing_admin"),
    ("GET", "/api/v1/billing/credits/balance/", "billing"),
    ("GET", "/api/v1/account/usage/analytics/", "billing"),
    ("GET", "/api/v1/system/ping/", None),
    ("GET", "/api/v1/system/status/", None),
    ("GET", "/api/v1/automation/config/", "default"),
])
def test_scopes(method: str, path: str, scope: str | None) -> None:
    assert scope_for(method, path) == scope


def test_public_routes() -> None:
    assert is_public("POST", "/api/v1/auth/login/")
    assert is_public("GET", "/api/v1/auth/plans/2/")
    assert is_public("GET", "/api/v1/auth/industries/")
    assert is_public("GET", "/api/v1/auth/jwks/")
    assert not is_public("POST", "/api/v1/auth/plans/")
    assert not is_public("GET", "/api/v1/auth/me/")
    assert not is_public("GET", "/api/v1/system/settings/task_progress/x/")


def test_rate_limit_doc_matches_the_table() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "rate-limits.md").read_text()
    for scope, limit in RATE_LIMITS.items():
        assert f"| `{scope}` | {limit} |" in doc


def test_splicing() -> None:
    assert envelope.success(b'{"a":1}', "r1") == (
        b'{"success":true,"data":{"a":1},"request_id":"r1"}')
    assert envelope.success(b"", "r1") == b'{"success":true,"data":null,"request_id":"r1"}'
    assert envelope.inline(b' {"count":0,"results":[]} ', "r") == (
        b'{"success":true,"count":0,"results":[],"request_id":"r"}')
    assert envelope.inline(b"[1]", "r") is None
    assert envelope.from_problem(b'{"title":"Not found","status":404}', 404, "r") == (
        b'{"success":false,"error":"Not found","request_id":"r"}')
    assert envelope.from_problem(b"not json", 502, "r") == (
        b'{"success":false,"error":"Bad gateway","request_id":"r"}')
