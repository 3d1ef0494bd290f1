"""Platform seed data: plans, industries and sectors, the seed keyword library, and a
demo account. Idempotent; goes through the service layer so every change is published
through the outbox like any other."""

from __future__ import annotations

import asyncio
import csv
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

from libs.common.db import Database, TenantScope
from libs.common.security import Principal
from libs.common.uow import UnitOfWork, unit_of_work
from services.auth import repository as repo
from services.auth import schemas as s
from services.auth.repository import catalogue as catalogue_repo
from services.auth.repository import sessions as sessions_repo
from services.auth.service import accounts, catalogue, sites

SEED_DATA_DIR = Path(__file__).parent / "seed_data"
# A domain people recognise; `.local` would be refused by registration's email checks.
DEMO_EMAIL = "demo@igny8.com"

PLANS: list[dict[str, Any]] = [
    {
        "name": "Free",
        "slug": "free",
        "price": Decimal("0"),
        "included_credits": 2000,
        "max_users": 3,
        "max_sites": 2,
        "max_sectors_per_site": 5,
        "max_keywords": 2000,
        "max_author_profiles": 2,
        "features": ["planner", "writer"],
    },
    {
        "name": "Starter",
        "slug": "starter",
        "price": Decimal("29"),
        "included_credits": 10000,
        "max_users": 5,
        "max_sites": 5,
        "max_sectors_per_site": 5,
        "max_keywords": 10000,
        "max_author_profiles": 5,
        "features": ["planner", "writer", "images", "wordpress"],
    },
    {
        "name": "Growth",
        "slug": "growth",
        "price": Decimal("99"),
        "included_credits": 50000,
        "max_users": 15,
        "max_sites": 20,
        "max_sectors_per_site": 5,
        "max_keywords": 50000,
        "max_author_profiles": 15,
        "features": ["planner", "writer", "images", "wordpress", "automation"],
    },
    {
        "name": "Scale",
        "slug": "scale",
        "price": Decimal("299"),
        "included_credits": 200000,
        "max_users": 50,
        "max_sites": 100,
        "max_sectors_per_site": 5,
        "max_keywords": 250000,
        "max_author_profiles": 50,
        "features": ["planner", "writer", "images", "wordpress", "automation", "priority_support"],
    },
]

STAFF = Principal(user_id=0, account_id=0, role="developer")


async def seed_plans(uow: UnitOfWork) -> int:
    created = 0
    for spec in PLANS:
        if await catalogue_repo.plan_by_slug(uow.session, spec["slug"]) is None:
            await catalogue.create_plan(uow, STAFF, s.PlanCreate(**spec))
            created += 1
    return created


async def seed_industries(uow: UnitOfWork, path: Path) -> tuple[int, int]:
    """industries.csv: industry,industry_slug,sector,sector_slug,description."""
    industries = sectors = 0
    content = await asyncio.to_thread(path.read_text, encoding="utf-8-sig")
    for row in csv.DictReader(io.StringIO(content)):
        industry, new_industry = await catalogue.upsert_industry(
            uow, name=row["industry"].strip(), slug=row["industry_slug"].strip()
        )
        industries += new_industry
        if (row.get("sector_slug") or "").strip():
            _sector, new_sector = await catalogue.upsert_industry_sector(
                uow,
                industry,
                name=row["sector"].strip(),
                slug=row["sector_slug"].strip(),
                description=(row.get("description") or "").strip(),
            )
            sectors += new_sector
    return industries, sectors


async def seed_keywords(uow: UnitOfWork, path: Path) -> int:
    rows = catalogue.parse_seed_keyword_csv(await asyncio.to_thread(path.read_bytes))
    report = await catalogue.import_seed_keywords(uow, rows)
    return report.created


async def seed_demo(uow: UnitOfWork, email: str, password: str) -> int:
    """The demo owner, a demo site, and two sectors of the first industry."""
    if await sessions_repo.user_by_email_any_tenant(uow.session, email) is not None:
        return 0
    account, owner, _plan = await accounts.open_account(
        uow, name="Demo Agency", email=email, password=password, username="demo"
    )
    actor = Principal(user_id=owner.id or 0, account_id=account.id or 0, role="owner")
    industries, sectors = await catalogue_repo.all_industries_and_sectors(uow.session)
    industry = next(iter(sorted(industries.values(), key=lambda i: i.slug)), None)
    site = await sites.create_site(
        uow,
        actor,
        s.SiteCreate(
            name="Demo Site",
            url="https://demo.igny8.local",
            industry_id=industry.id if industry else None,
        ),
    )
    if industry is not None:
        slugs = sorted(slug for (ind, slug) in sectors if ind == industry.id)[:2]
        if slugs:
            await sites.select_sectors(
                uow,
                actor,
                site.id or 0,
                s.SelectSectorsRequest(industry_slug=industry.slug, sector_slugs=slugs),
            )
    return 1


async def seed_platform(
    db: Database,
    *,
    demo_email: str = DEMO_EMAIL,
    demo_password: str = "demo-password",  # noqa: S107 - the documented demo login
    data_dir: Path = SEED_DATA_DIR,
) -> dict[str, int]:
    """Create what is missing; returns how many of each were created this time."""
    counts = {"plans": 0, "industries": 0, "sectors": 0, "seed_keywords": 0, "accounts": 0}
    async with unit_of_work(db, TenantScope.system()) as uow:
        await repo.lock(uow.session, "auth-seed")
        counts["plans"] = await seed_plans(uow)
        if (data_dir / "industries.csv").exists():
            counts["industries"], counts["sectors"] = await seed_industries(
                uow, data_dir / "industries.csv"
            )
        if (data_dir / "seed_keywords.csv").exists():
            counts["seed_keywords"] = await seed_keywords(uow, data_dir / "seed_keywords.csv")
        counts["accounts"] = await seed_demo(uow, demo_email, demo_password)
    return counts
