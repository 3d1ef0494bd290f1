"""The shared catalogue: plans, industries and the seed keyword library."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Request, UploadFile
from starlette.responses import Response

from libs.common.ids import Id
from libs.common.pagination import message_response, page_response
from libs.common.tenancy import PublicUoW, UoW
from services.auth import schemas as s
from services.auth.deps import Actor, Staff
from services.auth.service import catalogue as service

auth = APIRouter(prefix="/api/v1/auth", tags=["auth"])
ROUTERS = (auth,)


# --- plans ----------------------------------------------------------------------------------


@auth.get("/plans/")
async def list_plans(request: Request, uow: PublicUoW, query: s.PlanQuery) -> Response:
    page = await service.list_plans(uow, query)
    return page_response(request, query.page, page.count, page.rows)


@auth.get("/plans/{plan_id:int}/")
async def get_plan(plan_id: Id, uow: PublicUoW) -> s.PlanPublic:
    return s.PlanPublic.model_validate(await service.get_plan(uow, plan_id))


@auth.post("/plans/", status_code=201)
async def create_plan(data: s.PlanCreate, actor: Staff, uow: UoW) -> s.PlanPublic:
    plan = await service.create_plan(uow, actor, data)
    return s.PlanPublic.model_validate(plan)


@auth.put("/plans/{plan_id:int}/")
@auth.patch("/plans/{plan_id:int}/")
async def update_plan(plan_id: Id, data: s.PlanUpdate, actor: Staff, uow: UoW) -> s.PlanPublic:
    plan = await service.update_plan(uow, actor, plan_id, data)
    return s.PlanPublic.model_validate(plan)


# --- industries and seed keywords -----------------------------------------------------------


@auth.get("/industries/")
async def list_industries(request: Request, uow: PublicUoW, query: s.IndustryQuery) -> Response:
    page = await service.list_industries(uow, query)
    return page_response(request, query.page, page.count, page.rows)


@auth.get("/industries/{industry_id:int}/")
async def get_industry(industry_id: Id, uow: PublicUoW) -> s.IndustryPublic:
    return await service.get_industry(uow, industry_id)


@auth.get("/seed-keywords/")
async def list_seed_keywords(
    request: Request, actor: Actor, uow: UoW, query: s.SeedKeywordQuery
) -> Response:
    page = await service.list_seed_keywords(uow, query)
    return page_response(request, query.page, page.count, page.rows)


@auth.get("/seed-keywords/{keyword_id:int}/")
async def get_seed_keyword(keyword_id: Id, actor: Actor, uow: UoW) -> s.SeedKeywordPublic:
    return await service.get_seed_keyword(uow, keyword_id)


@auth.post("/seed-keywords/import_seed_keywords/")
async def import_seed_keywords(
    actor: Staff, uow: UoW, file: Annotated[UploadFile, File()]
) -> Response:
    rows = service.parse_seed_keyword_csv(await file.read())
    report = await service.import_seed_keywords(uow, rows)
    return message_response(report, f"Imported {report.created + report.updated} seed keywords")
