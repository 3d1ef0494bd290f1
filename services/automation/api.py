"""`/api/v1/automation/`, as the reference lists it: the site by `site_id` and the run by
`run_id` as query parameters. Endpoints call `AutomationService`, never a repository.
Reads are open to every authenticated role; changes need an editor or above."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from libs.common.ids import Id
from libs.common.problems import Conflict, PaymentRequired, answers
from libs.common.security import Principal
from libs.common.tenancy import get_principal, require_role, service_dependency
from libs.common.uow import UnitOfWork
from services.automation import schemas as s
from services.automation.service import AutomationService

router = APIRouter(prefix="/api/v1/automation", tags=["automation"])
ROUTERS = (router,)


def _build(request: Request, uow: UnitOfWork, principal: Principal) -> AutomationService:
    return AutomationService(uow, principal, request.app.state.clients)


Automation = Annotated[AutomationService, Depends(service_dependency(_build, get_principal))]
AutomationEditor = Annotated[AutomationService,
                             Depends(service_dependency(_build, require_role("editor")))]
# Required (the document said optional and the API answered 400 "This field is required.").
SiteId = Annotated[Id, Query(description="The site")]
RunId = Annotated[str, Query(max_length=64, description="The run")]
# A run whose status does not allow the action.
NOT_NOW = answers(Conflict, description="Not in this status")


@router.get("/config/", response_model=s.ConfigOut)
async def config(svc: Automation, site_id: SiteId) -> s.ConfigOut:
    return await svc.config(site_id)


@router.put("/update_config/", response_model=s.ConfigOut)
@router.patch("/update_config/", response_model=s.ConfigOut)
async def update_config(body: s.ConfigUpdate, svc: AutomationEditor,
                        site_id: SiteId) -> s.ConfigOut:
    return await svc.update_config(site_id, body)


@router.post("/run_now/", response_model=s.RunStarted, responses={
    **answers(PaymentRequired), **answers(Conflict, description="A run is active")})
async def run_now(svc: AutomationEditor, site_id: SiteId) -> s.RunStarted:
    """Start a run (402 with the estimate unless the balance is at least 1.2 x it; 409
    when the site has an active run)."""
    return await svc.run_now(site_id)


@router.get("/current_run/", response_model=s.RunOut | None)
async def current_run(svc: Automation, site_id: SiteId) -> s.RunOut | None:
    return await svc.current_run(site_id)


@router.get("/history/", response_model=list[s.RunOut])
async def history(svc: Automation, site_id: SiteId) -> list[s.RunOut]:
    """The site's last 20 runs, newest first."""
    return await svc.history(site_id)


@router.get("/logs/", response_model=s.LogsOut)
async def logs(svc: Automation, run_id: RunId,
               lines: Annotated[int, Query(ge=1, le=1000)] = 100) -> s.LogsOut:
    return await svc.logs(run_id, lines)


@router.get("/estimate/", response_model=s.EstimateOut)
async def estimate(svc: Automation, site_id: SiteId) -> s.EstimateOut:
    return await svc.estimate(site_id)


@router.get("/pipeline_overview/", response_model=s.PipelineOverview)
async def pipeline_overview(svc: Automation, site_id: SiteId) -> s.PipelineOverview:
    return await svc.pipeline_overview(site_id)


@router.get("/current_processing/", response_model=s.CurrentProcessing | None)
async def current_processing(svc: Automation,
                             site_id: SiteId) -> s.CurrentProcessing | None:
    return await svc.current_processing(site_id)


@router.post("/pause/", response_model=s.RunOut, responses=NOT_NOW)
async def pause(svc: AutomationEditor, run_id: RunId) -> Any:
    return await svc.pause(run_id)


@router.post("/resume/", response_model=s.RunOut, responses=NOT_NOW)
async def resume(svc: AutomationEditor, run_id: RunId) -> Any:
    return await svc.resume(run_id)


@router.post("/cancel/", response_model=s.RunOut, responses=NOT_NOW)
async def cancel(svc: AutomationEditor, run_id: RunId) -> Any:
    return await svc.cancel(run_id)
