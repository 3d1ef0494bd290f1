"""The catalogue every account shares: plans, industries and their sectors, and the seed
keyword library with its all-or-nothing CSV import."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from libs.common.events import utcnow
from libs.common.messages import drf_message
from libs.common.problems import NotFound, ValidationFailed
from libs.common.repository import ListQuery, Page
from libs.common.security import Principal
from libs.common.uow import UnitOfWork
from services.auth import events
from services.auth import repository as repo
from services.auth import schemas as s
from services.auth.models import Industry, IndustrySector, Plan, SeedKeyword
from services.auth.repository import catalogue as catalogue_repo
from services.auth.repository.catalogue import (
    IndustryRepository,
    PlanRepository,
    SeedKeywordRepository,
)
from services.auth.service.common import staff_only

# --- plans and subscriptions -----------------------------------------------------------------


async def create_plan(uow: UnitOfWork, actor: Principal, data: s.PlanCreate) -> Plan:
    staff_only(actor)
    if await catalogue_repo.plan_by_slug(uow.session, data.slug):
        raise ValidationFailed(errors={"slug": ["A plan with this slug already exists."]})
    plan = Plan(**data.model_dump())
    await repo.add(uow.session, plan)
    await uow.publish(events.plan_event("created", plan))
    return plan


async def update_plan(uow: UnitOfWork, actor: Principal, plan_id: int, data: s.PlanUpdate) -> Plan:
    staff_only(actor)
    plan = await repo.get(uow.session, Plan, plan_id)
    if plan is None:
        raise NotFound("Plan not found.")
    for key, value in data.model_dump(exclude_unset=True).items():
        setattr(plan, key, value)
    plan.updated_at = utcnow()
    await repo.add(uow.session, plan)
    await uow.publish(events.plan_event("updated", plan))
    return plan


# --- catalogue ------------------------------------------------------------------------------


async def list_plans(uow: UnitOfWork, query: ListQuery[Any]) -> Page[s.PlanPublic]:
    """The plans on sale (the public list)."""
    page = await PlanRepository(uow.session).page(query)
    return Page(page.count, [s.PlanPublic.model_validate(p) for p in page.rows])


async def get_plan(uow: UnitOfWork, plan_id: int) -> Plan:
    plan = await PlanRepository(uow.session).get(plan_id)
    if plan is None:
        raise NotFound("Plan not found.")
    return plan


async def list_industries(uow: UnitOfWork, query: ListQuery[Any]) -> Page[s.IndustryPublic]:
    page = await IndustryRepository(uow.session).page(query)
    return Page(page.count, await industries_public(uow, page.rows))


async def get_industry(uow: UnitOfWork, industry_id: int) -> s.IndustryPublic:
    industry = await IndustryRepository(uow.session).get(industry_id)
    if industry is None:
        raise NotFound("Industry not found.")
    return (await industries_public(uow, [industry]))[0]


async def industries_public(
    uow: UnitOfWork, industries: Sequence[Industry]
) -> list[s.IndustryPublic]:
    sectors = await catalogue_repo.industry_sectors(uow.session, [i.id for i in industries if i.id])
    by_industry: dict[int, list[s.IndustrySectorPublic]] = {}
    for sector in sectors:
        by_industry.setdefault(sector.industry_id, []).append(
            s.IndustrySectorPublic.model_validate(sector)
        )
    return [
        s.IndustryPublic.model_validate(i).model_copy(
            update={"sectors": by_industry.get(i.id or 0, [])}
        )
        for i in industries
    ]


async def upsert_industry(
    uow: UnitOfWork, *, name: str, slug: str, description: str = ""
) -> tuple[Industry, bool]:
    industry = await catalogue_repo.industry_by_slug(uow.session, slug)
    if industry is not None:
        return industry, False
    industry = Industry(name=name, slug=slug, description=description)
    await repo.add(uow.session, industry)
    return industry, True


async def upsert_industry_sector(
    uow: UnitOfWork, industry: Industry, *, name: str, slug: str, description: str = ""
) -> tuple[IndustrySector, bool]:
    sector = await catalogue_repo.industry_sector_by_slug(uow.session, industry.id or 0, slug)
    if sector is not None:
        return sector, False
    sector = IndustrySector(
        industry_id=industry.id or 0, name=name, slug=slug, description=description
    )
    await repo.add(uow.session, sector)
    return sector, True


def seed_keyword_public(row: Any) -> s.SeedKeywordPublic:
    kw, industry, sector = row
    return s.SeedKeywordPublic(
        id=kw.id,
        keyword=kw.keyword,
        industry_id=industry.id,
        industry_slug=industry.slug,
        industry_name=industry.name,
        sector_id=sector.id,
        sector_slug=sector.slug,
        sector_name=sector.name,
        volume=kw.volume,
        difficulty=kw.difficulty,
        intent=kw.intent,
        country=kw.country,
        is_active=kw.is_active,
    )


async def list_seed_keywords(uow: UnitOfWork, query: ListQuery[Any]) -> Page[s.SeedKeywordPublic]:
    page = await SeedKeywordRepository(uow.session).page(query)
    return Page(page.count, [seed_keyword_public(r) for r in page.rows])


async def get_seed_keyword(uow: UnitOfWork, keyword_id: int) -> s.SeedKeywordPublic:
    rows = await catalogue_repo.seed_keywords_by_ids(uow.session, [keyword_id])
    if not rows:
        raise NotFound("Seed keyword not found.")
    return seed_keyword_public(rows[0])


def parse_seed_keyword_csv(content: bytes | str) -> list[tuple[int, dict[str, str]]]:
    """Rows of a seed keyword CSV with their line numbers (the header is line 1)."""
    try:
        text_content = content.decode("utf-8-sig") if isinstance(content, bytes) else content
    except UnicodeDecodeError as exc:
        raise ValidationFailed.field("file", "The file is not UTF-8 text.") from exc
    reader = csv.DictReader(io.StringIO(text_content))
    required = {"keyword", "industry", "sector"}
    if reader.fieldnames is None or not required <= {f.strip() for f in reader.fieldnames}:
        raise ValidationFailed(
            errors={
                "file": [
                    "CSV must have a header with at least keyword, industry, sector "
                    "(optional: volume, difficulty, intent, country, is_active)."
                ]
            }
        )
    return [
        (reader.line_num, {k.strip(): (v or "").strip() for k, v in row.items() if k})
        for row in reader
    ]


def _csv_bool(value: str) -> bool | str:
    lowered = value.strip().lower()
    if lowered in ("", "1", "true", "yes", "y", "t"):
        return True
    if lowered in ("0", "false", "no", "n", "f"):
        return False
    return value


async def import_seed_keywords(
    uow: UnitOfWork, rows: Iterable[tuple[int, dict[str, str]]]
) -> s.ImportReport:
    """Create or update seed keywords from CSV rows. All or nothing: any bad row answers
    400 naming every bad line, and nothing is written."""
    industries, sectors = await catalogue_repo.all_industries_and_sectors(uow.session)
    errors: dict[str, list[str]] = {}
    parsed: dict[tuple[int, str, str], tuple[s.SeedKeywordRow, Industry, IndustrySector]] = {}
    for line, raw in rows:
        data = {k: v for k, v in raw.items() if v != "" or k in ("keyword", "industry", "sector")}
        if "is_active" in data:
            data["is_active"] = _csv_bool(data["is_active"])  # type: ignore[assignment]
        try:
            row = s.SeedKeywordRow.model_validate(data)
        except ValidationError as exc:
            errors[f"line {line}"] = [
                f"{'.'.join(map(str, e['loc'])) or 'row'}: {drf_message(e)}" for e in exc.errors()
            ]
            continue
        industry = industries.get(row.industry)
        sector = sectors.get((industry.id or 0, row.sector)) if industry else None
        if industry is None or sector is None:
            errors[f"line {line}"] = [f"Unknown industry/sector {row.industry}/{row.sector}."]
            continue
        keyword = " ".join(row.keyword.lower().split())
        parsed[(sector.id or 0, keyword, row.country)] = (
            row.model_copy(update={"keyword": keyword}),
            industry,
            sector,
        )
    if errors:
        raise ValidationFailed("Some rows could not be imported.", errors=errors)
    existing = await catalogue_repo.seed_keywords_matching(uow.session, list(parsed))
    created = updated = unchanged = 0
    pending: list[tuple[SeedKeyword, Industry, IndustrySector]] = []
    for key, (row, industry, sector) in parsed.items():
        values: dict[str, Any] = {
            "volume": row.volume,
            "difficulty": row.difficulty,
            "intent": row.intent,
            "is_active": row.is_active,
        }
        kw = existing.get(key)
        if kw is None:
            kw = SeedKeyword(
                keyword=row.keyword,
                industry_id=industry.id or 0,
                sector_id=sector.id or 0,
                country=row.country,
                volume=row.volume,
                difficulty=row.difficulty,
                intent=row.intent,
                is_active=row.is_active,
            )
            uow.session.add(kw)
            pending.append((kw, industry, sector))
            created += 1
        elif any(getattr(kw, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(kw, k, v)
            kw.updated_at = utcnow()
            uow.session.add(kw)
            await uow.publish(events.seed_keyword_event("updated", kw, industry, sector))
            updated += 1
        else:
            unchanged += 1
    await uow.session.flush()
    if pending:
        await uow.publish(
            *(events.seed_keyword_event("created", kw, i, sec) for kw, i, sec in pending)
        )
    return s.ImportReport(created=created, updated=updated, unchanged=unchanged, errors={})


async def seed_keywords_data(uow: UnitOfWork, ids: Sequence[int]) -> list[dict[str, Any]]:
    rows = await catalogue_repo.seed_keywords_by_ids(uow.session, ids)
    return [events.seed_keyword_data(kw, i, sec) for kw, i, sec in rows]
