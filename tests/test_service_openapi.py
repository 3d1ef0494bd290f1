"""Each service's own OpenAPI document names every operation once: generated clients name
their methods after operation ids, and FastAPI gives a route serving two methods one id
for both, picked from a set (so the document changed from run to run)."""

from __future__ import annotations

import importlib
from collections import Counter

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from igny8.services import present_services

SERVICES = [spec for spec in present_services() if spec.name != "gateway"]


def _app(name: str) -> FastAPI:
    app: FastAPI = importlib.import_module(f"services.{name}.main").create_app()
    return app


@pytest.mark.parametrize("name", [spec.name for spec in SERVICES])
def test_every_operation_has_its_own_id(name: str) -> None:
    app = _app(name)
    shared = [f"{sorted(route.methods or ())} {route.path}" for route in app.routes
              if isinstance(route, APIRoute) and len(route.methods or ()) > 1]
    assert not shared, f"one route, several methods (one operation id for all): {shared}"
    ids = Counter(op["operationId"] for item in app.openapi()["paths"].values()
                  for op in item.values() if isinstance(op, dict) and "operationId" in op)
    assert [op for op, n in ids.items() if n > 1] == []
