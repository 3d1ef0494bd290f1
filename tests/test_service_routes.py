"""What every service's routes must be, checked on the apps themselves.

- Each operation has its own id: generated clients name their methods after operation
  ids, and FastAPI gives a route serving two methods one id for both, picked from a set
  (so the document changed from run to run).
- Each endpoint and each dependency is a coroutine function: FastAPI runs a plain `def`
  in its thread pool, a hand-off to a worker thread and back on every request, which on a
  list path cost more than what the dependencies do (ADR 0033)."""

from __future__ import annotations

import importlib
import inspect
import re
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from igny8.services import present_services
from libs.common.ids import MAX_BIGINT
from libs.common.schemas import WriteModel

SERVICES = [spec.name for spec in present_services() if spec.name != "gateway"]


def _app(name: str) -> FastAPI:
    app: FastAPI = importlib.import_module(f"services.{name}.main").create_app()
    return app


def _api_routes(app: FastAPI) -> Iterator[APIRoute]:
    """Every API route, included routers' too (FastAPI includes them lazily)."""
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield context.original_route


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def _runs_on_the_loop(call: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)


def _name(call: Callable[..., Any]) -> str:
    return f"{getattr(call, '__module__', '?')}.{getattr(call, '__qualname__', call)}"


@pytest.mark.parametrize("name", SERVICES)
def test_every_operation_has_its_own_id(name: str) -> None:
    app = _app(name)
    shared = [f"{sorted(route.methods or ())} {route.path}" for route in _api_routes(app)
              if len(route.methods or ()) > 1]
    assert not shared, f"one route, several methods (one operation id for all): {shared}"
    ids = Counter(op["operationId"] for item in app.openapi()["paths"].values()
                  for op in item.values() if isinstance(op, dict) and "operationId" in op)
    assert [op for op, n in ids.items() if n > 1] == []


@pytest.mark.parametrize("name", SERVICES)
def test_no_request_waits_for_the_thread_pool(name: str) -> None:
    routes = list(_api_routes(_app(name)))
    assert len(routes) > 10  # the walk reached the included routers
    in_threads = sorted({f"{route.path}: {_name(call)}" for route in routes
                         for call in (route.endpoint, *_calls(route.dependant))
                         if not _runs_on_the_loop(call)})
    assert in_threads == [], "sync endpoints or dependencies (run in the thread pool)"


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


@pytest.mark.parametrize("name", SERVICES)
def test_the_document_states_integer_bounds_exactly(name: str) -> None:
    """FastAPI's document models type bounds as floats: every `Id`'s `le=2**63 - 1` was
    written 9.223372036854776e+18 (2**63), which the API refuses with a 400."""
    document = _app(name).openapi()
    floats = [schema for schema in _walk(document) if schema.get("type") == "integer"
              and any(isinstance(schema.get(k), float) for k in ("minimum", "maximum"))]
    assert floats == []
    ids = [schema for schema in _walk(document)
           if schema.get("type") == "integer" and schema.get("maximum", 0) > 2**53]
    assert ids
    assert all(schema["maximum"] == MAX_BIGINT for schema in ids)


@pytest.mark.parametrize("name", SERVICES)
def test_a_body_field_that_refuses_null_is_not_documented_as_nullable(name: str) -> None:
    """An update body's fields are `X | None` so that they may be left out; the document
    said null was fine, and the API answered 400 "This field may not be null."."""
    app = _app(name)
    schemas = app.openapi()["components"]["schemas"]
    models = {route.body_field.field_info.annotation for route in _api_routes(app)
              if route.body_field is not None}
    checked = 0
    for model in models:
        if not (isinstance(model, type) and issubclass(model, WriteModel)):
            continue
        documented = schemas[model.__name__]["properties"]
        for field in model.model_fields:
            if not model.nullable(field):
                checked += 1
                assert {"type": "null"} not in documented[field].get("anyOf", ()), (
                    model.__name__, field)
                assert "null" not in documented[field].get("type", ()), (model.__name__, field)
    assert checked


