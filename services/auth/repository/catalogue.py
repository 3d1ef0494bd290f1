# SQLModel columns compare as `bool` to the type checker; they are SQL expressions.
# mypy: disable-error-code="arg-type, union-attr, attr-defined, operator"
# mypy: disable-error-code="return-value, call-overload"
"""The shared catalogue: plans, industries and their sectors, seed keywords. Global tables
(no tenant); public lists show active rows only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.repository import FilterSet, Repository, table_of
from services.auth.models import Industry, IndustrySector, Plan, SeedKeyword
from services.auth.repository import AuthRepository

_INDUSTRIES = table_of(Industry)
_SECTORS = table_of(IndustrySector)


class _ActiveOnly:
    """Scope of the public lists: active rows."""

    table: ClassVar[Any]

    def scope(self, t: Any = None) -> list[ColumnElement[bool]]:
        t = self.table if t is None else t
        return [*super().scope(t), t.c.is_active.is_(True)]  # type: ignore[misc]


class PlanRepository(_ActiveOnly, AuthRepository[Plan]):
    model = Plan
    tenant_column = None


class IndustryRepository(_ActiveOnly, AuthRepository[Industry]):
    model = Industry
    tenant_column = None


class SeedKeywordRepository(_ActiveOnly, Repository[Any]):
    """Active seed keywords, each row `(SeedKeyword, Industry, IndustrySector)`: filters
    name the industry and sector by id or slug."""

    model = SeedKeyword
    tenant_column = None

    def _joined(self) -> Any:
        return self.table.join(_INDUSTRIES, _INDUSTRIES.c.id == self.table.c.industry_id).join(
            _SECTORS, _SECTORS.c.id == self.table.c.sector_id
        )

    def select(self) -> Any:
        return select(SeedKeyword, Industry, IndustrySector).select_from(self._joined())

    async def fetch(self, statement: Any) -> list[Any]:
        return list((await self.session.execute(statement)).all())

    async def count(self, filters: FilterSet) -> int:
        query = (
            select(func.count())
            .select_from(self._joined())
            .where(*self.scope(), *filters.conditions(self.table))
        )
        return int((await self.session.execute(query)).scalar_one())


async def plan_by_slug(session: AsyncSession, slug: str) -> Plan | None:
    return (await session.execute(select(Plan).where(Plan.slug == slug))).scalar_one_or_none()


async def plans_by_id(session: AsyncSession, ids: Sequence[int]) -> dict[int, Plan]:
    if not ids:
        return {}
    rows = (await session.execute(select(Plan).where(Plan.id.in_(set(ids))))).scalars()
    return {p.id: p for p in rows if p.id is not None}


async def industry_by_slug(session: AsyncSession, slug: str) -> Industry | None:
    return (
        await session.execute(select(Industry).where(Industry.slug == slug))
    ).scalar_one_or_none()


async def industry_sectors(
    session: AsyncSession, industry_ids: Sequence[int]
) -> list[IndustrySector]:
    if not industry_ids:
        return []
    return list(
        (
            await session.execute(
                select(IndustrySector)
                .where(
                    IndustrySector.industry_id.in_(list(industry_ids)),
                    IndustrySector.is_active.is_(True),
                )
                .order_by(IndustrySector.name)
            )
        ).scalars()
    )


async def industry_sector_by_slug(
    session: AsyncSession, industry_id: int, slug: str
) -> IndustrySector | None:
    return (
        await session.execute(
            select(IndustrySector).where(
                IndustrySector.industry_id == industry_id, IndustrySector.slug == slug
            )
        )
    ).scalar_one_or_none()


async def all_industries_and_sectors(
    session: AsyncSession,
) -> tuple[dict[str, Industry], dict[tuple[int, str], IndustrySector]]:
    industries = {i.slug: i for i in (await session.execute(select(Industry))).scalars()}
    sectors = {
        (s.industry_id, s.slug): s
        for s in (await session.execute(select(IndustrySector))).scalars()
    }
    return industries, sectors


async def seed_keywords_by_ids(session: AsyncSession, ids: Sequence[int]) -> list[Any]:
    if not ids:
        return []
    return list(
        (
            await session.execute(
                select(SeedKeyword, Industry, IndustrySector)
                .join(Industry, Industry.id == SeedKeyword.industry_id)
                .join(IndustrySector, IndustrySector.id == SeedKeyword.sector_id)
                .where(SeedKeyword.id.in_(list(ids)))
                .order_by(SeedKeyword.id)
            )
        ).all()
    )


async def seed_keywords_matching(
    session: AsyncSession, keys: Sequence[tuple[int, str, str]]
) -> dict[tuple[int, str, str], SeedKeyword]:
    """Existing keywords by (sector id, keyword, country), for an import's upsert."""
    found: dict[tuple[int, str, str], SeedKeyword] = {}
    sector_ids = sorted({k[0] for k in keys})
    if not sector_ids:
        return found
    rows = (
        await session.execute(
            select(SeedKeyword).where(
                SeedKeyword.sector_id.in_(sector_ids),
                SeedKeyword.keyword.in_(sorted({k[1] for k in keys})),
            )
        )
    ).scalars()
    for kw in rows:
        found[(kw.sector_id, kw.keyword, kw.country)] = kw
    return found
