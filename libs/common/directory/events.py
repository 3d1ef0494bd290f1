"""Folding auth's events into the directory, exactly once each (the kernel's consumer)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.auth import AccountDoc, PlanDoc, SectorDoc, SiteAccessDoc, SiteDoc
from libs.common.consumer import EventConsumer, PermanentError, default_scope
from libs.common.db import Database
from libs.common.directory.repository import DirectoryRepository
from libs.common.directory.tables import DirectoryTables
from libs.common.events import Event, directory_consumer_name, stream_name

# Auth's entities the directory keeps.
ENTITIES = ("site", "sector", "site_access", "account", "plan")

EntityHandler = Callable[[AsyncSession, Event], Awaitable[None]]


async def apply_auth_event(session: AsyncSession, tables: DirectoryTables, event: Event,
                           extra: Mapping[str, EntityHandler] | None = None) -> None:
    """Fold one of auth's events into the directory (or a service's own handler for
    another entity, `extra`); an event that cannot be read is dead-lettered."""
    kind = event.type.split(".")
    if len(kind) != 3 or kind[0] != "auth":
        raise PermanentError(f"not an auth event: {event.type}")
    _, entity, verb = kind
    if extra and entity in extra:
        await extra[entity](session, event)
        return
    repo = DirectoryRepository(session, tables)
    data, at, deleted = event.data, event.occurred_at, verb == "deleted"
    try:
        if entity == "site":
            await repo.upsert_site(SiteDoc.model_validate(data).model_dump(), deleted=deleted,
                                   occurred_at=at)
        elif entity == "sector":
            await repo.upsert_sector(SectorDoc.model_validate(data).model_dump(),
                                     deleted=deleted, occurred_at=at)
        elif entity == "site_access" and verb in ("granted", "revoked"):
            access = SiteAccessDoc.model_validate(data)
            change = repo.grant_access if verb == "granted" else repo.revoke_access
            await change(access.account_id, access.user_id, access.site_id)
        elif entity == "account":
            await repo.upsert_account(AccountDoc.model_validate(data).model_dump(),
                                      deleted=deleted, occurred_at=at)
        elif entity == "plan":
            await repo.upsert_plan(PlanDoc.model_validate(data).model_dump(), occurred_at=at)
    except ValidationError as exc:
        raise PermanentError(f"{event.type}: {exc}") from exc


class AuthEventConsumer(EventConsumer):
    """A durable consumer of auth's stream (provisioned first when auth has not yet)."""

    def __post_init__(self) -> None:
        self.source = "auth"


def directory_consumer(db: Database, js: Any, tables: DirectoryTables, *, service: str,
                       extra: Mapping[str, EntityHandler] | None = None,
                       name: str | None = None) -> EventConsumer:
    """The consumer that keeps a service's directory (and `extra` entities) current.
    Global rows (plans, seed keywords: no account) are written in the system scope."""
    entities = (*ENTITIES, *(extra or {}))

    async def handle(session: AsyncSession, event: Event) -> None:
        await apply_auth_event(session, tables, event, extra)

    return AuthEventConsumer(
        name=name or directory_consumer_name(service), stream=stream_name("auth"),
        subjects=[f"igny8.auth.{entity}.>" for entity in entities], handler=handle,
        db=db, js=js, service=service, scope=default_scope)