# What these operations answer beyond the statuses the gateway gives every operation
# (400, 401, 403, 404, 429, 503, 504): schemathesis' status_code_conformance found 409s
# the document did not declare (a duplicate taxonomy, author profile, an active run).
ANSWERS = {
    # Public (no 401 from the gateway's merge), but bad credentials or a dead refresh
    # token are the caller's 401.
    "auth": {("post", "/api/v1/auth/login/"): {"401"},
             ("post", "/api/v1/auth/refresh/"): {"401"}},
    "planner": {("post", "/api/v1/planner/keywords/"): {"409"},
                ("put", "/api/v1/planner/keywords/{keyword_id}/"): {"409"},
                ("patch", "/api/v1/planner/clusters/{cluster_id}/"): {"409"},
                ("post", "/api/v1/planner/keywords/auto_cluster/"): {"402"},
                ("post", "/api/v1/planner/clusters/auto_generate_ideas/"): {"402"}},
    "writer": {("post", "/api/v1/writer/taxonomies/"): {"409"},
               ("patch", "/api/v1/system/author-profiles/{row_id}/"): {"409"},
               ("post", "/api/v1/writer/content/"): {"409"},
               ("post", "/api/v1/writer/tasks/auto_generate_content/"): {"402"},
               ("post", "/api/v1/writer/images/generate_images/"): {"402"},
               ("post", "/api/v1/linker/apply/"): {"402", "409"},
               ("post", "/api/v1/webhooks/wordpress/status/"): {"409"}},
    "billing": {("post", "/api/v1/billing/payments/"): {"409"},
                ("post", "/api/v1/admin/payments/{payment_id}/approve/"): {"409"}},
    "automation": {("post", "/api/v1/automation/run_now/"): {"402", "409"},
                   ("post", "/api/v1/automation/cancel/"): {"409"}},
}


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_operations_document_their_conflicts_and_credit_holds(name: str) -> None:
    paths = _app(name).openapi()["paths"]
    for (method, path), codes in ANSWERS[name].items():
        assert codes <= paths[path][method]["responses"].keys(), (method, path)


@pytest.mark.parametrize("name", SERVICES)
def test_a_decimal_string_is_documented_as_one(name: str) -> None:
    """Pydantic documents a Decimal as `anyOf: [number, string]` with any string; `""` is a
    400 ("A valid number is required."), so the document gives the string a pattern."""
    document = _app(name).openapi()
    bare = [schema for schema in _walk(document) if isinstance(schema.get("anyOf"), list)
            and any(v.get("type") == "number" for v in schema["anyOf"])
            and {"type": "string"} in schema["anyOf"]]
    assert bare == []


@pytest.mark.parametrize(("name", "path", "field"), [
    ("billing", "/api/v1/billing/payments/", "amount"),
    ("billing", "/api/v1/admin/credit-packages/", "price"),
])
def test_a_positive_decimal_is_documented_as_one(name: str, path: str, field: str) -> None:
    """An amount that must be more than 0 refuses "0", "0.00" and "-1" (a 400 naming it);
    its string pattern said "0" was fine, as its number's `exclusiveMinimum` did not."""
    app = _app(name)
    document = app.openapi()
    ref = document["paths"][path]["post"]["requestBody"]["content"]["application/json"][
        "schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"][field]
    number = next(v for v in schema["anyOf"] if v.get("type") == "number")
    pattern = next(v for v in schema["anyOf"] if v.get("type") == "string")["pattern"]
    assert number["exclusiveMinimum"] == 0
    for refused in ("0", "0.00", "-1", "00", ".0", "-0.5", ""):
        assert not re.match(pattern, refused), refused
    for accepted in ("1", "0.5", ".5", "10.00", "0.01", "+5"):
        assert re.match(pattern, accepted), accepted
