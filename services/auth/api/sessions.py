"""Sign-in and sessions: login, refresh, logout, change of password, `/me`, the JWKS and
the gateway's internal credential exchange."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import TypeAdapter
from starlette.responses import Response

from libs.common.pagination import message_response
from libs.common.problems import NotAuthenticated, answers
from libs.common.tenancy import (
    CurrentPrincipal,
    PublicUoW,
    SystemUoW,
    UnitOfWork,
    UoW,
    request_session,
)
from services.auth import schemas as s
from services.auth.api.common import json_response
from services.auth.deps import (
    Actor,
    ClientAddress,
    IssuerDep,
    PeerAddress,
    announce_revoked,
    kept_failure,
)
from services.auth.service import sessions as service
from services.auth.service.common import PersistentFailure

auth = APIRouter(prefix="/api/v1/auth", tags=["auth"])
internal = APIRouter(prefix="/internal/v1/auth", tags=["internal"], include_in_schema=False)
ROUTERS = (auth, internal)


def _tokens(session: service.Session) -> dict[str, Any]:
    refresh = session.refresh
    return {
        "access": session.access.value,
        "refresh": refresh.value if refresh else None,
        "access_expires_at": session.access.expires_at,
        "refresh_expires_at": refresh.expires_at if refresh else None,
    }


@auth.post("/login/", responses=answers(NotAuthenticated, description="Bad credentials"))
async def login(
    data: s.LoginRequest,
    request: Request,
    uow: SystemUoW,
    issuer: IssuerDep,
    address: ClientAddress,
) -> Response:
    try:
        session = await service.login(uow, issuer, data, address)
    except PersistentFailure as failure:
        return kept_failure(request, uow, failure)
    body = {
        "user": s.user_with_account(session.user, session.account, session.plan),
        **_tokens(session),
    }
    return message_response(body, "Login successful")


@auth.post("/refresh/", responses=answers(NotAuthenticated,
                                          description="Unknown, expired or revoked token"))
async def refresh(
    data: s.RefreshRequest, request: Request, uow: SystemUoW, issuer: IssuerDep
) -> Response:
    try:
        session = await service.refresh(uow, issuer, data.refresh)
    except PersistentFailure as failure:
        return kept_failure(request, uow, failure)
    return json_response(_tokens(session))


@auth.post("/logout/")
async def logout(request: Request, actor: Actor, uow: UoW) -> Response:
    revoked = await service.logout(uow, actor)
    response = message_response(None, "Logout successful")
    response.headers.update(announce_revoked(request, uow, revoked))
    return response


@auth.post("/change-password/")
async def change_password(
    data: s.ChangePasswordRequest, request: Request, actor: Actor, uow: UoW
) -> Response:
    revoked = await service.change_password(uow, actor, data)
    response = message_response(None, "Password changed successfully")
    response.headers.update(announce_revoked(request, uow, revoked))
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
    peer: PeerAddress,
) -> Response:
    """The gateway's exchange of Basic and ApiKey credentials (ADR 0002). Failures count
    against `client_address` from the body (the gateway's client), else against the peer;
    `X-Forwarded-For` is not read here."""
    address = str(data.client_address) if data.client_address is not None else peer
    try:
        token = await service.exchange(uow, issuer, data.authorization, address)
    except PersistentFailure as failure:
        return kept_failure(request, uow, failure)
    return json_response(s.ExchangeResult(access=token.token, expires_at=token.expires_at))
