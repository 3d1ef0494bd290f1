"""Planner's HTTP API: `/api/v1/planner/keywords|clusters|ideas/` as the reference lists.

Endpoints parse, call the domain (`service.Planner`) and answer; the unit of work commits.
Reads are open to every authenticated role; writes need an editor or above. Lists answer
inline pages (the gateway splices them into the envelope); bulk actions answer `data` +
`message`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from starlette.responses import Response, StreamingResponse

from libs.common.ai_jobs import QueuedJob
from libs.common.pagination import PageParams, message_response, page_params, page_response
from libs.common.problems import ValidationFailed
from libs.common.security import Principal
from libs.common.tenancy import CurrentPrincipal, Editor, UnitOfWork, UoW, request_session
from services.planner import repository as repo
from services.planner import schemas as s
from services.planner.service import (
    CLUSTER_ORDERING,
    IDEA_ORDERING,
    KEYWORD_ORDERING,
    Planner,
    keyword_filters,
    parse_ordering,
)
from services.planner.settings import PlannerSettings

router = APIRouter(prefix="/api/v1/planner", tags=["planner"])

PAGE_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"description": "A page of results"}}


def _planner(request: Request, uow: UnitOfWork, principal: Principal) -> Planner:
    state = request.app.state
    settings: PlannerSettings = state.settings
    return Planner(uow, principal, settings, state.auth_client, state.ai_jobs)


async def reader(request: Request, uow: UoW, principal: CurrentPrincipal) -> Planner:
    return _planner(request, uow, principal)


async def writer(request: Request, uow: UoW, principal: Editor) -> Planner:
    return _planner(request, uow, principal)


Reader = Annotated[Planner, Depends(reader)]
Writer = Annotated[Planner, Depends(writer)]
Page = Annotated[PageParams, Depends(page_params)]


def _keyword_filters(
    status: str | None = None,
    cluster_id: int | None = None,
    seed_keyword__intent: str | None = Query(None, description="Filter by intent"),
    seed_keyword_id: int | None = None,
    difficulty_min: int | None = None,
    difficulty_max: int | None = None,
    volume_min: int | None = None,
    volume_max: int | None = None,
    site_id: int | None = None,
    sector_id: int | None = None,
    search: str | None = Query(None, description="Search by keyword text"),
) -> repo.KeywordFilters:
    return keyword_filters(
        status=status, cluster_id=cluster_id, intent=seed_keyword__intent,
        seed_keyword_id=seed_keyword_id, difficulty_min=difficulty_min,
        difficulty_max=difficulty_max, volume_min=volume_min, volume_max=volume_max,
        site_id=site_id, sector_id=sector_id, search=search)


KeywordFilterDep = Annotated[repo.KeywordFilters, Depends(_keyword_filters)]
OrderingParam = Annotated[str | None, Query(
    description="Comma-separated fields; prefix '-' for descending. Default -created_at.")]


def _queued(job: QueuedJob) -> dict[str, str]:
    """The relay sends the job once the unit of work commits; the credits go back if it
    does not."""
    return {"task_id": str(job.task_id)}


# --- keywords ------------------------------------------------------------------------

@router.get("/keywords/", responses=PAGE_RESPONSES)
async def list_keywords(request: Request, planner: Reader, page: Page,
                        filters: KeywordFilterDep, ordering: OrderingParam = None) -> Response:
    order = parse_ordering(ordering, KEYWORD_ORDERING)
    total, rows = await planner.list_keywords(filters, order, page.offset, page.limit)
    return page_response(request, page, total, rows)


@router.post("/keywords/", status_code=201, response_model=s.KeywordOut)
async def create_keyword(body: s.KeywordCreate, planner: Writer) -> dict[str, Any]:
    row = await planner.create_keyword(body.model_dump())
    return row


@router.get("/keywords/export/", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}})
async def export_keywords(request: Request, principal: CurrentPrincipal,
                          filters: KeywordFilterDep, ordering: OrderingParam = None) -> Response:
    """Every keyword the filters select, as CSV, streamed from a server-side cursor."""
    order = parse_ordering(ordering, KEYWORD_ORDERING)
    settings: PlannerSettings = request.app.state.settings
    columns = ["id", "keyword", "volume", "difficulty", "intent", "status", "cluster_id",
               "cluster_name", "seed_keyword_id", "site_id", "sector_id", "created_at"]

    async def stream() -> AsyncIterator[bytes]:
        async with request_session(request, principal.scope) as session:
            planner = Planner(UnitOfWork(session), principal, settings,
                              request.app.state.auth_client, request.app.state.ai_jobs)
            vis = await planner.visibility()
            buffer = io.StringIO()
            out = csv.writer(buffer, lineterminator="\n")
            out.writerow(columns)
            async for batch in repo.export_keywords(session, vis, filters, order,
                                                    settings.export_batch_rows):
                for row in batch:
                    out.writerow([row[c] if c != "created_at" else row[c].isoformat()
                                  for c in columns])
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
            if buffer.tell():
                yield buffer.getvalue().encode()

    return StreamingResponse(stream(), media_type="text/csv", headers={
        "Content-Disposition": 'attachment; filename="keywords.csv"'})


@router.post("/keywords/import_keywords/", response_model=s.ImportResult)
async def import_keywords(
    request: Request, planner: Writer, file: Annotated[UploadFile, File()],
    site_id: Annotated[int | None, Form()] = None,
    sector_id: Annotated[int | None, Form()] = None,
) -> dict[str, Any]:
    """CSV with a header: `keyword` (required), `volume`, `difficulty`, `intent`, `status`.
    Valid rows land; the others come back with their line numbers and reasons; texts the
    sector already holds are skipped, so importing the same file twice changes nothing."""
    site = site_id if site_id is not None else _int_query(request, "site_id")
    sector = sector_id if sector_id is not None else _int_query(request, "sector_id")
    data = await file.read(planner.settings.import_max_bytes + 1)
    if len(data) > planner.settings.import_max_bytes:
        raise ValidationFailed.field("file", "The file is too large.")
    report = await planner.import_keywords(data, site, sector)
    return report.as_dict()


def _int_query(request: Request, name: str) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        raise ValidationFailed.field(name, "This field is required.")
    try:
        return int(raw)
    except ValueError as exc:
        raise ValidationFailed.field(name, "A valid integer is required.") from exc


@router.post("/keywords/bulk_delete/")
async def bulk_delete_keywords(body: s.Ids, planner: Writer) -> Response:
    deleted = await planner.delete_keywords(body.ids)
    return message_response({"deleted_count": deleted}, f"{deleted} keywords deleted")


@router.post("/keywords/bulk_update_status/")
async def bulk_update_status(body: s.BulkStatus, planner: Writer) -> Response:
    updated = await planner.bulk_update_status(body.ids, body.status)
    return message_response({"updated_count": updated}, f"{updated} keywords updated")


@router.post("/keywords/bulk_update/")
async def bulk_update(body: s.BulkStatus, planner: Writer) -> Response:
    """Alias of `bulk_update_status`."""
    return await bulk_update_status(body, planner)


@router.post("/keywords/bulk_add_from_seed/")
async def bulk_add_from_seed(body: s.BulkFromSeed, planner: Writer) -> Response:
    result = await planner.add_from_seed(body.seed_keyword_ids, body.site_id, body.sector_id)
    return message_response(result, f"{result['created']} keywords added, "
                                    f"{result['skipped']} already present")


@router.post("/keywords/auto_cluster/", response_model=s.TaskQueued)
async def auto_cluster(request: Request, body: s.AutoCluster, planner: Writer) -> dict[str, str]:
    job = await planner.request_auto_cluster(body.ids, body.sector_id)
    return _queued(job)


@router.get("/keywords/{keyword_id}/", response_model=s.KeywordOut)
async def get_keyword(keyword_id: int, planner: Reader) -> dict[str, Any]:
    return await planner.get_keyword(keyword_id)


@router.put("/keywords/{keyword_id}/", response_model=s.KeywordOut)
@router.patch("/keywords/{keyword_id}/", response_model=s.KeywordOut)
async def update_keyword(keyword_id: int, body: s.KeywordUpdate, planner: Writer) -> dict[str, Any]:
    row = await planner.update_keyword(keyword_id, body.model_dump(exclude_unset=True))
    return row


@router.delete("/keywords/{keyword_id}/", status_code=204)
async def delete_keyword(keyword_id: int, planner: Writer) -> Response:
    await planner.delete_keywords([keyword_id], single=True)
    return Response(status_code=204)


# --- clusters ------------------------------------------------------------------------

@router.get("/clusters/", responses=PAGE_RESPONSES)
async def list_clusters(
    request: Request, planner: Reader, page: Page, status: str | None = None,
    site_id: int | None = None, sector_id: int | None = None,
    search: str | None = Query(None, description="Search by cluster name"),
    ordering: OrderingParam = None,
) -> Response:
    filters = repo.SimpleFilters(
        equals={"status": status, "site_id": site_id, "sector_id": sector_id},
        search=(search or "").strip() or None, search_column="name")
    total, rows = await planner.list_rows("cluster", filters,
                                          parse_ordering(ordering, CLUSTER_ORDERING),
                                          page.offset, page.limit)
    return page_response(request, page, total, rows)


@router.post("/clusters/", status_code=201, response_model=s.ClusterOut)
async def create_cluster(body: s.ClusterCreate, planner: Writer) -> dict[str, Any]:
    row = await planner.create_cluster(body.model_dump())
    return row


@router.post("/clusters/bulk_delete/")
async def bulk_delete_clusters(body: s.Ids, planner: Writer) -> Response:
    deleted = await planner.delete_clusters(body.ids)
    return message_response({"deleted_count": deleted}, f"{deleted} clusters deleted")


@router.post("/clusters/auto_generate_ideas/", response_model=s.TaskQueued)
async def auto_generate_ideas(request: Request, body: s.AutoGenerateIdeas,
                              planner: Writer) -> dict[str, str]:
    job = await planner.request_ideas(body.ids)
    return _queued(job)


@router.get("/clusters/{cluster_id}/", response_model=s.ClusterOut)
async def get_cluster(cluster_id: int, planner: Reader) -> dict[str, Any]:
    return await planner.get_cluster(cluster_id)


@router.put("/clusters/{cluster_id}/", response_model=s.ClusterOut)
@router.patch("/clusters/{cluster_id}/", response_model=s.ClusterOut)
async def update_cluster(cluster_id: int, body: s.ClusterUpdate, planner: Writer) -> dict[str, Any]:
    row = await planner.update_cluster(cluster_id, body.model_dump(exclude_unset=True))
    return row


@router.delete("/clusters/{cluster_id}/", status_code=204)
async def delete_cluster(cluster_id: int, planner: Writer) -> Response:
    await planner.delete_clusters([cluster_id], single=True)
    return Response(status_code=204)


# --- ideas ---------------------------------------------------------------------------

@router.get("/ideas/", responses=PAGE_RESPONSES)
async def list_ideas(
    request: Request, planner: Reader, page: Page, status: str | None = None,
    cluster_id: int | None = None, content_type: str | None = None,
    site_id: int | None = None, sector_id: int | None = None,
    search: str | None = Query(None, description="Search by idea title"),
    ordering: OrderingParam = None,
) -> Response:
    filters = repo.SimpleFilters(
        equals={"status": status, "cluster_id": cluster_id, "content_type": content_type,
                "site_id": site_id, "sector_id": sector_id},
        search=(search or "").strip() or None, search_column="idea_title")
    total, rows = await planner.list_rows("idea", filters,
                                          parse_ordering(ordering, IDEA_ORDERING),
                                          page.offset, page.limit)
    return page_response(request, page, total, rows)


@router.post("/ideas/", status_code=201, response_model=s.IdeaOut)
async def create_idea(body: s.IdeaCreate, planner: Writer) -> dict[str, Any]:
    row = await planner.create_idea(body.model_dump())
    return row


@router.post("/ideas/bulk_delete/")
async def bulk_delete_ideas(body: s.Ids, planner: Writer) -> Response:
    deleted = await planner.delete_ideas(body.ids)
    return message_response({"deleted_count": deleted}, f"{deleted} ideas deleted")


@router.post("/ideas/bulk_queue_to_writer/")
async def bulk_queue_to_writer(body: s.Ids, planner: Writer) -> Response:
    queued = await planner.queue_to_writer(body.ids)
    return message_response({"queued_count": len(queued), "ids": [r["id"] for r in queued]},
                            f"{len(queued)} ideas queued to the writer")


@router.get("/ideas/{idea_id}/", response_model=s.IdeaOut)
async def get_idea(idea_id: int, planner: Reader) -> dict[str, Any]:
    return await planner.get_idea(idea_id)


@router.put("/ideas/{idea_id}/", response_model=s.IdeaOut)
@router.patch("/ideas/{idea_id}/", response_model=s.IdeaOut)
async def update_idea(idea_id: int, body: s.IdeaUpdate, planner: Writer) -> dict[str, Any]:
    row = await planner.update_idea(idea_id, body.model_dump(exclude_unset=True))
    return row


@router.delete("/ideas/{idea_id}/", status_code=204)
async def delete_idea(idea_id: int, planner: Writer) -> Response:
    await planner.delete_ideas([idea_id], single=True)
    return Response(status_code=204)
