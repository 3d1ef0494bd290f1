"""What auth publishes: one builder per event type, `data` exactly as docs/contracts.md
lists it. Builders take rows (and what the row alone does not know) and return Events."""

from __future__ import annotations

from typing import Any

from libs.common.events import Event
from services.auth.models import (
    Account,
    Industry,
    IndustrySector,
    Plan,
    Sector,
    SeedKeyword,
    Site,
    Subscription,
    User,
)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def account_data(account: Account, plan: Plan) -> dict[str, Any]:
    return {
        "account_id": account.id,
        "name": account.name,
        "slug": account.slug,
        "status": account.status,
        "owner_user_id": account.owner_user_id,
        "plan_id": plan.id,
        "plan_slug": plan.slug,
    }


def account_event(verb: str, account: Account, plan: Plan) -> Event:
    return Event(
        type=f"auth.account.{verb}", account_id=account.id, data=account_data(account, plan)
    )


def plan_data(plan: Plan) -> dict[str, Any]:
    return {
        "id": plan.id,
        "name": plan.name,
        "slug": plan.slug,
        "price": str(plan.price),
        "billing_cycle": plan.billing_cycle,
        "included_credits": plan.included_credits,
        "max_users": plan.max_users,
        "max_sites": plan.max_sites,
        "max_sectors_per_site": plan.max_sectors_per_site,
        "max_keywords": plan.max_keywords,
        "max_author_profiles": plan.max_author_profiles,
        "features": list(plan.features),
        "is_active": plan.is_active,
    }


def plan_event(verb: str, plan: Plan) -> Event:
    return Event(type=f"auth.plan.{verb}", account_id=None, data=plan_data(plan))


def subscription_event(verb: str, sub: Subscription, plan: Plan) -> Event:
    return Event(
        type=f"auth.subscription.{verb}",
        account_id=sub.account_id,
        data={
            "id": sub.id,
            "account_id": sub.account_id,
            "plan_id": plan.id,
            "plan_slug": plan.slug,
            "included_credits": plan.included_credits,
            "status": sub.status,
            "current_period_start": _iso(sub.current_period_start),
            "current_period_end": _iso(sub.current_period_end),
        },
    )


def user_event(verb: str, user: User) -> Event:
    return Event(
        type=f"auth.user.{verb}",
        account_id=user.account_id,
        data={
            "user_id": user.id,
            "account_id": user.account_id,
            "email": user.email,
            "role": user.role,
            "is_active": user.is_active,
        },
    )


def site_data(site: Site, industry: Industry | None) -> dict[str, Any]:
    return {
        "id": site.id,
        "account_id": site.account_id,
        "name": site.name,
        "slug": site.slug,
        "url": site.url,
        "industry_id": site.industry_id,
        "industry_slug": industry.slug if industry else None,
        "is_active": site.is_active,
    }


def site_event(verb: str, site: Site, industry: Industry | None) -> Event:
    return Event(
        type=f"auth.site.{verb}", account_id=site.account_id, data=site_data(site, industry)
    )


def sector_data(sector: Sector) -> dict[str, Any]:
    return {
        "id": sector.id,
        "account_id": sector.account_id,
        "site_id": sector.site_id,
        "name": sector.name,
        "slug": sector.slug,
        "industry_sector_id": sector.industry_sector_id,
        "is_active": sector.is_active,
    }


def sector_event(verb: str, sector: Sector) -> Event:
    return Event(type=f"auth.sector.{verb}", account_id=sector.account_id, data=sector_data(sector))


def site_access_event(verb: str, account_id: int, user_id: int, site_id: int) -> Event:
    return Event(
        type=f"auth.site_access.{verb}",
        account_id=account_id,
        data={"account_id": account_id, "user_id": user_id, "site_id": site_id},
    )


def seed_keyword_data(
    kw: SeedKeyword, industry: Industry, sector: IndustrySector
) -> dict[str, Any]:
    return {
        "id": kw.id,
        "keyword": kw.keyword,
        "industry_id": industry.id,
        "industry_slug": industry.slug,
        "sector_id": sector.id,
        "sector_slug": sector.slug,
        "volume": kw.volume,
        "difficulty": kw.difficulty,
        "intent": kw.intent,
        "country": kw.country,
        "is_active": kw.is_active,
    }


def seed_keyword_event(
    verb: str, kw: SeedKeyword, industry: Industry, sector: IndustrySector
) -> Event:
    return Event(
        type=f"auth.seed_keyword.{verb}",
        account_id=None,
        data=seed_keyword_data(kw, industry, sector),
    )
