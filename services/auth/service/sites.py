"""Tenancy, where: sites (with the WordPress plugin's API key), sectors, site access
and groups. Owners and admins see every site of their account, editors and viewers the
ones granted to them, a site key only its own site."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from libs.common.events import utcnow
from libs.common.problems import NotFound, PermissionDenied, ValidationFailed
from libs.common.repository import ListQuery, Page, Visibility
from libs.common.security import Principal
from libs.common.uow import UnitOfWork
from services.auth import events, passwords, tokens
from services.auth import repository as repo
from services.auth import schemas as s
from services.auth.models import (
    AuthSession,
    Group,
    Industry,
    IndustrySector,
    Sector,
    Site,
    SiteUserAccess,
    User,
)
from services.auth.repository import accounts as accounts_repo
from services.auth.repository import catalogue as catalogue_repo
from services.auth.repository import sessions as sessions_repo
from services.auth.repository import sites as sites_repo
from services.auth.repository import visibility_of
from services.auth.repository.sites import (
    GroupRepository,
    SectorRepository,
    SiteAccessRepository,
    SiteRepository,
)
from services.auth.service.accounts import get_user, insert_user
from services.auth.service.common import (
    Outcome,
    account_and_plan,
    check_role,
    sees_all_sites,
    unique_slug,
)

API_KEY_SESSION_TTL = timedelta(days=3650)

# --- sites -----------------------------------------------------------------------------------


async def site_visibility(uow: UnitOfWork, actor: Principal) -> Visibility:
    """The sites the actor may see: a site key's one site, every site for owners and
    admins, the granted ones for editors and viewers."""
    accounts = visibility_of(actor)
    if actor.site_id is not None:
        return Visibility(accounts.account_id, (actor.site_id,))
    if sees_all_sites(actor):
        return accounts
    granted = await sites_repo.granted_site_ids(uow.session, actor.user_id)
    return Visibility(accounts.account_id, tuple(granted))


async def list_sites(
    uow: UnitOfWork, actor: Principal, query: ListQuery[Any]
) -> Page[s.SitePublic]:
    sites = SiteRepository(uow.session, await site_visibility(uow, actor))
    page = await sites.page(query)
    return Page(page.count, await site_public(uow, page.rows))


async def get_site(
    uow: UnitOfWork,
    actor: Principal,
    site_id: int,
    *,
    write: bool = False,
    for_update: bool = False,
) -> Site:
    """Tenant, then site access, then role: a site the caller cannot see is a 404."""
    sites = SiteRepository(uow.session, await site_visibility(uow, actor))
    site = await (sites.get_for_update(site_id) if for_update else sites.get(site_id))
    if site is None:
        raise NotFound("Site not found.")
    if write:
        check_role(actor, "editor")
    return site


async def _industry(uow: UnitOfWork, industry_id: int | None) -> Industry | None:
    if industry_id is None:
        return None
    industry = await repo.get(uow.session, Industry, industry_id)
    if industry is None:
        raise ValidationFailed(errors={"industry_id": ["Unknown industry."]})
    return industry


async def site_public(uow: UnitOfWork, sites: Sequence[Site]) -> list[s.SitePublic]:
    industries: dict[int, Industry] = {}
    for site in sites:
        if site.industry_id and site.industry_id not in industries:
            found = await repo.get(uow.session, Industry, site.industry_id)
            if found:
                industries[site.industry_id] = found
    return [
        s.SitePublic.model_validate(site).model_copy(
            update={
                "industry_slug": industries[site.industry_id].slug
                if site.industry_id in industries
                else None,
                "has_api_key": site.api_key_hash is not None,
            }
        )
        for site in sites
    ]


async def create_site(uow: UnitOfWork, actor: Principal, data: s.SiteCreate) -> Site:
    check_role(actor, "editor")
    industry = await _industry(uow, data.industry_id)
    await repo.lock(uow.session, f"auth-sites:{actor.account_id}")
    _account_row, plan = await account_and_plan(uow, actor.account_id)
    if await sites_repo.count_sites(uow.session, actor.account_id) >= plan.max_sites:
        raise PermissionDenied(
            f"Plan limit reached: the {plan.name} plan allows {plan.max_sites} sites (max_sites)."
        )
    site = Site(
        account_id=actor.account_id,
        name=data.name,
        url=data.url,
        description=data.description,
        industry_id=data.industry_id,
        is_active=data.is_active,
        slug=await unique_slug(uow, Site, data.name, account_id=actor.account_id),
    )
    await repo.add(uow.session, site)
    await uow.publish(events.site_event("created", site, industry))
    if not sees_all_sites(actor):
        # An editor who creates a site can work on it.
        await _grant(uow, actor.account_id, actor.user_id, site.id or 0, actor.user_id)
    return site


async def update_site(
    uow: UnitOfWork, actor: Principal, site_id: int, data: s.SiteUpdate | dict[str, Any]
) -> Site:
    site = await get_site(uow, actor, site_id, write=True, for_update=True)
    changes = data if isinstance(data, dict) else data.model_dump(exclude_unset=True)
    industry = await _industry(uow, changes.get("industry_id", site.industry_id))
    for key, value in changes.items():
        if value is not None or key in ("url", "industry_id"):
            setattr(site, key, value)
    site.updated_at = utcnow()
    await repo.add(uow.session, site)
    await uow.publish(events.site_event("updated", site, industry))
    return site


async def delete_site(uow: UnitOfWork, actor: Principal, site_id: int) -> list[str]:
    site = await get_site(uow, actor, site_id, write=True)
    industry = await _industry(uow, site.industry_id)
    for sector in await sites_repo.site_sectors(uow.session, site_id):
        await uow.publish(events.sector_event("deleted", sector))
    for access in await sites_repo.site_access_for_site(uow.session, site_id):
        await uow.publish(
            events.site_access_event("revoked", access.account_id, access.user_id, access.site_id)
        )
    revoked = []
    if site.api_key_session_id:
        revoked = [site.api_key_session_id]
        await sessions_repo.revoke_session_rows(uow.session, revoked, "site_deleted", utcnow())
    await uow.publish(events.site_event("deleted", site, industry))
    await repo.remove(uow.session, site)
    return revoked


async def generate_api_key(uow: UnitOfWork, actor: Principal, site_id: int) -> Outcome:
    """A new key for the WordPress plugin, shown once; the previous key and every token
    minted from it stop working."""
    check_role(actor, "admin")
    site = await get_site(uow, actor, site_id, for_update=True)
    bot = await sessions_repo.bot_user(uow.session, site.account_id)
    if bot is None:
        account, _ = await account_and_plan(uow, site.account_id)
        bot = User(
            account_id=site.account_id,
            email=f"bot+{account.slug}@system.igny8.local",
            username=f"{account.slug}-bot",
            role="system_bot",
            password_hash=passwords.unusable_password_hash(),
        )
        await insert_user(uow, bot)
        await uow.publish(events.user_event("created", bot))
    revoked = []
    if site.api_key_session_id:
        revoked = [site.api_key_session_id]
        await sessions_repo.revoke_session_rows(uow.session, revoked, "api_key_rotated", utcnow())
    key = tokens.new_api_key()
    sid = tokens.new_session_id()
    await repo.add(
        uow.session,
        AuthSession(
            id=sid,
            account_id=site.account_id,
            user_id=bot.id or 0,
            kind="api_key",
            expires_at=utcnow() + API_KEY_SESSION_TTL,
        ),
    )
    site.api_key_hash, site.api_key_prefix = tokens.digest(key), key[:12]
    site.api_key_session_id, site.updated_at = sid, utcnow()
    await repo.add(uow.session, site)
    return Outcome(key, revoked)


async def select_sectors(
    uow: UnitOfWork, actor: Principal, site_id: int, data: s.SelectSectorsRequest
) -> list[Sector]:
    """Make exactly these sectors of `industry_slug` active on the site (creating the
    missing ones within the plan's limit) and deactivate the others."""
    site = await get_site(uow, actor, site_id, write=True, for_update=True)
    industry = await catalogue_repo.industry_by_slug(uow.session, data.industry_slug)
    if industry is None or not industry.is_active:
        raise ValidationFailed(errors={"industry_slug": ["Unknown industry."]})
    wanted: list[IndustrySector] = []
    unknown = []
    for slug in dict.fromkeys(data.sector_slugs):
        template = await catalogue_repo.industry_sector_by_slug(uow.session, industry.id or 0, slug)
        if template is None or not template.is_active:
            unknown.append(slug)
        else:
            wanted.append(template)
    if unknown:
        raise ValidationFailed(
            errors={
                "sector_slugs": [f"Unknown sector(s) in {industry.slug}: " + ", ".join(unknown)]
            }
        )
    _account_row, plan = await account_and_plan(uow, site.account_id)
    if len(wanted) > plan.max_sectors_per_site:
        raise ValidationFailed(
            errors={
                "sector_slugs": [
                    f"Your plan allows {plan.max_sectors_per_site} sectors per site "
                    f"(max_sectors_per_site)."
                ]
            }
        )
    if site.industry_id != industry.id:
        await update_site(uow, actor, site.id or 0, {"industry_id": industry.id})
    existing = {
        x.slug: x for x in await sites_repo.site_sectors(uow.session, site_id, for_update=True)
    }
    wanted_slugs = {t.slug for t in wanted}
    result: list[Sector] = []
    for sector in existing.values():
        if sector.is_active and sector.slug not in wanted_slugs:
            sector.is_active, sector.updated_at = False, utcnow()
            await repo.add(uow.session, sector)
            await uow.publish(events.sector_event("updated", sector))
    for template in wanted:
        found = existing.get(template.slug)
        if found is None:
            sector = Sector(
                account_id=site.account_id,
                site_id=site_id,
                name=template.name,
                slug=template.slug,
                industry_sector_id=template.id,
                description=template.description,
            )
            await repo.add(uow.session, sector)
            await uow.publish(events.sector_event("created", sector))
        else:
            sector = found
        if found is not None and (not sector.is_active or sector.industry_sector_id != template.id):
            sector.is_active, sector.industry_sector_id = True, template.id
            sector.updated_at = utcnow()
            await repo.add(uow.session, sector)
            await uow.publish(events.sector_event("updated", sector))
        result.append(sector)
    return result


# --- sectors -------------------------------------------------------------------------------


async def _enforce_sector_limit(uow: UnitOfWork, site: Site) -> None:
    await repo.lock(uow.session, f"auth-sectors:{site.id}")
    _account_row, plan = await account_and_plan(uow, site.account_id)
    if (
        await sites_repo.count_active_sectors(uow.session, site.id or 0)
        >= plan.max_sectors_per_site
    ):
        raise PermissionDenied(
            f"Plan limit reached: the {plan.name} plan allows "
            f"{plan.max_sectors_per_site} active sectors per site "
            f"(max_sectors_per_site)."
        )


async def get_sector(
    uow: UnitOfWork, actor: Principal, sector_id: int, *, write: bool = False
) -> Sector:
    """A sector of a site the actor sees (another's is a 404)."""
    sectors = SectorRepository(uow.session, await site_visibility(uow, actor))
    sector = await (sectors.get_for_update(sector_id) if write else sectors.get(sector_id))
    if sector is None:
        raise NotFound("Sector not found.")
    if write:
        check_role(actor, "editor")
    return sector


async def list_sectors(
    uow: UnitOfWork, actor: Principal, query: ListQuery[Any], *, site_id: int | None = None
) -> Page[s.SectorPublic]:
    """The sectors of the sites the actor sees, of one site (`site_id`, from the path, or
    the `site_id` filter): a site the actor does not see is a 404."""
    if site_id is not None:
        query = ListQuery(s.SectorFilters(site_id=site_id), query.ordering, query.page)
    filtered_site = query.filters.value("site_id")
    if filtered_site is not None:
        await get_site(uow, actor, filtered_site)
    sectors = SectorRepository(uow.session, await site_visibility(uow, actor))
    page = await sectors.page(query)
    return Page(page.count, [s.SectorPublic.model_validate(x) for x in page.rows])


async def create_sector(uow: UnitOfWork, actor: Principal, data: s.SectorCreate) -> Sector:
    site = await get_site(uow, actor, data.site_id, write=True)
    template = None
    if data.industry_sector_id is not None:
        template = await repo.get(uow.session, IndustrySector, data.industry_sector_id)
        if template is None:
            raise ValidationFailed(errors={"industry_sector_id": ["Unknown industry sector."]})
    # One writer of the site's sectors at a time: the limit and the slug are checked
    # against what the others committed.
    await repo.lock(uow.session, f"auth-sectors:{site.id}")
    if data.is_active:
        await _enforce_sector_limit(uow, site)
    slug = await unique_slug(uow, Sector, data.name, site_id=site.id)
    sector = Sector(
        account_id=site.account_id,
        site_id=site.id or 0,
        name=data.name,
        slug=slug,
        industry_sector_id=data.industry_sector_id,
        description=data.description,
        is_active=data.is_active,
    )
    await repo.add(uow.session, sector)
    await uow.publish(events.sector_event("created", sector))
    return sector


async def update_sector(
    uow: UnitOfWork, actor: Principal, sector_id: int, data: s.SectorUpdate
) -> Sector:
    sector = await get_sector(uow, actor, sector_id, write=True)
    changes = {k: v for k, v in data.model_dump(exclude_unset=True).items() if v is not None}
    if changes.get("is_active") and not sector.is_active:
        site = await repo.get(uow.session, Site, sector.site_id)
        assert site is not None
        await _enforce_sector_limit(uow, site)
    for key, value in changes.items():
        setattr(sector, key, value)
    sector.updated_at = utcnow()
    await repo.add(uow.session, sector)
    await uow.publish(events.sector_event("updated", sector))
    return sector


async def delete_sector(uow: UnitOfWork, actor: Principal, sector_id: int) -> None:
    sector = await get_sector(uow, actor, sector_id, write=True)
    await uow.publish(events.sector_event("deleted", sector))
    await repo.remove(uow.session, sector)


# --- site access and groups -------------------------------------------------------------------


async def _grant(
    uow: UnitOfWork, account_id: int, user_id: int, site_id: int, granted_by: int
) -> SiteUserAccess:
    await repo.lock(uow.session, f"auth-site-access:{user_id}:{site_id}")
    row = await sites_repo.site_access_row(uow.session, user_id, site_id)
    if row is not None:
        return row
    row = SiteUserAccess(
        account_id=account_id, user_id=user_id, site_id=site_id, granted_by_user_id=granted_by
    )
    await repo.add(uow.session, row)
    await uow.publish(events.site_access_event("granted", account_id, user_id, site_id))
    return row


async def list_site_access(
    uow: UnitOfWork, actor: Principal, query: ListQuery[Any]
) -> Page[s.SiteAccessPublic]:
    check_role(actor, "admin")
    page = await SiteAccessRepository(uow.session, visibility_of(actor)).page(query)
    return Page(page.count, [s.SiteAccessPublic.model_validate(x) for x in page.rows])


async def get_site_access(uow: UnitOfWork, actor: Principal, access_id: int) -> SiteUserAccess:
    check_role(actor, "admin")
    row = await SiteAccessRepository(uow.session, visibility_of(actor)).get(access_id)
    if row is None:
        raise NotFound("Site access not found.")
    return row


async def grant_site_access(
    uow: UnitOfWork, actor: Principal, data: s.SiteAccessCreate
) -> SiteUserAccess:
    check_role(actor, "admin")
    site = await get_site(uow, actor, data.site_id)
    user = await get_user(uow, actor, data.user_id)
    if user.account_id != site.account_id:
        raise ValidationFailed(errors={"user_id": ["User and site belong to different accounts."]})
    return await _grant(uow, site.account_id, user.id or 0, site.id or 0, actor.user_id)


async def revoke_site_access(uow: UnitOfWork, actor: Principal, access_id: int) -> None:
    row = await get_site_access(uow, actor, access_id)
    await uow.publish(events.site_access_event("revoked", row.account_id, row.user_id, row.site_id))
    await repo.remove(uow.session, row)


async def list_groups(
    uow: UnitOfWork, actor: Principal, query: ListQuery[Any]
) -> Page[s.GroupPublic]:
    check_role(actor, "admin")
    page = await GroupRepository(uow.session, visibility_of(actor)).page(query)
    return Page(page.count, await group_public(uow, page.rows))


async def group_public(uow: UnitOfWork, groups: Sequence[Group]) -> list[s.GroupPublic]:
    members = await sites_repo.group_members(uow.session, [g.id for g in groups if g.id])
    return [
        s.GroupPublic.model_validate(g).model_copy(update={"user_ids": members[g.id or 0]})
        for g in groups
    ]


async def _members(uow: UnitOfWork, account_id: int, user_ids: Sequence[int]) -> list[int]:
    found = await accounts_repo.user_ids_in_account(uow.session, account_id, user_ids)
    missing = sorted(set(user_ids) - found)
    if missing:
        raise ValidationFailed(errors={"user_ids": [f"Unknown user(s): {missing}"]})
    return sorted(found)


async def get_group(uow: UnitOfWork, actor: Principal, group_id: int) -> Group:
    check_role(actor, "admin")
    group = await GroupRepository(uow.session, visibility_of(actor)).get(group_id)
    if group is None:
        raise NotFound("Group not found.")
    return group


async def save_group(
    uow: UnitOfWork,
    actor: Principal,
    data: s.GroupCreate | s.GroupUpdate,
    group_id: int | None = None,
) -> Group:
    check_role(actor, "admin")
    group = (
        Group(account_id=actor.account_id, name="")
        if group_id is None
        else await get_group(uow, actor, group_id)
    )
    changes = data.model_dump(exclude_unset=True)
    user_ids = changes.pop("user_ids", None)
    for key, value in changes.items():
        if value is not None:
            setattr(group, key, value)
    group.updated_at = utcnow()
    try:
        async with uow.session.begin_nested():
            await repo.add(uow.session, group)
    except IntegrityError as exc:
        raise ValidationFailed(errors={"name": ["A group with this name already exists."]}) from exc
    if user_ids is not None:
        await sites_repo.set_group_members(
            uow.session, group, await _members(uow, group.account_id, user_ids)
        )
    return group


async def delete_group(uow: UnitOfWork, actor: Principal, group_id: int) -> None:
    await repo.remove(uow.session, await get_group(uow, actor, group_id))


async def lookup_site(uow: UnitOfWork, account_id: int, site_id: int) -> dict[str, Any] | None:
    site = await repo.get(uow.session, Site, site_id)
    if site is None or site.account_id != account_id:
        return None
    industry = await repo.get(uow.session, Industry, site.industry_id) if site.industry_id else None
    sectors = await sites_repo.site_sectors(uow.session, site_id)
    return {
        "site": events.site_data(site, industry),
        "sectors": [events.sector_data(x) for x in sectors],
    }
