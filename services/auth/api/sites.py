"""Tenancy, where: sites (and their WordPress API key), sectors, site access, groups."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from libs.common.ids import Id
from libs.common.pagination import message_response, page_response
from libs.common.tenancy import UoW
from services.auth import schemas as s
from services.auth.api.common import NO_CONTENT, json_response
from services.auth.deps import Actor, Admin, Editor, announce_revoked
from services.auth.service import sites as service

auth = APIRouter(prefix="/api/v1/auth", tags=["auth"])
ROUTERS = (auth,)


# --- sites ---------------------------------------------------------------------------------


@auth.get("/sites/")
async def list_sites(request: Request, actor: Actor, uow: UoW, query: s.SiteQuery) -> Response:
    page = await service.list_sites(uow, actor, query)
    return page_response(request, query.page, page.count, page.rows)


@auth.post("/sites/", status_code=201)
async def create_site(data: s.SiteCreate, actor: Editor, uow: UoW) -> s.SitePublic:
    site = await service.create_site(uow, actor, data)
    return (await service.site_public(uow, [site]))[0]


@auth.get("/sites/{site_id:int}/")
async def get_site(site_id: Id, actor: Actor, uow: UoW) -> s.SitePublic:
    return (await service.site_public(uow, [await service.get_site(uow, actor, site_id)]))[0]


@auth.put("/sites/{site_id:int}/")
@auth.patch("/sites/{site_id:int}/")
async def update_site(site_id: Id, data: s.SiteUpdate, actor: Editor, uow: UoW) -> s.SitePublic:
    site = await service.update_site(uow, actor, site_id, data)
    return (await service.site_public(uow, [site]))[0]


@auth.delete("/sites/{site_id:int}/", status_code=NO_CONTENT)
async def delete_site(site_id: Id, request: Request, actor: Editor, uow: UoW) -> Response:
    revoked = await service.delete_site(uow, actor, site_id)
    return Response(status_code=NO_CONTENT, headers=announce_revoked(request, uow, revoked))


@auth.get("/sites/{site_id:int}/sectors/")
async def site_sectors(
    site_id: Id, request: Request, actor: Actor, uow: UoW, query: s.SiteSectorQuery
) -> Response:
    page = await service.list_sectors(uow, actor, query, site_id=site_id)
    return page_response(request, query.page, page.count, page.rows)


@auth.post("/sites/{site_id:int}/set_active/")
async def set_active_site(site_id: Id, actor: Editor, uow: UoW) -> Response:
    site = await service.update_site(uow, actor, site_id, {"is_active": True})
    return message_response((await service.site_public(uow, [site]))[0], "Site activated")


@auth.post("/sites/{site_id:int}/select_sectors/")
async def select_sectors(
    site_id: Id, data: s.SelectSectorsRequest, actor: Editor, uow: UoW
) -> Response:
    sectors = await service.select_sectors(uow, actor, site_id, data)
    site = await service.get_site(uow, actor, site_id)
    body = {
        "site": (await service.site_public(uow, [site]))[0],
        "sectors": [s.SectorPublic.model_validate(x) for x in sectors],
    }
    return message_response(body, "Sectors selected")


@auth.post("/sites/{site_id:int}/generate_api_key/")
async def generate_api_key(site_id: Id, request: Request, actor: Admin, uow: UoW) -> Response:
    outcome = await service.generate_api_key(uow, actor, site_id)
    return json_response(
        s.SiteApiKey(api_key=outcome.value),
        headers=announce_revoked(request, uow, outcome.revoked),
    )


# --- sectors -------------------------------------------------------------------------------


@auth.get("/sectors/")
async def list_sectors(request: Request, actor: Actor, uow: UoW, query: s.SectorQuery) -> Response:
    page = await service.list_sectors(uow, actor, query)
    return page_response(request, query.page, page.count, page.rows)


@auth.post("/sectors/", status_code=201)
async def create_sector(data: s.SectorCreate, actor: Editor, uow: UoW) -> s.SectorPublic:
    sector = await service.create_sector(uow, actor, data)
    return s.SectorPublic.model_validate(sector)


@auth.get("/sectors/{sector_id:int}/")
async def get_sector(sector_id: Id, actor: Actor, uow: UoW) -> s.SectorPublic:
    return s.SectorPublic.model_validate(await service.get_sector(uow, actor, sector_id))


@auth.put("/sectors/{sector_id:int}/")
@auth.patch("/sectors/{sector_id:int}/")
async def update_sector(
    sector_id: Id, data: s.SectorUpdate, actor: Editor, uow: UoW
) -> s.SectorPublic:
    sector = await service.update_sector(uow, actor, sector_id, data)
    return s.SectorPublic.model_validate(sector)


@auth.delete("/sectors/{sector_id:int}/", status_code=NO_CONTENT)
async def delete_sector(sector_id: Id, actor: Editor, uow: UoW) -> Response:
    await service.delete_sector(uow, actor, sector_id)
    return Response(status_code=NO_CONTENT)


# --- site access and groups ---------------------------------------------------------------------


@auth.get("/site-access/")
async def list_site_access(
    request: Request, actor: Admin, uow: UoW, query: s.SiteAccessQuery
) -> Response:
    page = await service.list_site_access(uow, actor, query)
    return page_response(request, query.page, page.count, page.rows)


@auth.post("/site-access/", status_code=201)
async def grant_site_access(data: s.SiteAccessCreate, actor: Admin, uow: UoW) -> s.SiteAccessPublic:
    row = await service.grant_site_access(uow, actor, data)
    return s.SiteAccessPublic.model_validate(row)


@auth.get("/site-access/{access_id:int}/")
async def get_site_access(access_id: Id, actor: Admin, uow: UoW) -> s.SiteAccessPublic:
    return s.SiteAccessPublic.model_validate(await service.get_site_access(uow, actor, access_id))


@auth.delete("/site-access/{access_id:int}/", status_code=NO_CONTENT)
async def revoke_site_access(access_id: Id, actor: Admin, uow: UoW) -> Response:
    await service.revoke_site_access(uow, actor, access_id)
    return Response(status_code=NO_CONTENT)


@auth.get("/groups/")
async def list_groups(request: Request, actor: Admin, uow: UoW, query: s.GroupQuery) -> Response:
    page = await service.list_groups(uow, actor, query)
    return page_response(request, query.page, page.count, page.rows)


@auth.post("/groups/", status_code=201)
async def create_group(data: s.GroupCreate, actor: Admin, uow: UoW) -> s.GroupPublic:
    group = await service.save_group(uow, actor, data)
    return (await service.group_public(uow, [group]))[0]


@auth.get("/groups/{group_id:int}/")
async def get_group(group_id: Id, actor: Admin, uow: UoW) -> s.GroupPublic:
    return (await service.group_public(uow, [await service.get_group(uow, actor, group_id)]))[0]


@auth.put("/groups/{group_id:int}/")
@auth.patch("/groups/{group_id:int}/")
async def update_group(group_id: Id, data: s.GroupUpdate, actor: Admin, uow: UoW) -> s.GroupPublic:
    group = await service.save_group(uow, actor, data, group_id)
    return (await service.group_public(uow, [group]))[0]


@auth.delete("/groups/{group_id:int}/", status_code=NO_CONTENT)
async def delete_group(group_id: Id, actor: Admin, uow: UoW) -> Response:
    await service.delete_group(uow, actor, group_id)
    return Response(status_code=NO_CONTENT)
