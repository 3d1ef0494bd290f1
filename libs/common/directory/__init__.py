"""The auth directory: what a service keeps of auth's sites, sectors, site access,
accounts and plans, kept current from auth's events, with the checks requests make
against it. A service that needs it declares it once and gets all of it:

    # models.py: the tables, in the service's own metadata
    DIRECTORY = Directory(PlannerModel.metadata)

    # migrations: `directory_tables(op)` creates them (with row-level security)

    # worker.py: the consumer of auth's events (`extra` for entities of its own)
    consumers=lambda ctx: [DIRECTORY.consumer(ctx.db, ctx.js, service="writer")]

    # service.py: per unit of work, on `CallerService` (`directory = DIRECTORY`)
    access = DIRECTORY.access(uow.session, principal, auth_client)
    visibility = await access.visibility()             # 403 for a blocked account
    site, sector = await access.site_and_sector(site_id, sector_id)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.auth import ACCOUNT_STATUSES, BLOCKED_ACCOUNT_STATUSES, AuthClient
from libs.common.consumer import EventConsumer
from libs.common.db import Database
from libs.common.directory.access import DirectoryAccess, account_blocked
from libs.common.directory.events import (
    AuthEventConsumer,
    EntityHandler,
    apply_auth_event,
    directory_consumer,
)
from libs.common.directory.repository import DirectoryRepository, upsert, upsert_many
from libs.common.directory.service import CallerService
from libs.common.directory.tables import (
    TENANT_TABLES,
    DirectoryTables,
    directory_tables_in,
)
from libs.common.security import Principal

__all__ = [
    "ACCOUNT_STATUSES",
    "BLOCKED_ACCOUNT_STATUSES",
    "TENANT_TABLES",
    "AuthEventConsumer",
    "CallerService",
    "Directory",
    "DirectoryAccess",
    "DirectoryRepository",
    "DirectoryTables",
    "EntityHandler",
    "account_blocked",
    "apply_auth_event",
    "upsert",
    "upsert_many",
]


class Directory:
    """A service's directory: its tables in the service's metadata, and what uses them."""

    def __init__(self, metadata: MetaData) -> None:
        self.tables = directory_tables_in(metadata)

    def repository(self, session: AsyncSession) -> DirectoryRepository:
        return DirectoryRepository(session, self.tables)

    def access(self, session: AsyncSession, principal: Principal,
               auth: AuthClient | None = None) -> DirectoryAccess:
        return DirectoryAccess(session, self.tables, principal, auth)

    def consumer(self, db: Database, js: Any, *, service: str,
                 extra: Mapping[str, EntityHandler] | None = None,
                 name: str | None = None) -> EventConsumer:
        return directory_consumer(db, js, self.tables, service=service, extra=extra,
                                  name=name)
