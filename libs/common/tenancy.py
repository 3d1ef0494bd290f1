"""The layered checks every endpoint runs: authenticated → tenant → role → site.

`CurrentPrincipal` verifies the bearer token (the gateway already did; services check
again, defence in depth). `UoW` opens a unit of work whose transactions are bound to the
caller's tenant, so row-level security backs up the repositories' own filters. It commits
when the endpoint returns and before the response is sent (`scope="function"`: FastAPI
runs the rest of a default, request-scoped `yield` dependency after the response has
gone out, where a failed commit could no longer change the answer).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.db import NO_TENANT, Database, TenantScope
from libs.common.logging import account_id_var, user_id_var
from libs.common.problems import NotAuthenticated, PermissionDenied
from libs.common.security import InvalidToken, JwtVerifier, Principal, bearer_token
from libs.common.uow import UnitOfWork, unit_of_work

__all__ = ["UnitOfWork"]  # where endpoints have always imported it from


async def get_principal(request: Request) -> Principal:
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise NotAuthenticated("Authentication credentials were not provided.")
    verifier: JwtVerifier = request.app.state.verifier
    try:
        principal = await verifier.verify(token)
    except InvalidToken as exc:
        raise NotAuthenticated("Invalid or expired token.") from exc
    account_id_var.set(principal.account_id)
    user_id_var.set(principal.user_id)
    request.state.principal = principal
    return principal


async def get_optional_principal(request: Request) -> Principal | None:
    if request.headers.get("authorization") is None:
        return None
    return await get_principal(request)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
OptionalPrincipal = Annotated[Principal | None, Depends(get_optional_principal)]


def require_role(
    minimum: str,
    *,
    principal_from: Callable[..., Coroutine[Any, Any, Principal]] = get_principal,
) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency that lets `minimum` and every role above it through. `principal_from`
    is the dependency that says who is calling (auth passes one that also checks the
    session in its database)."""

    async def check(principal: Principal = Depends(principal_from)) -> Principal:
        if not principal.has_role(minimum):
            raise PermissionDenied("You do not have permission to perform this action.")
        return principal

    check.__name__ = f"require_{minimum}"
    return check


Editor = Annotated[Principal, Depends(require_role("editor"))]
AdminOrOwner = Annotated[Principal, Depends(require_role("admin"))]
PlatformStaff = Annotated[Principal, Depends(require_role("developer"))]


def database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


# GET and HEAD only read: their units of work are read-only transactions, which end with a
# COMMIT that keeps the connection's prepared statements (`Database.session`).
_READ_METHODS = frozenset({"GET", "HEAD"})


def request_session(request: Request,
                    scope: TenantScope) -> AbstractAsyncContextManager[AsyncSession]:
    """The session a request's unit of work runs in: `scope`'s rows, read-only for GET and
    HEAD. For endpoints that must open it themselves (a streamed body outlives `UoW`)."""
    return database(request).session(scope, read_only=request.method in _READ_METHODS)


def request_unit_of_work(request: Request,
                         scope: TenantScope) -> AbstractAsyncContextManager[UnitOfWork]:
    return unit_of_work(database(request), scope, read_only=request.method in _READ_METHODS)


async def get_uow(request: Request, principal: CurrentPrincipal) -> AsyncIterator[UnitOfWork]:
    async with request_unit_of_work(request, principal.scope) as uow:
        yield uow


async def get_public_uow(request: Request) -> AsyncIterator[UnitOfWork]:
    """For endpoints that act before anyone is known (register, login, public lists)."""
    async with request_unit_of_work(request, NO_TENANT) as uow:
        yield uow


async def get_system_uow(request: Request) -> AsyncIterator[UnitOfWork]:
    """Cross-tenant access for the few public flows that must find a row by a secret."""
    async with request_unit_of_work(request, TenantScope.system()) as uow:
        yield uow


UoW = Annotated[UnitOfWork, Depends(get_uow, scope="function")]
PublicUoW = Annotated[UnitOfWork, Depends(get_public_uow, scope="function")]
SystemUoW = Annotated[UnitOfWork, Depends(get_system_uow, scope="function")]


S = TypeVar("S")


def service_dependency(
    build: Callable[[Request, UnitOfWork, Principal], S],
    who: Callable[..., Coroutine[Any, Any, Principal]] = get_principal,
) -> Callable[..., Coroutine[Any, Any, S]]:
    """A dependency giving an endpoint its service, made by `build` for the caller (`who`
    says who may call: `get_principal`, `require_role("editor")`...) in the request's
    unit of work: `Keywords = Annotated[KeywordService, Depends(service_dependency(...))]`."""

    async def provide(request: Request, uow: UoW,
                      principal: Principal = Depends(who)) -> S:
        return build(request, uow, principal)

    return provide
