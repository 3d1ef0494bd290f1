"""Auth's HTTP routes. Each endpoint checks who is calling (dependencies), calls the
service, commits through the unit of work, and only then answers."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.encoders import jsonable_encoder
from pydantic import TypeAdapter
from starlette.responses import Response

from libs.common.pagination import PageParams, message_response, page_params, page_response
from libs.common.problems import NotFound
from libs.common.tenancy import (
    CurrentPrincipal,
    PublicUoW,
    SystemUoW,
    UnitOfWork,
    UoW,
    request_session,
)
from services.auth import providers, service
from services.auth import repository as repo
from services.auth import schemas as s
from services.auth.deps import (
    Actor,
    Admin,
    ClientAddress,
    Editor,
    IssuerDep,
    Staff,
    Viewer,
    announce_revoked,
    keeping_failures,
)
from services.auth.models import (
    Account,
    Industry,
    Plan,
    Site,
    SiteUserAccess,
    Subscription,
    User,
)

Page = Annotated[PageParams, Depends(page_params)]

auth = APIRouter(prefix="/api/v1/auth", tags=["auth"])
account = APIRouter(prefix="/api/v1/account", tags=["account"])
system = APIRouter(prefix="/api/v1/system", tags=["system"])
internal = APIRouter(prefix="/internal/v1/auth", tags=["internal"], include_in_schema=False)

NO_CONTENT = 204


def _account_public(account_row: Account, plan: Plan) -> s.AccountPublic:
    return s.AccountPublic.model_validate(account_row).model_copy(
        update={"plan": s.PlanPublic.model_validate(plan)}
    )


def _user_with_account(user: User, account_row: Account, plan: Plan) -> s.UserWithAccount:
    return s.UserWithAccount(
        **s.UserPublic.model_validate(user).model_dump(), account=_account_public(account_row, plan)
    )


def _tokens(session: service.Session) -> dict[str, Any]:
    return {
        "access": session.access,
        "refresh": session.refresh,
        "access_expires_at": session.access_expires_at,
        "refresh_expires_at": session.refresh_expires_at,
    }


def _json(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(jsonable_encoder(body)),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )


# --- sign-in ----------------------------------------------------------------------------------


@auth.post("/register/", status_code=201)
async def register(data: s.RegisterRequest, uow: SystemUoW) -> Response:
    user, account_row, plan = await service.register(uow, data)
    await uow.commit()
    return message_response(
        {"user": _user_with_account(user, account_row, plan)},
        "Registration successful",
        status_code=201,
    )


@auth.post("/login/")
async def login(
    data: s.LoginRequest,
    request: Request,
    uow: SystemUoW,
    issuer: IssuerDep,
    address: ClientAddress,
) -> Response:
    async with keeping_failures(request, uow):
        session = await service.login(uow, issuer, data, address)
    await uow.commit()
    body = {
        "user": _user_with_account(session.user, session.account, session.plan),
        **_tokens(session),
    }
    return message_response(body, "Login successful")


@auth.post("/refresh/")
async def refresh(
    data: s.RefreshRequest, request: Request, uow: SystemUoW, issuer: IssuerDep
) -> Response:
    async with keeping_failures(request, uow):
        session = await service.refresh(uow, issuer, data.refresh)
    await uow.commit()
    return _json(_tokens(session))


@auth.post("/logout/")
async def logout(request: Request, actor: Actor, uow: UoW) -> Response:
    revoked = await service.logout(uow, actor)
    await uow.commit()
    response = message_response(None, "Logout successful")
    response.headers.update(await announce_revoked(request, revoked))
    return response


@auth.post("/change-password/")
async def change_password(
    data: s.ChangePasswordRequest, request: Request, actor: Actor, uow: UoW
) -> Response:
    revoked = await service.change_password(uow, actor, data)
    await uow.commit()
    response = message_response(None, "Password changed successfully")
    response.headers.update(await announce_revoked(request, revoked))
    return response


_ME_BODY = TypeAdapter(dict[str, s.MeUser])


@auth.get("/me/", response_model=dict[str, s.MeUser])
async def me(request: Request, principal: CurrentPrincipal) -> Response:
    """The session check (as `Actor` runs it) happens inside `service.me`, in the same
    statement as the read. The unit of work is opened here, in the session the `UoW`
    dependency would give (`request_session`), because a generator dependency costs more
    per request than everything else /me does in Python; the body is serialised once, from
    the model."""
    async with request_session(request, principal.scope) as session:
        user = await service.me(UnitOfWork(session), principal)
    return Response(_ME_BODY.dump_json({"user": user}), media_type="application/json")


@auth.get("/jwks/")
async def jwks(uow: PublicUoW) -> dict[str, Any]:
    return await service.jwks(uow)


@internal.post("/exchange")
async def exchange(
    data: s.ExchangeRequest,
    request: Request,
    uow: SystemUoW,
    issuer: IssuerDep,
    address: ClientAddress,
) -> s.ExchangeResult:
    async with keeping_failures(request, uow):
        token = await service.exchange(uow, issuer, data.authorization, address)
    await uow.commit()
    return s.ExchangeResult(access=token.token, expires_at=token.expires_at)


# --- users --------------------------------------------------------------------------------------


@auth.get("/users/")
async def list_users(
    request: Request,
    actor: Admin,
    uow: UoW,
    params: Page,
    role: str | None = None,
    is_active: bool | None = None,
) -> Response:
    query = repo.users_query(actor, role=role, is_active=is_active)
    count, rows = await repo.page(uow.session, query, params)
    return page_response(request, params, count, [s.UserPublic.model_validate(u) for u in rows])


@auth.post("/users/", status_code=201)
async def create_user(data: s.UserCreate, actor: Admin, uow: UoW) -> s.UserPublic:
    user, _ = await service.create_user(uow, actor, data)
    await uow.commit()
    return s.UserPublic.model_validate(user)


@auth.post("/users/invite/", status_code=201)
async def invite_user(data: s.UserInvite, actor: Admin, uow: UoW) -> Response:
    user, temporary = await service.invite_user(uow, actor, data)
    await uow.commit()
    body = s.UserInvited(user=s.UserPublic.model_validate(user), temporary_password=temporary)
    return message_response(body, "Invitation created", status_code=201)


@auth.get("/users/{user_id:int}/")
async def get_user(user_id: int, actor: Admin, uow: UoW) -> s.UserPublic:
    return s.UserPublic.model_validate(await service.get_user(uow, actor, user_id))


@auth.api_route("/users/{user_id:int}/", methods=["PUT", "PATCH"])
async def update_user(
    user_id: int, data: s.UserUpdate, request: Request, actor: Admin, uow: UoW
) -> Response:
    outcome = await service.update_user(uow, actor, user_id, data)
    await uow.commit()
    return _json(
        s.UserPublic.model_validate(outcome.value),
        headers=await announce_revoked(request, outcome.revoked),
    )


@auth.delete("/users/{user_id:int}/", status_code=NO_CONTENT)
async def delete_user(user_id: int, request: Request, actor: Admin, uow: UoW) -> Response:
    revoked = await service.delete_user(uow, actor, user_id)
    await uow.commit()
    return Response(status_code=NO_CONTENT, headers=await announce_revoked(request, revoked))


@auth.post("/users/{user_id:int}/activate/")
async def activate_user(user_id: int, actor: Admin, uow: UoW) -> Response:
    user = await service.activate_user(uow, actor, user_id)
    await uow.commit()
    return message_response(s.UserPublic.model_validate(user), "User activated")


# --- accounts, subscriptions, plans -------------------------------------------------------------


@auth.get("/accounts/")
async def list_accounts(request: Request, actor: Admin, uow: UoW, params: Page) -> Response:
    count, rows = await service.list_accounts(uow, actor, params)
    plans = await repo.plans_by_id(uow.session, [a.plan_id for a in rows])
    return page_response(
        request, params, count, [_account_public(a, plans[a.plan_id]) for a in rows]
    )


@auth.post("/accounts/", status_code=201)
async def create_account(data: s.AccountCreate, actor: Staff, uow: UoW) -> s.AccountPublic:
    account_row, plan = await service.create_account(uow, actor, data)
    await uow.commit()
    return _account_public(account_row, plan)


@auth.get("/accounts/{account_id:int}/")
async def get_account(account_id: int, actor: Admin, uow: UoW) -> s.AccountPublic:
    return _account_public(*await service.get_account(uow, actor, account_id))


@auth.api_route("/accounts/{account_id:int}/", methods=["PUT", "PATCH"])
async def update_account(
    account_id: int, data: s.AccountUpdate, request: Request, actor: Admin, uow: UoW
) -> Response:
    outcome = await service.update_account(uow, actor, account_id, data)
    await uow.commit()
    return _json(
        _account_public(*outcome.value), headers=await announce_revoked(request, outcome.revoked)
    )


@auth.delete("/accounts/{account_id:int}/", status_code=NO_CONTENT)
async def delete_account(account_id: int, request: Request, actor: Admin, uow: UoW) -> Response:
    outcome = await service.delete_account(uow, actor, account_id)
    await uow.commit()
    return Response(
        status_code=NO_CONTENT, headers=await announce_revoked(request, outcome.revoked)
    )


async def _subscription_public(uow: UoW, rows: list[Subscription]) -> list[s.SubscriptionPublic]:
    plans = await repo.plans_by_id(uow.session, [x.plan_id for x in rows])
    return [
        s.SubscriptionPublic.model_validate(x).model_copy(
            update={"plan_slug": plans[x.plan_id].slug}
        )
        for x in rows
    ]


@auth.get("/subscriptions/")
async def list_subscriptions(request: Request, actor: Admin, uow: UoW, params: Page) -> Response:
    count, rows = await repo.page(uow.session, repo.subscriptions_query(actor), params)
    return page_response(request, params, count, await _subscription_public(uow, rows))


@auth.post("/subscriptions/", status_code=201)
async def create_subscription(
    data: s.SubscriptionCreate, actor: Staff, uow: UoW
) -> s.SubscriptionPublic:
    sub = await service.create_subscription(uow, actor, data)
    await uow.commit()
    return (await _subscription_public(uow, [sub]))[0]


@auth.get("/subscriptions/{sub_id:int}/")
async def get_subscription(sub_id: int, actor: Admin, uow: UoW) -> s.SubscriptionPublic:
    return (await _subscription_public(uow, [await service.get_subscription(uow, actor, sub_id)]))[
        0
    ]


@auth.api_route("/subscriptions/{sub_id:int}/", methods=["PUT", "PATCH"])
async def update_subscription(
    sub_id: int, data: s.SubscriptionUpdate, actor: Staff, uow: UoW
) -> s.SubscriptionPublic:
    sub = await service.update_subscription(uow, actor, sub_id, data)
    await uow.commit()
    return (await _subscription_public(uow, [sub]))[0]


@auth.get("/plans/")
async def list_plans(request: Request, uow: PublicUoW, params: Page) -> Response:
    count, rows = await repo.page(uow.session, repo.plans_query(include_inactive=False), params)
    return page_response(request, params, count, [s.PlanPublic.model_validate(p) for p in rows])


@auth.get("/plans/{plan_id:int}/")
async def get_plan(plan_id: int, uow: PublicUoW) -> s.PlanPublic:
    plan = await repo.get(uow.session, Plan, plan_id)
    if plan is None or not plan.is_active:
        raise NotFound("Plan not found.")
    return s.PlanPublic.model_validate(plan)


@auth.post("/plans/", status_code=201)
async def create_plan(data: s.PlanCreate, actor: Staff, uow: UoW) -> s.PlanPublic:
    plan = await service.create_plan(uow, actor, data)
    await uow.commit()
    return s.PlanPublic.model_validate(plan)


@auth.api_route("/plans/{plan_id:int}/", methods=["PUT", "PATCH"])
async def update_plan(plan_id: int, data: s.PlanUpdate, actor: Staff, uow: UoW) -> s.PlanPublic:
    plan = await service.update_plan(uow, actor, plan_id, data)
    await uow.commit()
    return s.PlanPublic.model_validate(plan)


# --- sites ---------------------------------------------------------------------------------


@auth.get("/sites/")
async def list_sites(
    request: Request, actor: Actor, uow: UoW, params: Page, is_active: bool | None = None
) -> Response:
    query = repo.with_active(service.site_list_query(actor), Site, is_active)
    count, rows = await repo.page(uow.session, query, params)
    return page_response(request, params, count, await service.site_public(uow, rows))


@auth.post("/sites/", status_code=201)
async def create_site(data: s.SiteCreate, actor: Editor, uow: UoW) -> s.SitePublic:
    site = await service.create_site(uow, actor, data)
    await uow.commit()
    return (await service.site_public(uow, [site]))[0]


@auth.get("/sites/{site_id:int}/")
async def get_site(site_id: int, actor: Actor, uow: UoW) -> s.SitePublic:
    return (await service.site_public(uow, [await service.get_site(uow, actor, site_id)]))[0]


@auth.api_route("/sites/{site_id:int}/", methods=["PUT", "PATCH"])
async def update_site(site_id: int, data: s.SiteUpdate, actor: Editor, uow: UoW) -> s.SitePublic:
    site = await service.update_site(uow, actor, site_id, data)
    await uow.commit()
    return (await service.site_public(uow, [site]))[0]


@auth.delete("/sites/{site_id:int}/", status_code=NO_CONTENT)
async def delete_site(site_id: int, request: Request, actor: Editor, uow: UoW) -> Response:
    revoked = await service.delete_site(uow, actor, site_id)
    await uow.commit()
    return Response(status_code=NO_CONTENT, headers=await announce_revoked(request, revoked))


@auth.get("/sites/{site_id:int}/sectors/")
async def site_sectors(
    site_id: int, request: Request, actor: Actor, uow: UoW, params: Page
) -> Response:
    query = await service.sector_list_query(uow, actor, site_id)
    count, rows = await repo.page(uow.session, query, params)
    return page_response(request, params, count, [s.SectorPublic.model_validate(x) for x in rows])


@auth.post("/sites/{site_id:int}/set_active/")
async def set_active_site(site_id: int, actor: Editor, uow: UoW) -> Response:
    site = await service.update_site(uow, actor, site_id, {"is_active": True})
    await uow.commit()
    return message_response((await service.site_public(uow, [site]))[0], "Site activated")


@auth.post("/sites/{site_id:int}/select_sectors/")
async def select_sectors(
    site_id: int, data: s.SelectSectorsRequest, actor: Editor, uow: UoW
) -> Response:
    sectors = await service.select_sectors(uow, actor, site_id, data)
    await uow.commit()
    site = await service.get_site(uow, actor, site_id)
    body = {
        "site": (await service.site_public(uow, [site]))[0],
        "sectors": [s.SectorPublic.model_validate(x) for x in sectors],
    }
    return message_response(body, "Sectors selected")


@auth.post("/sites/{site_id:int}/generate_api_key/")
async def generate_api_key(site_id: int, request: Request, actor: Admin, uow: UoW) -> Response:
    outcome = await service.generate_api_key(uow, actor, site_id)
    await uow.commit()
    return _json(
        s.SiteApiKey(api_key=outcome.value),
        headers=await announce_revoked(request, outcome.revoked),
    )


# --- sectors -------------------------------------------------------------------------------


@auth.get("/sectors/")
async def list_sectors(
    request: Request,
    actor: Actor,
    uow: UoW,
    params: Page,
    site_id: int | None = None,
    is_active: bool | None = None,
) -> Response:
    query = await service.sector_list_query(uow, actor, site_id, is_active)
    count, rows = await repo.page(uow.session, query, params)
    return page_response(request, params, count, [s.SectorPublic.model_validate(x) for x in rows])


@auth.post("/sectors/", status_code=201)
async def create_sector(data: s.SectorCreate, actor: Editor, uow: UoW) -> s.SectorPublic:
    sector = await service.create_sector(uow, actor, data)
    await uow.commit()
    return s.SectorPublic.model_validate(sector)


@auth.get("/sectors/{sector_id:int}/")
async def get_sector(sector_id: int, actor: Actor, uow: UoW) -> s.SectorPublic:
    return s.SectorPublic.model_validate(await service.get_sector(uow, actor, sector_id))


@auth.api_route("/sectors/{sector_id:int}/", methods=["PUT", "PATCH"])
async def update_sector(
    sector_id: int, data: s.SectorUpdate, actor: Editor, uow: UoW
) -> s.SectorPublic:
    sector = await service.update_sector(uow, actor, sector_id, data)
    await uow.commit()
    return s.SectorPublic.model_validate(sector)


@auth.delete("/sectors/{sector_id:int}/", status_code=NO_CONTENT)
async def delete_sector(sector_id: int, actor: Editor, uow: UoW) -> Response:
    await service.delete_sector(uow, actor, sector_id)
    await uow.commit()
    return Response(status_code=NO_CONTENT)


# --- site access and groups ---------------------------------------------------------------------


@auth.get("/site-access/")
async def list_site_access(
    request: Request,
    actor: Admin,
    uow: UoW,
    params: Page,
    user_id: int | None = None,
    site_id: int | None = None,
) -> Response:
    query = repo.site_access_query(actor, user_id=user_id, site_id=site_id)
    count, rows = await repo.page(uow.session, query, params)
    return page_response(
        request, params, count, [s.SiteAccessPublic.model_validate(x) for x in rows]
    )


@auth.post("/site-access/", status_code=201)
async def grant_site_access(data: s.SiteAccessCreate, actor: Admin, uow: UoW) -> s.SiteAccessPublic:
    row = await service.grant_site_access(uow, actor, data)
    await uow.commit()
    return s.SiteAccessPublic.model_validate(row)


@auth.get("/site-access/{access_id:int}/")
async def get_site_access(access_id: int, actor: Admin, uow: UoW) -> s.SiteAccessPublic:
    row = await repo.get_scoped(uow.session, SiteUserAccess, actor, access_id)
    if row is None:
        raise NotFound("Site access not found.")
    return s.SiteAccessPublic.model_validate(row)


@auth.delete("/site-access/{access_id:int}/", status_code=NO_CONTENT)
async def revoke_site_access(access_id: int, actor: Admin, uow: UoW) -> Response:
    await service.revoke_site_access(uow, actor, access_id)
    await uow.commit()
    return Response(status_code=NO_CONTENT)


@auth.get("/groups/")
async def list_groups(request: Request, actor: Admin, uow: UoW, params: Page) -> Response:
    count, rows = await repo.page(uow.session, repo.groups_query(actor), params)
    return page_response(request, params, count, await service.group_public(uow, rows))


@auth.post("/groups/", status_code=201)
async def create_group(data: s.GroupCreate, actor: Admin, uow: UoW) -> s.GroupPublic:
    group = await service.save_group(uow, actor, data)
    await uow.commit()
    return (await service.group_public(uow, [group]))[0]


@auth.get("/groups/{group_id:int}/")
async def get_group(group_id: int, actor: Admin, uow: UoW) -> s.GroupPublic:
    return (await service.group_public(uow, [await service.get_group(uow, actor, group_id)]))[0]


@auth.api_route("/groups/{group_id:int}/", methods=["PUT", "PATCH"])
async def update_group(group_id: int, data: s.GroupUpdate, actor: Admin, uow: UoW) -> s.GroupPublic:
    group = await service.save_group(uow, actor, data, group_id)
    await uow.commit()
    return (await service.group_public(uow, [group]))[0]


@auth.delete("/groups/{group_id:int}/", status_code=NO_CONTENT)
async def delete_group(group_id: int, actor: Admin, uow: UoW) -> Response:
    await service.delete_group(uow, actor, group_id)
    await uow.commit()
    return Response(status_code=NO_CONTENT)


# --- catalogue ---------------------------------------------------------------------------------


@auth.get("/industries/")
async def list_industries(request: Request, uow: PublicUoW, params: Page) -> Response:
    count, rows = await repo.page(uow.session, repo.industries_query(), params)
    return page_response(request, params, count, await service.industries_public(uow, rows))


@auth.get("/industries/{industry_id:int}/")
async def get_industry(industry_id: int, uow: PublicUoW) -> s.IndustryPublic:
    industry = await repo.get(uow.session, Industry, industry_id)
    if industry is None or not industry.is_active:
        raise NotFound("Industry not found.")
    return (await service.industries_public(uow, [industry]))[0]


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
    query = repo.seed_keywords_query(
        industry=industry,
        sector=sector,
        intent=intent,
        country=country,
        search=search,
        ordering=ordering,
    )
    count, rows = await repo.page_rows(uow.session, query, params)
    return page_response(request, params, count, [service.seed_keyword_public(r) for r in rows])


@auth.get("/seed-keywords/{keyword_id:int}/")
async def get_seed_keyword(keyword_id: int, actor: Actor, uow: UoW) -> s.SeedKeywordPublic:
    rows = await repo.seed_keywords_by_ids(uow.session, [keyword_id])
    if not rows:
        raise NotFound("Seed keyword not found.")
    return service.seed_keyword_public(rows[0])


@auth.post("/seed-keywords/import_seed_keywords/")
async def import_seed_keywords(
    actor: Staff, uow: UoW, file: Annotated[UploadFile, File()]
) -> Response:
    rows = service.parse_seed_keyword_csv(await file.read())
    report = await service.import_seed_keywords(uow, rows)
    await uow.commit()
    return message_response(report, f"Imported {report.created + report.updated} seed keywords")


# --- /api/v1/account/ ----------------------------------------------------------------------


@account.get("/settings/")
async def get_settings(actor: Viewer, uow: UoW) -> s.AccountPublic:
    return _account_public(*await service.get_account(uow, actor, actor.account_id))


@account.api_route("/settings/", methods=["PATCH", "PUT"])
async def update_settings(data: s.AccountSettingsUpdate, actor: Admin, uow: UoW) -> s.AccountPublic:
    result = await service.update_settings(uow, actor, data)
    await uow.commit()
    return _account_public(*result)


@account.get("/team/")
async def list_team(request: Request, actor: Admin, uow: UoW, params: Page) -> Response:
    query = repo.users_query(actor, account_id=actor.account_id)
    count, rows = await repo.page(uow.session, query, params)
    return page_response(request, params, count, [s.UserPublic.model_validate(u) for u in rows])


@account.post("/team/", status_code=201)
async def add_team_member(data: s.TeamMemberCreate, actor: Admin, uow: UoW) -> Response:
    user, temporary = await service.create_user(uow, actor, data)
    await uow.commit()
    body: dict[str, Any] = {"user": s.UserPublic.model_validate(user)}
    if temporary:
        body["temporary_password"] = temporary
    return message_response(body, "Team member added", status_code=201)


@account.delete("/team/{user_id:int}/", status_code=NO_CONTENT)
async def remove_team_member(user_id: int, request: Request, actor: Admin, uow: UoW) -> Response:
    revoked = await service.delete_user(uow, actor, user_id)
    await uow.commit()
    return Response(status_code=NO_CONTENT, headers=await announce_revoked(request, revoked))


# --- /api/v1/system/: prompts and integration settings -------------------------------------


@system.get("/prompts/")
async def list_prompts(request: Request, actor: Viewer, uow: UoW, params: Page) -> Response:
    count, rows = await repo.page(uow.session, repo.prompts_query(actor), params)
    return page_response(
        request, params, count, [service.prompt_public(p.prompt_type, p) for p in rows]
    )


@system.post("/prompts/", status_code=201)
async def create_prompt(data: s.PromptCreate, actor: Editor, uow: UoW) -> s.PromptPublic:
    row = await service.create_prompt(uow, actor, data)
    await uow.commit()
    return service.prompt_public(row.prompt_type, row)


@system.get("/prompts/by_type/{prompt_type}/")
async def prompt_by_type(prompt_type: str, actor: Viewer, uow: UoW) -> s.PromptPublic:
    return await service.prompt_by_type(uow, actor, prompt_type)


@system.post("/prompts/save/")
async def save_prompt(data: s.PromptSave, actor: Editor, uow: UoW) -> Response:
    result = await service.save_prompt(uow, actor, data)
    await uow.commit()
    return message_response(result, "Prompt saved")


@system.post("/prompts/reset/")
async def reset_prompt(data: s.PromptReset, actor: Editor, uow: UoW) -> Response:
    result = await service.reset_prompt(uow, actor, data)
    await uow.commit()
    return message_response(result, "Prompt reset to default")


@system.get("/prompts/{prompt_id:int}/")
async def get_prompt(prompt_id: int, actor: Viewer, uow: UoW) -> s.PromptPublic:
    row = await service.get_prompt(uow, actor, prompt_id)
    return service.prompt_public(row.prompt_type, row)


@system.api_route("/prompts/{prompt_id:int}/", methods=["PUT", "PATCH"])
async def update_prompt(
    prompt_id: int, data: s.PromptUpdate, actor: Editor, uow: UoW
) -> s.PromptPublic:
    row = await service.update_prompt(uow, actor, prompt_id, data)
    await uow.commit()
    return service.prompt_public(row.prompt_type, row)


@system.delete("/prompts/{prompt_id:int}/", status_code=NO_CONTENT)
async def delete_prompt(prompt_id: int, actor: Editor, uow: UoW) -> Response:
    await service.delete_prompt(uow, actor, prompt_id)
    await uow.commit()
    return Response(status_code=NO_CONTENT)


@system.get("/settings/integrations/{provider}/")
async def get_integration(
    provider: str, actor: Admin, uow: UoW, issuer: IssuerDep
) -> s.IntegrationPublic:
    return await service.get_integration(uow, actor, issuer, provider)


@system.put("/settings/integrations/{provider}/")
async def put_integration(
    provider: str, data: s.IntegrationUpdate, actor: Admin, uow: UoW, issuer: IssuerDep
) -> s.IntegrationPublic:
    result = await service.save_integration(uow, actor, issuer, provider, data)
    await uow.commit()
    return result


@system.post("/settings/integrations/{provider}/save/")
async def save_integration(
    provider: str, data: s.IntegrationUpdate, actor: Admin, uow: UoW, issuer: IssuerDep
) -> Response:
    result = await service.save_integration(uow, actor, issuer, provider, data)
    await uow.commit()
    return message_response(result, "Integration settings saved")


@system.post("/settings/integrations/{provider}/test/")
async def check_integration(
    provider: str, actor: Admin, uow: UoW, issuer: IssuerDep, data: s.IntegrationTest | None = None
) -> Response:
    base_url, key, _config = await service.provider_credentials(uow, actor, issuer, provider, data)
    models = await providers.list_models(
        base_url, key, timeout=issuer.settings.provider_timeout_seconds
    )
    result = s.IntegrationTestResult(ok=True, provider=provider, base_url=base_url, models=models)
    return message_response(result, f"Connection to {provider} succeeded")


@system.post("/settings/integrations/{provider}/generate/")
async def generate_test_image(
    provider: str, data: s.ImageGenerateRequest, actor: Admin, uow: UoW, issuer: IssuerDep
) -> s.ImageGenerateResult:
    base_url, key, config = await service.provider_credentials(uow, actor, issuer, provider)
    model = data.model or str(config.get("image_model") or config.get("model"))
    image = await providers.generate_image(
        base_url,
        key,
        model=model,
        prompt=data.prompt,
        size=data.size,
        timeout=issuer.settings.provider_timeout_seconds * 6,
    )
    return s.ImageGenerateResult(provider=provider, model=model, **image)


@system.get("/integrations/image_generation/")
async def image_generation_settings(actor: Viewer, uow: UoW, issuer: IssuerDep) -> dict[str, Any]:
    return await service.image_generation_settings(uow, actor, issuer)


ROUTERS = (auth, account, system, internal)
