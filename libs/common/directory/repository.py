"""The directory's SQL: upserts from auth's events (the newest event wins) and the
lookups request-time checks make."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.directory.tables import DirectoryTables


async def upsert(session: AsyncSession, t: Table, keys: Sequence[str], values: dict[str, Any],
                 occurred_at: datetime | None) -> None:
    """Insert or update a read-model row, unless a newer event already wrote it (for any
    read model keyed on auth's data: the directory's, and a service's own such as
    planner's seed keywords)."""
    await upsert_many(session, t, keys, [values], occurred_at)


async def upsert_many(session: AsyncSession, t: Table, keys: Sequence[str],
                      rows: Sequence[dict[str, Any]], occurred_at: datetime | None) -> None:
    """`upsert` for the rows of one event, as one statement executed for many rows: its
    compilation is cached and SQLAlchemy sends the rows in batches of multi-row VALUES.
    A statement built per row (or one with every row's values in it) was compiled each
    time: an import of 100,000 keywords kept writer's worker busy for 13 s. Rows share
    their columns; the last row of a key wins, as it would row by row."""
    unique = list({tuple(row[k] for k in keys): row for row in rows}.values())
    if not unique:
        return
    where = None
    if "source_occurred_at" in t.c:
        unique = [{**row, "source_occurred_at": occurred_at} for row in unique]
        if occurred_at is not None:
            where = (t.c.source_occurred_at.is_(None)) | (t.c.source_occurred_at <= occurred_at)
    stmt = pg_insert(t)
    changes = {k: stmt.excluded[k] for k in unique[0] if k not in keys}
    await session.execute(
        stmt.on_conflict_do_update(index_elements=list(keys), set_=changes, where=where),
        unique)


class DirectoryRepository:
    def __init__(self, session: AsyncSession, tables: DirectoryTables) -> None:
        self.session = session
        self.t = tables

    # --- writes, from auth's events and lookups --------------------------------------

    async def upsert_site(self, site: dict[str, Any], *, deleted: bool = False,
                          occurred_at: datetime | None = None) -> None:
        await upsert(self.session, self.t.sites, ["id"], {**site, "deleted": deleted},
                     occurred_at)

    async def upsert_sector(self, sector: dict[str, Any], *, deleted: bool = False,
                            occurred_at: datetime | None = None) -> None:
        await upsert(self.session, self.t.sectors, ["id"], {**sector, "deleted": deleted},
                     occurred_at)

    async def upsert_account(self, account: dict[str, Any], *, deleted: bool = False,
                             occurred_at: datetime | None = None) -> None:
        await upsert(self.session, self.t.accounts, ["account_id"],
                     {**account, "deleted": deleted}, occurred_at)

    async def upsert_plan(self, plan: dict[str, Any],
                          occurred_at: datetime | None = None) -> None:
        await upsert(self.session, self.t.plans, ["id"], plan, occurred_at)

    async def grant_access(self, account_id: int, user_id: int, site_id: int) -> None:
        await self.session.execute(
            pg_insert(self.t.site_access)
            .values(account_id=account_id, user_id=user_id, site_id=site_id)
            .on_conflict_do_nothing())

    async def revoke_access(self, account_id: int, user_id: int, site_id: int) -> None:
        a = self.t.site_access
        await self.session.execute(a.delete().where(
            a.c.account_id == account_id, a.c.user_id == user_id, a.c.site_id == site_id))

    # --- reads -----------------------------------------------------------------------

    async def site(self, account_id: int, site_id: int) -> dict[str, Any] | None:
        return await self._live(self.t.sites, account_id, site_id)

    async def sector(self, account_id: int, sector_id: int) -> dict[str, Any] | None:
        return await self._live(self.t.sectors, account_id, sector_id)

    async def _live(self, t: Table, account_id: int, row_id: int) -> dict[str, Any] | None:
        """A site or sector of this account that auth has not deleted, as known here."""
        query = select(t).where(t.c.id == row_id, t.c.account_id == account_id,
                                t.c.deleted.is_(False))
        row = (await self.session.execute(query)).mappings().first()
        return dict(row) if row else None

    async def granted_site_ids(self, account_id: int, user_id: int) -> list[int]:
        a, sites = self.t.site_access, self.t.sites
        rows = await self.session.execute(
            select(a.c.site_id).join(sites, sites.c.id == a.c.site_id)
            .where(a.c.account_id == account_id, a.c.user_id == user_id,
                   sites.c.deleted.is_(False)))
        return sorted(r[0] for r in rows)

    async def account(self, account_id: int) -> dict[str, Any] | None:
        """The account's status, whether auth deleted it, and its plan's limits."""
        accounts, plans = self.t.accounts, self.t.plans
        row = (await self.session.execute(
            select(accounts.c.status, accounts.c.deleted, accounts.c.plan_id,
                   plans.c.max_keywords, plans.c.max_author_profiles)
            .select_from(accounts.outerjoin(plans, plans.c.id == accounts.c.plan_id))
            .where(accounts.c.account_id == account_id))).mappings().first()
        return dict(row) if row else None
