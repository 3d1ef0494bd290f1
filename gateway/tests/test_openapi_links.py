"""The merged document's links (`gateway/openapi_links.py`): a created or listed row feeds
the operations that take its id, so a client (and schemathesis' stateful phase) can go
from a site it made to its sectors, from a sector to the clusters made in it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.responses import Response

from gateway.openapi import merge
from gateway.routes import RouteTable


class Site(BaseModel):
    id: int
    name: str


class Sector(BaseModel):
    id: int
    site_id: int


class SectorCreate(BaseModel):
    site_id: int
    name: str


class ClusterCreate(BaseModel):
    site_id: int
    sector_id: int
    name: str


class Task(BaseModel):
    id: int
    title: str


def auth_document() -> dict[str, Any]:
    app = FastAPI()

    @app.post("/api/v1/auth/sites/", response_model=Site, status_code=201)
    async def create_site(data: Site) -> Response:
        return Response()

    @app.get("/api/v1/auth/sites/{site_id}/", response_model=Site)
    async def get_site(site_id: int) -> Response:
        return Response()

    @app.get("/api/v1/auth/sectors/", response_model=list[Sector])
    async def list_sectors(page: int = 1, page_size: int = 10,
                           site_id: int | None = None) -> Response:
        return Response()

    @app.post("/api/v1/auth/sectors/", response_model=Sector, status_code=201)
    async def create_sector(data: SectorCreate) -> Response:
        return Response()

    @app.delete("/api/v1/auth/sectors/{sector_id}/", status_code=204)
    async def delete_sector(sector_id: int) -> Response:
        return Response()

    return app.openapi()


def planner_document() -> dict[str, Any]:
    app = FastAPI()

    @app.post("/api/v1/planner/clusters/", status_code=201)
    async def create_cluster(data: ClusterCreate) -> Response:
        return Response()

    return app.openapi()


def writer_document() -> dict[str, Any]:
    app = FastAPI()

    @app.post("/api/v1/writer/tasks/", response_model=Task, status_code=201)
    async def create_task(data: Task) -> Response:
        return Response()

    @app.patch("/api/v1/writer/tasks/{row_id}/", response_model=Task)
    async def update_task(row_id: int, data: Task) -> Response:
        return Response()

    @app.post("/api/v1/writer/content/", response_model=Task, status_code=201)
    async def create_content(data: Task) -> Response:
        return Response()

    @app.get("/api/v1/writer/content/{row_id}/", response_model=Task)
    async def get_content(row_id: int) -> Response:
        return Response()

    return app.openapi()


def links(paths: dict[str, Any], path: str, method: str, code: str) -> dict[str, Any]:
    found: dict[str, Any] = paths[path][method]["responses"][code].get("links", {})
    return {link["operationId"]: {k: v for k, v in link.items() if k != "operationId"}
            for link in found.values()}


def test_a_created_row_feeds_the_operations_taking_its_id() -> None:
    paths = merge({"auth": auth_document(), "planner": planner_document(),
                   "writer": writer_document()},
                  RouteTable(), "http://testserver", {}, [])["paths"]
    op_ids = {path: {m: op["operationId"] for m, op in item.items()}
              for path, item in paths.items()}
    site = links(paths, "/api/v1/auth/sites/", "post", "201")
    assert site == {
        op_ids["/api/v1/auth/sites/{site_id}/"]["get"]:
            {"parameters": {"path.site_id": "$response.body#/data/id"}},
        op_ids["/api/v1/auth/sectors/"]["get"]:
            {"parameters": {"query.site_id": "$response.body#/data/id"}},
        op_ids["/api/v1/auth/sectors/"]["post"]:
            {"requestBody": {"site_id": "$response.body#/data/id"}},
        op_ids["/api/v1/planner/clusters/"]["post"]:
            {"requestBody": {"site_id": "$response.body#/data/id"}},
    }
    # A sector passes on its own id and the site it is in.
    sector = links(paths, "/api/v1/auth/sectors/", "post", "201")
    assert sector[op_ids["/api/v1/planner/clusters/"]["post"]] == {"requestBody": {
        "sector_id": "$response.body#/data/id", "site_id": "$response.body#/data/site_id"}}
    assert sector[op_ids["/api/v1/auth/sectors/{sector_id}/"]["delete"]] == {
        "parameters": {"path.sector_id": "$response.body#/data/id"}}
    # A list's first row, where the list says what its rows are.
    listed = links(paths, "/api/v1/auth/sectors/", "get", "200")
    assert listed[op_ids["/api/v1/planner/clusters/"]["post"]] == {"requestBody": {
        "sector_id": "$response.body#/results/0/id",
        "site_id": "$response.body#/results/0/site_id"}}
    # A generic `row_id` is the id of its own collection's rows only.
    task = links(paths, "/api/v1/writer/tasks/", "post", "201")
    assert task == {op_ids["/api/v1/writer/tasks/{row_id}/"]["patch"]:
                    {"parameters": {"path.row_id": "$response.body#/data/id"}}}
    # An answer with no declared row (the cluster's create) links nowhere.
    assert links(paths, "/api/v1/planner/clusters/", "post", "201") == {}
