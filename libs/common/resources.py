"""The five routes of a resource the reference calls "standard CRUD", declared once:

    resource_routes(router, "/tasks/", name="task", reader=Tasks, editor=TasksEditor,
                    out=s.TaskOut, create=s.TaskCreate, update=s.TaskWrite,
                    query=s.TaskQuery)

gives `GET /tasks/` (a page of `out`, the query's filters, ordering and paging), `POST
/tasks/` (201), `GET`, `PUT`/`PATCH` (both partial: a GET answer edited and sent back)
and `DELETE` (204) on `/tasks/{id}/`. `reader` and `editor` are a service's typed
dependencies (`Annotated[Service, Depends(...)]`: reads for every role, writes for
editors, say); the service answers `page(query)`, `create(values)`, `get(id)`,
`update(id, changes)` and `delete([id], single=True)`, a 404 for another tenant's id.

Register a resource's own literal routes (`/tasks/bulk_delete/`) before these: a path
parameter would otherwise take their name for an id.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations,
# which name the caller's dependencies and models held in this module's closures.

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from libs.common.ids import Id
from libs.common.pagination import page_response
from libs.common.problems import Responses

PAGE_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"description": "A page of results"}}


def resource_routes(router: APIRouter, path: str, *, name: str, reader: Any, editor: Any,
                    out: type[BaseModel], create: Any, update: Any, query: Any,
                    create_answers: Responses | None = None,
                    update_answers: Responses | None = None) -> None:
    """`create_answers`/`update_answers`: what the create and the update answer beyond
    the statuses every operation has (`answers(Conflict)` where a duplicate is a 409)."""
    detail = f"{path}{{row_id}}/"

    async def list_rows(request: Request, svc: reader, q: query) -> Response:
        page = await svc.page(q)
        return page_response(request, q.page, page.count, page.rows, shape=out)

    async def create_row(body: create, svc: editor) -> Any:
        return await svc.create(body.model_dump(exclude_unset=True))

    async def get_row(row_id: Id, svc: reader) -> Any:
        return await svc.get(row_id)

    async def update_row(row_id: Id, body: update, svc: editor) -> Any:
        return await svc.update(row_id, body.model_dump(exclude_unset=True))

    async def delete_row(row_id: Id, svc: editor) -> Response:
        await svc.delete([row_id], single=True)
        return Response(status_code=204)

    plural = name if name.endswith("s") or name == "content" else f"{name}s"
    router.add_api_route(path, list_rows, methods=["GET"], name=f"list_{plural}",
                         response_model=list[out], responses=PAGE_RESPONSES)  # type: ignore[valid-type]
    router.add_api_route(path, create_row, methods=["POST"], name=f"create_{name}",
                         status_code=201, response_model=out, responses=create_answers)
    router.add_api_route(detail, get_row, methods=["GET"], name=f"get_{name}",
                         response_model=out)
    router.add_api_route(detail, update_row, methods=["PUT"], name=f"replace_{name}",
                         response_model=out, responses=update_answers)
    router.add_api_route(detail, update_row, methods=["PATCH"], name=f"update_{name}",
                         response_model=out, responses=update_answers)
    router.add_api_route(detail, delete_row, methods=["DELETE"], name=f"delete_{name}",
                         status_code=204)
