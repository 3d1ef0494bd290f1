"""The shared catalogue: plans, industries and the seed keyword library."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, Request, UploadFile
from starlette.responses import Response

from libs.common.ids import Id
from libs.common.pagination import message_response, page_response
from libs.common.tenancy import PublicUoW, UoW
from services.auth import schemas as s
from services.auth.deps import Actor, Page, Staff
from services.auth.service import catalogue as service

auth = APIRouter(prefix="/api/v1/auth", tags=["auth"])
ROUTERS = (auth,)


# --- plans ----------------------------------------------------------------------------------


@auth.get("/plans/")
async def list_plans(request: Request, uow: PublicUoW, params: Page) -> Response:
    count, plans = await service.list_plans(uow, params)
    return page_response(request, params, count, plans)


@auth.get("/plans/{plan_id:int}/")
async def get_plan(plan_id: Id, uow: PublicUoW) -> s.PlanPublic:
    return s.PlanPublic.model_validate(await service.get_plan(uow, plan_id))


@auth.post("/plans/", status_code=201)
async def create_plan(data: s.PlanCreate, actor: Staff, uow: UoW) -> s.PlanPublic:
    plan = await service.create_plan(uow, actor, data)
    await uow.commit()
    return s.PlanPublic.model_validate(plan)


@auth.api_route("/plans/{plan_id:int}/", methods=["PUT", "PATCH"])
async def update_plan(plan_id: Id, data: s.PlanUpdate, actor: Staff, uow: UoW) -> s.PlanPublic:
    plan = await service.update_plan(uow, actor, plan_id, data)
    await uow.commit()
    return s.PlanPublic.model_validate(plan)


# --- industries and seed keywords -----------------------------------------------------------


@auth.get("/industries/")
async def list_industries(request: Request, uow: PublicUoW, params: Page) -> Response:
    count, industries = await service.list_industries(uow, params)
    return page_response(request, params, count, industries)


@auth.get("/industries/{industry_id:int}/")
async def get_industry(industry_id: Id, uow: PublicUoW) -> s.IndustryPublic:
    return await service.get_industry(uow, industry_id)


@auth.get("/seed-keywords/")
async def list_seed_keywords(
    request: Request,
    actor: Actor,
    uow: UoW,
    params: Page,
    industry: Annotated[str | None, Query(description="Industry id or slug.")] = None,
    sector: Annotated[str | None, Query(description="Industry sector id or slug.")] = None,
    intent: s.Intent | None = None,
    country: Annotated[str | None, Query(min_length=2, max_length=2)] = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
    ordering: Annotated[str | None, Query(pattern=r"^-?(keyword|volume|difficulty)$")] = None,
) -> Response:
    count, keywords = await service.list_seed_keywords(
        uow,
        params,
        industry=industry,
        sector=sector,
        intent=intent,
        country=country,
        search=search,
        ordering=ordering,
    )
    return page_response(request, params, count, keywords)


@auth.get("/seed-keywords/{keyword_id:int}/")
async def get_seed_keyword(keyword_id: Id, actor: Actor, uow: UoW) -> s.SeedKeywordPublic:
    return await service.get_seed_keyword(uow, keyword_id)


@auth.post("/seed-keywords/import_seed_keywords/")
async def import_seed_keywords(
    actor: Staff, uow: UoW, file: Annotated[UploadFile, File()]
) -> Response:
    rows = service.parse_seed_keyword_csv(await file.read())
    report = await service.import_seed_keywords(uow, rows)
    await uow.commit()
    return message_response(report, f"Imported {report.created + report.updated} seed keywords")
