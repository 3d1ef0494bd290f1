"""Planner's HTTP API: `/api/v1/planner/keywords|clusters|ideas/` as the reference lists.

Endpoints parse, call a service (`service.py`) obtained through a typed dependency, and
answer; the unit of work commits. Reads are open to every authenticated role; writes need
an editor or above. Lists answer inline pages (the gateway splices them into the
envelope); bulk actions answer `data` + `message`.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from starlette.responses import Response, StreamingResponse

from libs.common.ai_jobs import QueuedJob
from libs.common.ids import Id
from libs.common.pagination import message_response, page_response
from libs.common.problems import DUPLICATE_ANSWER, PaymentRequired, ValidationFailed, answers
from libs.common.repository import Ordering
from libs.common.security import Principal
from libs.common.tenancy import (
    CurrentPrincipal,
    get_principal,
    request_unit_of_work,
    require_role,
    service_dependency,
)
from libs.common.uow import UnitOfWork
from services.planner import schemas as s
from services.planner.service import (
    ClusterService,
    IdeaService,
    KeywordService,
    PlannerService,
)

router = APIRouter(prefix="/api/v1/planner", tags=["planner"])
# A job's credit hold. A duplicate is the same text (case-insensitive) or name in the sector
# (ADR 0012).
CHARGED = answers(PaymentRequired)

PAGE_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"description": "A page of results"}}

S = TypeVar("S", bound=PlannerService)


def _service(kind: type[S], request: Request, uow: UnitOfWork, principal: Principal) -> S:
    state = request.app.state
    return kind(uow, principal, state.settings, state.auth_client, state.ai_jobs)


def _provider(kind: type[S], who: Callable[..., Coroutine[Any, Any, Principal]]
              ) -> Callable[..., Coroutine[Any, Any, S]]:
    return service_dependency(functools.partial(_service, kind), who)


_editor = require_role("editor")
Keywords = Annotated[KeywordService, Depends(_provider(KeywordService, get_principal))]
KeywordsEditor = Annotated[KeywordService, Depends(_provider(KeywordService, _editor))]
Clusters = Annotated[ClusterService, Depends(_provider(ClusterService, get_principal))]
ClustersEditor = Annotated[ClusterService, Depends(_provider(ClusterService, _editor))]
Ideas = Annotated[IdeaService, Depends(_provider(IdeaService, get_principal))]
IdeasEditor = Annotated[IdeaService, Depends(_provider(IdeaService, _editor))]


def _queued(job: QueuedJob) -> dict[str, str]:
    """The relay sends the job once the unit of work commits; the credits go back if it
    does not."""
    return {"task_id": str(job.task_id)}


def _deleted(count: int, what: str) -> Response:
    return message_response({"deleted_count": count}, f"{count} {what} deleted")


# --- keywords ------------------------------------------------------------------------

@router.get("/keywords/", responses=PAGE_RESPONSES)
async def list_keywords(request: Request, keywords: Keywords, query: s.KeywordQuery) -> Response:
    page = await keywords.page(query)
    return page_response(request, query.page, page.count, page.rows, shape=s.KeywordOut)


@router.post("/keywords/", status_code=201, response_model=s.KeywordOut, responses=DUPLICATE_ANSWER)
async def create_keyword(body: s.KeywordCreate, keywords: KeywordsEditor) -> dict[str, Any]:
    return await keywords.create(body.model_dump())


@router.get("/keywords/export/", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}})
async def export_keywords(
    request: Request, principal: CurrentPrincipal,
    filters: Annotated[s.KeywordFilters, Depends(s.KeywordFilters.from_query)],
    ordering: Annotated[Ordering, Depends(s.KEYWORD_ORDERING.dependency)],
) -> Response:
    """Every keyword the filters select, as CSV, streamed from a server-side cursor (in a
    unit of work of its own: the body outlives the request's)."""

    async def stream() -> AsyncIterator[bytes]:
        async with request_unit_of_work(request, principal.scope) as uow:
            keywords = _service(KeywordService, request, uow, principal)
            async for chunk in keywords.export_csv(filters, ordering):
                yield chunk

    return StreamingResponse(stream(), media_type="text/csv", headers={
        "Content-Disposition": 'attachment; filename="keywords.csv"'})


@router.post("/keywords/import_keywords/", response_model=s.ImportResult)
async def import_keywords(
    request: Request, keywords: KeywordsEditor, file: Annotated[UploadFile, File()],
    site_id: Annotated[Id | None, Form()] = None,
    sector_id: Annotated[Id | None, Form()] = None,
    site_id_query: Annotated[Id | None, Query(alias="site_id")] = None,
    sector_id_query: Annotated[Id | None, Query(alias="sector_id")] = None,
) -> dict[str, Any]:
    """CSV with a header: `keyword` (required), `volume`, `difficulty`, `intent`, `status`.
    Valid rows land; the others come back with their line numbers and reasons; texts the
    sector already holds are skipped, so importing the same file twice changes nothing.
    `site_id`/`sector_id` as form fields or query parameters."""
    site = _required("site_id", site_id or site_id_query)
    sector = _required("sector_id", sector_id or sector_id_query)
    limit = keywords.settings.import_max_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ValidationFailed.field("file", "The file is too large.")
    return (await keywords.import_csv(data, site, sector)).as_dict()


def _required(name: str, value: int | None) -> int:
    if value is None:
        raise ValidationFailed.field(name, "This field is required.")
    return value


@router.post("/keywords/bulk_delete/")
async def bulk_delete_keywords(body: s.Ids, keywords: KeywordsEditor) -> Response:
    return _deleted(await keywords.delete(body.ids), "keywords")


@router.post("/keywords/bulk_update_status/")
async def bulk_update_status(body: s.BulkStatus, keywords: KeywordsEditor) -> Response:
    updated = await keywords.set_status(body.ids, body.status)
    return message_response({"updated_count": updated}, f"{updated} keywords updated")


@router.post("/keywords/bulk_update/")
async def bulk_update(body: s.BulkStatus, keywords: KeywordsEditor) -> Response:
    """Alias of `bulk_update_status`."""
    return await bulk_update_status(body, keywords)


@router.post("/keywords/bulk_add_from_seed/")
async def bulk_add_from_seed(body: s.BulkFromSeed, keywords: KeywordsEditor) -> Response:
    result = await keywords.add_from_seed(body.seed_keyword_ids, body.site_id, body.sector_id)
    return message_response(result, f"{result['created']} keywords added, "
                                    f"{result['skipped']} already present")


@router.post("/keywords/auto_cluster/", response_model=s.TaskQueued, responses=CHARGED)
async def auto_cluster(body: s.AutoCluster, keywords: KeywordsEditor) -> dict[str, str]:
    return _queued(await keywords.request_auto_cluster(body.ids, body.sector_id,
                                                       body.anchors()))


@router.get("/keywords/{keyword_id}/", response_model=s.KeywordOut)
async def get_keyword(keyword_id: Id, keywords: Keywords) -> dict[str, Any]:
    return await keywords.get(keyword_id)


@router.put("/keywords/{keyword_id}/", response_model=s.KeywordOut, responses=DUPLICATE_ANSWER)
@router.patch("/keywords/{keyword_id}/", response_model=s.KeywordOut, responses=DUPLICATE_ANSWER)
async def update_keyword(keyword_id: Id, body: s.KeywordUpdate,
                         keywords: KeywordsEditor) -> dict[str, Any]:
    return await keywords.update(keyword_id, body.model_dump(exclude_unset=True))


@router.delete("/keywords/{keyword_id}/", status_code=204)
async def delete_keyword(keyword_id: Id, keywords: KeywordsEditor) -> Response:
    await keywords.delete([keyword_id], single=True)
    return Response(status_code=204)


# --- clusters ------------------------------------------------------------------------

@router.get("/clusters/", responses=PAGE_RESPONSES)
async def list_clusters(request: Request, clusters: Clusters, query: s.ClusterQuery) -> Response:
    page = await clusters.page(query)
    return page_response(request, query.page, page.count, page.rows, shape=s.ClusterOut)


@router.post("/clusters/", status_code=201, response_model=s.ClusterOut, responses=DUPLICATE_ANSWER)
async def create_cluster(body: s.ClusterCreate, clusters: ClustersEditor) -> dict[str, Any]:
    return await clusters.create(body.model_dump())


@router.post("/clusters/bulk_delete/")
async def bulk_delete_clusters(body: s.Ids, clusters: ClustersEditor) -> Response:
    return _deleted(await clusters.delete(body.ids), "clusters")


@router.post("/clusters/auto_generate_ideas/", response_model=s.TaskQueued,
             responses=CHARGED)
async def auto_generate_ideas(body: s.AutoGenerateIdeas,
                              clusters: ClustersEditor) -> dict[str, str]:
    return _queued(await clusters.request_ideas(body.ids))


@router.get("/clusters/{cluster_id}/", response_model=s.ClusterOut)
async def get_cluster(cluster_id: Id, clusters: Clusters) -> dict[str, Any]:
    return await clusters.get(cluster_id)


@router.put("/clusters/{cluster_id}/", response_model=s.ClusterOut, responses=DUPLICATE_ANSWER)
@router.patch("/clusters/{cluster_id}/", response_model=s.ClusterOut, responses=DUPLICATE_ANSWER)
async def update_cluster(cluster_id: Id, body: s.ClusterUpdate,
                         clusters: ClustersEditor) -> dict[str, Any]:
    return await clusters.update(cluster_id, body.model_dump(exclude_unset=True))


@router.delete("/clusters/{cluster_id}/", status_code=204)
async def delete_cluster(cluster_id: Id, clusters: ClustersEditor) -> Response:
    await clusters.delete([cluster_id], single=True)
    return Response(status_code=204)


# --- ideas ---------------------------------------------------------------------------

@router.get("/ideas/", responses=PAGE_RESPONSES)
async def list_ideas(request: Request, ideas: Ideas, query: s.IdeaQuery) -> Response:
    page = await ideas.page(query)
    return page_response(request, query.page, page.count, page.rows, shape=s.IdeaOut)


@router.post("/ideas/", status_code=201, response_model=s.IdeaOut)
async def create_idea(body: s.IdeaCreate, ideas: IdeasEditor) -> dict[str, Any]:
    return await ideas.create(body.model_dump())


@router.post("/ideas/bulk_delete/")
async def bulk_delete_ideas(body: s.Ids, ideas: IdeasEditor) -> Response:
    return _deleted(await ideas.delete(body.ids), "ideas")


@router.post("/ideas/bulk_queue_to_writer/")
async def bulk_queue_to_writer(body: s.Ids, ideas: IdeasEditor) -> Response:
    queued = await ideas.queue_to_writer(body.ids)
    return message_response({"queued_count": len(queued), "ids": [r["id"] for r in queued]},
                            f"{len(queued)} ideas queued to the writer")


@router.get("/ideas/{idea_id}/", response_model=s.IdeaOut)
async def get_idea(idea_id: Id, ideas: Ideas) -> dict[str, Any]:
    return await ideas.get(idea_id)


@router.put("/ideas/{idea_id}/", response_model=s.IdeaOut)
@router.patch("/ideas/{idea_id}/", response_model=s.IdeaOut)
async def update_idea(idea_id: Id, body: s.IdeaUpdate, ideas: IdeasEditor) -> dict[str, Any]:
    return await ideas.update(idea_id, body.model_dump(exclude_unset=True))


@router.delete("/ideas/{idea_id}/", status_code=204)
async def delete_idea(idea_id: Id, ideas: IdeasEditor) -> Response:
    await ideas.delete([idea_id], single=True)
    return Response(status_code=204)

