# SQLModel columns compare as `bool` to the type checker; they are SQL expressions.
# mypy: disable-error-code="arg-type, union-attr, attr-defined, operator"
# mypy: disable-error-code="return-value, call-overload"
"""Tenancy, where: sites, sectors, site access, groups. Editors and viewers see the sites
granted to them (`Visibility.site_ids`), owners and admins every site of the account."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, delete, false, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.auth.models import Group, GroupMember, Sector, Site, SiteUserAccess
from services.auth.repository import AuthRepository


class SiteRepository(AuthRepository[Site]):
    """A site has no `site_id` column: the visibility's sites are its rows' own ids."""

    model = Site

    def scope(self, t: Any = None) -> list[ColumnElement[bool]]:
        t = self.table if t is None else t
        conditions = super().scope(t)
        site_ids = self.visibility.site_ids if self.visibility is not None else None
        if site_ids is not None:
            conditions.append(t.c.id.in_(site_ids) if site_ids else false())
        return conditions


class SectorRepository(AuthRepository[Sector]):
    model = Sector


class SiteAccessRepository(AuthRepository[SiteUserAccess]):
    model = SiteUserAccess


class GroupRepository(AuthRepository[Group]):
    model = Group


async def granted_site_ids(session: AsyncSession, user_id: int) -> list[int]:
    """The sites a user holds a grant on."""
    query = select(SiteUserAccess.site_id).where(SiteUserAccess.user_id == user_id)
    return sorted((await session.execute(query)).scalars())


async def count_sites(session: AsyncSession, account_id: int) -> int:
    return int(
        (
            await session.execute(
                select(func.count()).select_from(Site).where(Site.account_id == account_id)
            )
        ).scalar_one()
    )


async def site_sectors(
    session: AsyncSession, site_id: int, *, for_update: bool = False
) -> list[Sector]:
    query = select(Sector).where(Sector.site_id == site_id).order_by(Sector.id)
    if for_update:
        query = query.with_for_update()
    return list((await session.execute(query)).scalars())


async def count_active_sectors(session: AsyncSession, site_id: int) -> int:
    return int(
        (
            await session.execute(
                select(func.count())
                .select_from(Sector)
                .where(Sector.site_id == site_id, Sector.is_active.is_(True))
            )
        ).scalar_one()
    )


async def site_access_row(
    session: AsyncSession, user_id: int, site_id: int
) -> SiteUserAccess | None:
    return (
        await session.execute(
            select(SiteUserAccess).where(
                SiteUserAccess.user_id == user_id, SiteUserAccess.site_id == site_id
            )
        )
    ).scalar_one_or_none()


async def site_access_for_site(session: AsyncSession, site_id: int) -> list[SiteUserAccess]:
    return list(
        (
            await session.execute(select(SiteUserAccess).where(SiteUserAccess.site_id == site_id))
        ).scalars()
    )


async def site_access_for_user(session: AsyncSession, user_id: int) -> list[SiteUserAccess]:
    return list(
        (
            await session.execute(select(SiteUserAccess).where(SiteUserAccess.user_id == user_id))
        ).scalars()
    )


async def group_members(session: AsyncSession, group_ids: Sequence[int]) -> dict[int, list[int]]:
    members: dict[int, list[int]] = {g: [] for g in group_ids}
    if group_ids:
        rows = await session.execute(
            select(GroupMember.group_id, GroupMember.user_id)
            .where(GroupMember.group_id.in_(list(group_ids)))
            .order_by(GroupMember.user_id)
        )
        for group_id, user_id in rows:
            members[group_id].append(user_id)
    return members


async def set_group_members(session: AsyncSession, group: Group, user_ids: Sequence[int]) -> None:
    await session.execute(delete(GroupMember).where(GroupMember.group_id == group.id))
    if user_ids:
        await session.execute(
            pg_insert(GroupMember).values(
                [
                    {"group_id": group.id, "user_id": u, "account_id": group.account_id}
                    for u in sorted(set(user_ids))
                ]
            )
        )
