"""Tenancy, who: registration, users, accounts, subscriptions, and the caller's own
account under `/api/v1/account/` (settings and team)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from libs.common.ids import Id
from libs.common.pagination import message_response, page_response
from libs.common.tenancy import SystemUoW, UoW
from services.auth import schemas as s
from services.auth.api.common import NO_CONTENT, json_response
from services.auth.deps import Admin, Staff, Viewer, announce_revoked
from services.auth.service import accounts as service

auth = APIRouter(prefix="/api/v1/auth", tags=["auth"])
account = APIRouter(prefix="/api/v1/account", tags=["account"])
ROUTERS = (auth, account)


@auth.post("/register/", status_code=201)
async def register(data: s.RegisterRequest, uow: SystemUoW) -> Response:
    user, account_row, plan = await service.register(uow, data)
    return message_response(
        {"user": s.user_with_account(user, account_row, plan)},
        "Registration successful",
        status_code=201,
    )


# --- users --------------------------------------------------------------------------------------


@auth.get("/users/")
async def list_users(request: Request, actor: Admin, uow: UoW, query: s.UserQuery) -> Response:
    page = await service.list_users(uow, actor, query)
    return page_response(request, query.page, page.count, page.rows)


@auth.post("/users/", status_code=201)
async def create_user(data: s.UserCreate, actor: Admin, uow: UoW) -> s.UserPublic:
    user, _ = await service.create_user(uow, actor, data)
    return s.UserPublic.model_validate(user)


@auth.post("/users/invite/", status_code=201)
async def invite_user(data: s.UserInvite, actor: Admin, uow: UoW) -> Response:
    user, temporary = await service.invite_user(uow, actor, data)
    body = s.UserInvited(user=s.UserPublic.model_validate(user), temporary_password=temporary)
    return message_response(body, "Invitation created", status_code=201)


@auth.get("/users/{user_id:int}/")
async def get_user(user_id: Id, actor: Admin, uow: UoW) -> s.UserPublic:
    return s.UserPublic.model_validate(await service.get_user(uow, actor, user_id))


@auth.put("/users/{user_id:int}/")
@auth.patch("/users/{user_id:int}/")
async def update_user(
    user_id: Id, data: s.UserUpdate, request: Request, actor: Admin, uow: UoW
) -> Response:
    outcome = await service.update_user(uow, actor, user_id, data)
    return json_response(
        s.UserPublic.model_validate(outcome.value),
        headers=announce_revoked(request, uow, outcome.revoked),
    )


@auth.delete("/users/{user_id:int}/", status_code=NO_CONTENT)
async def delete_user(user_id: Id, request: Request, actor: Admin, uow: UoW) -> Response:
    revoked = await service.delete_user(uow, actor, user_id)
    return Response(status_code=NO_CONTENT, headers=announce_revoked(request, uow, revoked))


@auth.post("/users/{user_id:int}/activate/")
async def activate_user(user_id: Id, actor: Admin, uow: UoW) -> Response:
    user = await service.activate_user(uow, actor, user_id)
    return message_response(s.UserPublic.model_validate(user), "User activated")


# --- accounts and subscriptions -----------------------------------------------------------------


@auth.get("/accounts/")
async def list_accounts(
    request: Request, actor: Admin, uow: UoW, query: s.AccountQuery
) -> Response:
    page = await service.list_accounts(uow, actor, query)
    return page_response(request, query.page, page.count, page.rows)


@auth.post("/accounts/", status_code=201)
async def create_account(data: s.AccountCreate, actor: Admin, uow: UoW) -> s.AccountPublic:
    account_row, plan = await service.create_account(uow, actor, data)
    return s.account_public(account_row, plan)


@auth.get("/accounts/{account_id:int}/")
async def get_account(account_id: Id, actor: Admin, uow: UoW) -> s.AccountPublic:
    return s.account_public(*await service.get_account(uow, actor, account_id))


@auth.put("/accounts/{account_id:int}/")
@auth.patch("/accounts/{account_id:int}/")
async def update_account(
    account_id: Id, data: s.AccountUpdate, request: Request, actor: Admin, uow: UoW
) -> Response:
    outcome = await service.update_account(uow, actor, account_id, data)
    return json_response(
        s.account_public(*outcome.value), headers=announce_revoked(request, uow, outcome.revoked)
    )


@auth.delete("/accounts/{account_id:int}/", status_code=NO_CONTENT)
async def delete_account(account_id: Id, request: Request, actor: Admin, uow: UoW) -> Response:
    outcome = await service.delete_account(uow, actor, account_id)
    return Response(status_code=NO_CONTENT, headers=announce_revoked(request, uow, outcome.revoked))


@auth.get("/subscriptions/")
async def list_subscriptions(
    request: Request, actor: Admin, uow: UoW, query: s.SubscriptionQuery
) -> Response:
    page = await service.list_subscriptions(uow, actor, query)
    return page_response(request, query.page, page.count, page.rows)


@auth.post("/subscriptions/", status_code=201)
async def create_subscription(
    data: s.SubscriptionCreate, actor: Staff, uow: UoW
) -> s.SubscriptionPublic:
    sub = await service.create_subscription(uow, actor, data)
    return (await service.subscriptions_public(uow, [sub]))[0]


@auth.get("/subscriptions/{sub_id:int}/")
async def get_subscription(sub_id: Id, actor: Admin, uow: UoW) -> s.SubscriptionPublic:
    sub = await service.get_subscription(uow, actor, sub_id)
    return (await service.subscriptions_public(uow, [sub]))[0]


@auth.put("/subscriptions/{sub_id:int}/")
@auth.patch("/subscriptions/{sub_id:int}/")
async def update_subscription(
    sub_id: Id, data: s.SubscriptionUpdate, actor: Staff, uow: UoW
) -> s.SubscriptionPublic:
    sub = await service.update_subscription(uow, actor, sub_id, data)
    return (await service.subscriptions_public(uow, [sub]))[0]


# --- /api/v1/account/: the caller's own account --------------------------------------------


@account.get("/settings/")
async def get_settings(actor: Viewer, uow: UoW) -> s.AccountPublic:
    return s.account_public(*await service.get_account(uow, actor, actor.account_id))


@account.put("/settings/")
@account.patch("/settings/")
async def update_settings(data: s.AccountSettingsUpdate, actor: Admin, uow: UoW) -> s.AccountPublic:
    result = await service.update_settings(uow, actor, data)
    return s.account_public(*result)


@account.get("/team/")
async def list_team(request: Request, actor: Admin, uow: UoW, query: s.TeamQuery) -> Response:
    page = await service.list_users(uow, actor, query, own_account=True)
    return page_response(request, query.page, page.count, page.rows)


@account.post("/team/", status_code=201)
async def add_team_member(data: s.TeamMemberCreate, actor: Admin, uow: UoW) -> Response:
    user, temporary = await service.create_user(uow, actor, data)
    body: dict[str, Any] = {"user": s.UserPublic.model_validate(user)}
    if temporary:
        body["temporary_password"] = temporary
    return message_response(body, "Team member added", status_code=201)


@account.delete("/team/{user_id:int}/", status_code=NO_CONTENT)
async def remove_team_member(user_id: Id, request: Request, actor: Admin, uow: UoW) -> Response:
    revoked = await service.delete_user(uow, actor, user_id)
    return Response(status_code=NO_CONTENT, headers=announce_revoked(request, uow, revoked))
