"""The merged OpenAPI document says what the API answers (issue 13): pages for list
endpoints, 400 for bad input (never FastAPI's 422), the error answers every operation can
give, and unique operation ids."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Query
from pydantic import BaseModel
from starlette.responses import Response

from gateway.openapi import merge
from gateway.routes import RouteTable

ERROR = {"$ref": "#/components/schemas/ErrorEnvelope"}


class Keyword(BaseModel):
    id: int
    keyword: str


def planner_document() -> dict[str, Any]:
    """A service's own document, as FastAPI writes it for the shapes our services use."""
    app = FastAPI()

    @app.get("/api/v1/planner/keywords/")
    async def keywords(page: int = Query(1), page_size: int = Query(25),
                       search: str | None = None) -> Response:
        return Response()

    @app.get("/api/v1/planner/clusters/", response_model=list[Keyword])
    async def clusters(page: int = 1, page_size: int = 25) -> Response:
        return Response()

    @app.get("/api/v1/planner/keywords/{keyword_id}/", response_model=Keyword)
    async def keyword(keyword_id: int) -> Response:
        return Response()

    @app.put("/api/v1/planner/keywords/{keyword_id}/", response_model=Keyword)
    @app.patch("/api/v1/planner/keywords/{keyword_id}/", response_model=Keyword)
    async def update(keyword_id: int, data: Keyword) -> Response:
        return Response()

    @app.post("/api/v1/planner/keywords/", response_model=Keyword)
    async def create(data: Keyword) -> Response:
        return Response()

    @app.post("/api/v1/planner/keywords/bulk_delete/")
    async def bulk_delete(data: Ids) -> Response:
        return Response()

    @app.get("/api/v1/planner/keywords/export/")
    async def export(site_id: int | None = None) -> Response:
        return Response()

    return app.openapi()


class Ids(BaseModel):
    ids: list[int]


def merged() -> dict[str, Any]:
    return merge({"planner": planner_document()}, RouteTable(), "http://testserver", {}, [])


def schema_of(op: dict[str, Any], code: str = "200") -> dict[str, Any]:
    schema: dict[str, Any] = op["responses"][code]["content"]["application/json"]["schema"]
    return schema


def test_list_endpoints_are_documented_as_pages() -> None:
    paths = merged()["paths"]
    page = schema_of(paths["/api/v1/planner/keywords/"]["get"])
    assert set(page["required"]) == {"success", "count", "next", "previous", "results",
                                     "request_id"}
    assert "data" not in page["properties"]
    # Its service declared no item: a list item holds what its detail GET answers.
    assert page["properties"]["results"]["items"] == {"$ref": "#/components/schemas/Keyword"}
    typed = schema_of(paths["/api/v1/planner/clusters/"]["get"])
    assert typed["properties"]["results"]["items"] == {"$ref": "#/components/schemas/Keyword"}
    detail = schema_of(paths["/api/v1/planner/keywords/{keyword_id}/"]["get"])
    assert set(detail["required"]) == {"success", "data", "request_id"}


def test_validation_is_400_and_every_error_answer_is_documented() -> None:
    paths = merged()["paths"]
    for path, item in paths.items():
        for method, op in item.items():
            responses = op["responses"]
            assert "422" not in responses, (method, path)
            codes = {"400", "401", "403", "429", "503", "504"}
            if "{" in path or (path.endswith(("/keywords/", "/clusters/")) and method == "get"):
                codes.add("404")
            assert codes <= responses.keys(), (method, path, sorted(responses))
            for code in codes:
                assert schema_of(op, code) == ERROR
    update = paths["/api/v1/planner/keywords/{keyword_id}/"]["put"]
    assert update["responses"]["400"]["description"] == "Validation failed"


def test_operation_ids_are_unique() -> None:
    ids = [op["operationId"] for item in merged()["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_404_where_a_page_or_an_id_can_be_missing() -> None:
    """A page past the end, and a row named in the query or the body that the caller
    cannot see, are 404s (found by schemathesis' status_code_conformance); an operation
    naming no row does not say it answers 404."""
    paths = merged()["paths"]
    answers_404 = {(method, path) for path, item in paths.items()
                   for method, op in item.items() if "404" in op["responses"]}
    assert answers_404 == {
        ("get", "/api/v1/planner/keywords/"), ("get", "/api/v1/planner/clusters/"),
        ("get", "/api/v1/planner/keywords/{keyword_id}/"),
        ("put", "/api/v1/planner/keywords/{keyword_id}/"),
        ("patch", "/api/v1/planner/keywords/{keyword_id}/"),
        ("post", "/api/v1/planner/keywords/bulk_delete/"),
        ("get", "/api/v1/planner/keywords/export/"),
    }
