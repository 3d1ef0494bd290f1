"""FastAPI dependencies of auth's endpoints: the acting principal as auth's own database
sees it (session live, user active, account not blocked, current role), role gates,
the token issuer, the integration keys' box, paging, the client's address, and
announcing revoked sessions."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.responses import Response

from libs.common.crypto import SecretBox
from libs.common.nats import REVOCATIONS_BUCKET
from libs.common.outbound import OutboundPolicy
from libs.common.problems import problem_response
from libs.common.security import Principal, revoke_sessions
from libs.common.tenancy import CurrentPrincipal, UnitOfWork, UoW, require_role
from services.auth.service.common import PersistentFailure
from services.auth.service.sessions import Issuer, session_actor
from services.auth.settings import AuthSettings

log = logging.getLogger(__name__)

REVOKED_HEADER = "X-Igny8-Revoked-Sessions"


async def get_actor(principal: CurrentPrincipal, uow: UoW) -> Principal:
    return await session_actor(uow, principal)


Actor = Annotated[Principal, Depends(get_actor)]


def at_least(minimum: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """The kernel's role check, over the actor whose session auth has just confirmed."""
    return require_role(minimum, principal_from=get_actor)


Viewer = Annotated[Principal, Depends(at_least("viewer"))]
Editor = Annotated[Principal, Depends(at_least("editor"))]
Admin = Annotated[Principal, Depends(at_least("admin"))]
Staff = Annotated[Principal, Depends(at_least("developer"))]


async def get_issuer(request: Request) -> Issuer:
    issuer: Issuer = request.app.state.issuer
    return issuer


IssuerDep = Annotated[Issuer, Depends(get_issuer)]


async def get_integration_keys(request: Request) -> SecretBox:
    keys: SecretBox = request.app.state.integration_keys
    return keys


IntegrationKeys = Annotated[SecretBox, Depends(get_integration_keys)]


async def get_settings(request: Request) -> AuthSettings:
    settings: AuthSettings = request.app.state.settings
    return settings


Settings = Annotated[AuthSettings, Depends(get_settings)]


async def get_outbound_policy(request: Request) -> OutboundPolicy:
    policy: OutboundPolicy = request.app.state.outbound
    return policy


# How far calls made for a tenant may go (libs/common/outbound.py).
Outbound = Annotated[OutboundPolicy, Depends(get_outbound_policy)]


async def client_address(request: Request) -> str | None:
    """The caller's address: the gateway's `X-Forwarded-For` first hop, else the peer.
    Auth is reachable only through the gateway, which sets the header."""
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded:
        first = forwarded.split(",")[0].strip()
        if first:
            return first[:64]
    return request.client.host if request.client else None


ClientAddress = Annotated[str | None, Depends(client_address)]


async def peer_address(request: Request) -> str | None:
    """The address of whoever opened the connection, whatever headers it sent."""
    return request.client.host if request.client else None


PeerAddress = Annotated[str | None, Depends(peer_address)]


def announce_revoked(
    request: Request, uow: UnitOfWork, sids: list[str] | tuple[str, ...]
) -> dict[str, str]:
    """Revoked sessions: the header tells the gateway with this answer; once the unit of
    work has committed, every verifier learns them from the KV bucket, and this process at
    once. Returns the header to send."""
    if not sids:
        return {}
    revoked = tuple(sids)

    async def publish() -> None:
        request.app.state.verifier.revocations.add_local(*revoked)
        try:
            await revoke_sessions(request.app.state.buckets[REVOCATIONS_BUCKET], *revoked)
        except Exception as exc:  # the database already refuses them; the KV is the fast path
            log.warning("could not publish %d revocations to NATS: %s", len(revoked), exc)

    uow.after_commit(publish)
    return {REVOKED_HEADER: ",".join(revoked)}


def kept_failure(request: Request, uow: UnitOfWork, failure: PersistentFailure) -> Response:
    """The answer to a failure whose traces must be kept (a failed sign-in counted, a
    reused refresh token's family revoked): returned, not raised, so the unit of work
    commits them like any other answer."""
    headers = {**failure.headers, **announce_revoked(request, uow, failure.revoked)}
    return problem_response(
        failure.status, failure.title, failure.detail, failure.errors, headers=headers
    )
