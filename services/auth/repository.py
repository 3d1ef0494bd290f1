# SQLModel columns compare as `bool` to the type checker; they are SQL expressions.
# mypy: disable-error-code="arg-type, union-attr, attr-defined, operator"
# mypy: disable-error-code="return-value, call-overload"
"""Every query auth runs. Tenant queries go through `scoped`, which adds the caller's
`account_id` (row-level security is the second wall behind it); the few cross-tenant
lookups by secret (email, token hash, API key hash) say so in their names."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from psycopg.rows import dict_row
from sqlalchemy import Select, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.db import driver_connection
from libs.common.ids import MAX_BIGINT
from libs.common.pagination import PageParams
from libs.common.repository import contains
from libs.common.security import Principal
from services.auth.models import (
    Account,
    AuthModel,
    AuthSession,
    Group,
    GroupMember,
    Industry,
    IndustrySector,
    IntegrationSetting,
    LoginThrottle,
    Plan,
    Prompt,
    RefreshToken,
    Sector,
    SeedKeyword,
    SigningKey,
    Site,
    SiteUserAccess,
    Subscription,
    User,
)

M = TypeVar("M", bound=AuthModel)
T = TypeVar("T")


# --- generic -------------------------------------------------------------------------------


def scoped(query: Select[Any], model: type[AuthModel], principal: Principal) -> Select[Any]:
    """The tenant filter: platform staff see every account, everyone else their own."""
    if principal.is_platform_staff:
        return query
    column = model.id if model is Account else model.account_id
    return query.where(column == principal.account_id)


async def page(
    session: AsyncSession, query: Select[Any], params: PageParams
) -> tuple[int, list[Any]]:
    count = (
        await session.execute(select(func.count()).select_from(query.order_by(None).subquery()))
    ).scalar_one()
    rows = (await session.execute(query.offset(params.offset).limit(params.limit))).scalars()
    return int(count), list(rows)


async def get_scoped(
    session: AsyncSession,
    model: type[M],
    principal: Principal,
    id_: int,
    *,
    for_update: bool = False,
) -> M | None:
    query = scoped(select(model).where(model.id == id_), model, principal)
    if for_update:
        query = query.with_for_update()
    result: M | None = (await session.execute(query)).scalar_one_or_none()
    return result


async def get(session: AsyncSession, model: type[M], id_: Any) -> M | None:
    return await session.get(model, id_)


async def add(session: AsyncSession, *rows: AuthModel) -> None:
    session.add_all(rows)
    await session.flush()


async def remove(session: AsyncSession, row: AuthModel) -> None:
    await session.delete(row)
    await session.flush()


async def lock(session: AsyncSession, name: str) -> None:
    """A transaction-scoped advisory lock: serialises checks like plan limits."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": name})


# --- plans and subscriptions -------------------------------------------------------------


async def plan_by_slug(session: AsyncSession, slug: str) -> Plan | None:
    return (await session.execute(select(Plan).where(Plan.slug == slug))).scalar_one_or_none()


def plans_query(*, include_inactive: bool) -> Select[Any]:
    query = select(Plan).order_by(Plan.price, Plan.id)
    return query if include_inactive else query.where(Plan.is_active.is_(True))


def subscriptions_query(principal: Principal) -> Select[Any]:
    return scoped(select(Subscription).order_by(Subscription.id.desc()), Subscription, principal)


async def account_subscriptions(session: AsyncSession, account_id: int) -> list[Subscription]:
    """An account's subscriptions, newest first, locked for a plan change."""
    return list(
        (
            await session.execute(
                select(Subscription)
                .where(Subscription.account_id == account_id)
                .order_by(Subscription.id.desc())
                .with_for_update()
            )
        ).scalars()
    )


async def plans_by_id(session: AsyncSession, ids: Sequence[int]) -> dict[int, Plan]:
    if not ids:
        return {}
    rows = (await session.execute(select(Plan).where(Plan.id.in_(set(ids))))).scalars()
    return {p.id: p for p in rows if p.id is not None}


# --- accounts and users ----------------------------------------------------------------


async def slug_taken(session: AsyncSession, model: type[AuthModel], slug: str, **same: Any) -> bool:
    query = select(func.count()).select_from(model).where(model.slug == slug)
    for column, value in same.items():
        query = query.where(getattr(model, column) == value)
    return bool((await session.execute(query)).scalar_one())


def accounts_query(principal: Principal) -> Select[Any]:
    return scoped(select(Account).order_by(Account.id), Account, principal)


async def user_by_email_any_tenant(session: AsyncSession, email: str) -> User | None:
    return (
        await session.execute(select(User).where(func.lower(User.email) == email.lower()))
    ).scalar_one_or_none()


def users_query(
    principal: Principal,
    *,
    include_bots: bool = False,
    role: str | None = None,
    is_active: bool | None = None,
    account_id: int | None = None,
) -> Select[Any]:
    query = scoped(select(User).order_by(User.id), User, principal)
    if not include_bots:
        query = query.where(User.role != "system_bot")
    if role:
        query = query.where(User.role == role)
    if account_id is not None:
        query = query.where(User.account_id == account_id)
    return with_active(query, User, is_active)


def with_active(query: Select[Any], model: type[AuthModel], is_active: bool | None) -> Select[Any]:
    return query if is_active is None else query.where(model.is_active == is_active)


async def count_members(session: AsyncSession, account_id: int) -> int:
    """Users that count against `max_users`: everyone but bots."""
    return int(
        (
            await session.execute(
                select(func.count())
                .select_from(User)
                .where(User.account_id == account_id, User.role != "system_bot")
            )
        ).scalar_one()
    )


async def bot_user(session: AsyncSession, account_id: int) -> User | None:
    return (
        await session.execute(
            select(User)
            .where(User.account_id == account_id, User.role == "system_bot")
            .order_by(User.id)
            .limit(1)
        )
    ).scalar_one_or_none()


# --- sessions and refresh tokens ---------------------------------------------------------


async def refresh_token_any_tenant(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    return (
        await session.execute(
            select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
        )
    ).scalar_one_or_none()


async def live_sessions(
    session: AsyncSession,
    *,
    user_id: int | None = None,
    account_id: int | None = None,
    now: datetime,
) -> list[AuthSession]:
    query = select(AuthSession).where(
        AuthSession.revoked_at.is_(None), AuthSession.expires_at > now
    )
    if user_id is not None:
        query = query.where(AuthSession.user_id == user_id)
    if account_id is not None:
        query = query.where(AuthSession.account_id == account_id)
    return list((await session.execute(query.with_for_update())).scalars())


async def revoke_session_rows(
    session: AsyncSession, ids: Sequence[str], reason: str, now: datetime
) -> None:
    if ids:
        await session.execute(
            update(AuthSession)
            .where(AuthSession.id.in_(list(ids)), AuthSession.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )


# What the actor check reads about a session; `/me` reads the same, then more, so both
# judge a session alike.
_SESSION_COLUMNS = """s.revoked_at, s.expires_at, sa.status AS account_status,
       u.id AS user_id, u.account_id, u.is_active, u.role"""
_SESSION_JOINS = """FROM auth_sessions s
JOIN accounts sa ON sa.id = s.account_id
JOIN users u ON u.id = s.user_id"""

_SESSION_STATE = f"""
SELECT {_SESSION_COLUMNS}
{_SESSION_JOINS}
WHERE s.id = %(sid)s
"""

# The session check's columns, then everything `/me` shows: the user, the user's account
# and plan (NULL when the account is out of reach), and the account's sites (only the one
# a site key is bound to) with whether the user holds a grant on each.
_ME_VIEW = f"""
SELECT {_SESSION_COLUMNS},
       u.email, u.username, u.first_name, u.last_name, u.created_at, u.last_login_at,
       a.id AS a_id, a.name AS a_name, a.slug AS a_slug, a.status AS a_status,
       a.owner_user_id AS a_owner_user_id, a.plan_id AS a_plan_id,
       a.billing_email AS a_billing_email, a.billing_address AS a_billing_address,
       a.billing_city AS a_billing_city, a.billing_postal_code AS a_billing_postal_code,
       a.billing_country AS a_billing_country, a.tax_id AS a_tax_id,
       a.created_at AS a_created_at,
       p.id AS p_id, p.name AS p_name, p.slug AS p_slug, p.price AS p_price,
       p.billing_cycle AS p_billing_cycle, p.included_credits AS p_included_credits,
       p.max_users AS p_max_users, p.max_sites AS p_max_sites,
       p.max_sectors_per_site AS p_max_sectors_per_site, p.max_keywords AS p_max_keywords,
       p.max_author_profiles AS p_max_author_profiles, p.features AS p_features,
       p.is_active AS p_is_active,
       (SELECT coalesce(json_agg(json_build_object(
                   'id', st.id, 'name', st.name, 'slug', st.slug, 'url', st.url,
                   'is_active', st.is_active,
                   'granted', EXISTS (SELECT 1 FROM site_user_access g
                                      WHERE g.user_id = u.id AND g.site_id = st.id))
                ORDER BY st.id), '[]'::json)
        FROM sites st
        WHERE st.account_id = u.account_id
          AND (%(only_site)s::bigint IS NULL OR st.id = %(only_site)s::bigint)) AS sites
{_SESSION_JOINS}
LEFT JOIN accounts a ON a.id = u.account_id
LEFT JOIN plans p ON p.id = a.plan_id
WHERE s.id = %(sid)s
"""


async def _row(session: AsyncSession, sql: str, params: dict[str, Any]) -> dict[str, Any] | None:
    """Run one hand-written statement on the session's connection, inside its transaction
    (so the tenant setting and row-level security apply), and return its first row. For
    per-request reads where the ORM's compile and load steps would cost more than the query."""
    driver = await driver_connection(session)
    async with driver.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(sql, params)
        return await cursor.fetchone()


async def session_state(session: AsyncSession, sid: str) -> dict[str, Any] | None:
    """What the actor check needs about a session: `revoked_at`, `expires_at`, its
    account's `account_status`, and its user's `user_id`, `account_id`, `is_active`, `role`."""
    return await _row(session, _SESSION_STATE, {"sid": sid})


async def me_view(session: AsyncSession, sid: str, only_site: int | None) -> dict[str, Any] | None:
    """`session_state`'s columns plus the user's profile, account (`a_*`), plan (`p_*`)
    and `sites` (each with `granted`), in one statement."""
    return await _row(session, _ME_VIEW, {"sid": sid, "only_site": only_site})


# --- signing keys -------------------------------------------------------------------------


async def current_signing_key(session: AsyncSession, now: datetime) -> SigningKey | None:
    """The key that signs now: the newest one already active."""
    return (
        await session.execute(
            select(SigningKey)
            .where(SigningKey.activates_at <= now)
            .order_by(SigningKey.activates_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def signing_keys_exist(session: AsyncSession) -> bool:
    return (await session.execute(select(SigningKey.kid).limit(1))).first() is not None


async def published_signing_keys(session: AsyncSession, now: datetime) -> list[SigningKey]:
    return list(
        (
            await session.execute(
                select(SigningKey)
                .where(or_(SigningKey.retired_at.is_(None), SigningKey.publish_until > now))
                .order_by(SigningKey.created_at.desc())
            )
        ).scalars()
    )


async def retire_signing_keys(session: AsyncSession, at: datetime, publish_until: datetime) -> None:
    await session.execute(
        update(SigningKey)
        .where(SigningKey.retired_at.is_(None))
        .values(retired_at=at, publish_until=publish_until)
    )


# --- login throttling ------------------------------------------------------------------------


async def throttles(session: AsyncSession, keys: Sequence[str]) -> dict[str, LoginThrottle]:
    """Rows for `keys`, created when missing and locked for this transaction."""
    await session.execute(
        pg_insert(LoginThrottle)
        .values([{"key": k, "failures": 0} for k in keys])
        .on_conflict_do_nothing()
    )
    rows = (
        await session.execute(
            select(LoginThrottle).where(LoginThrottle.key.in_(list(keys))).with_for_update()
        )
    ).scalars()
    return {r.key: r for r in rows}


async def clear_throttle(session: AsyncSession, key: str) -> None:
    await session.execute(delete(LoginThrottle).where(LoginThrottle.key == key))


async def purge_stale(session: AsyncSession, now: datetime, window_start: datetime) -> int:
    """Housekeeping: forget old throttle windows, expired sessions and spent tokens."""
    removed = 0
    result: Any = await session.execute(
        delete(LoginThrottle).where(
            LoginThrottle.window_started_at < window_start,
            or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until < now),
        )
    )
    removed += result.rowcount or 0
    result = await session.execute(delete(AuthSession).where(AuthSession.expires_at < now))
    removed += result.rowcount or 0
    result = await session.execute(delete(SigningKey).where(SigningKey.publish_until < now))
    removed += result.rowcount or 0
    return removed


# --- sites, sectors, access ------------------------------------------------------------


def sites_query(
    principal: Principal,
    *,
    accessible_to: int | None = None,
    only_site: int | None = None,
    account_id: int | None = None,
) -> Select[Any]:
    query = scoped(select(Site).order_by(Site.id), Site, principal)
    if accessible_to is not None:
        query = query.where(
            Site.id.in_(
                select(SiteUserAccess.site_id).where(SiteUserAccess.user_id == accessible_to)
            )
        )
    if only_site is not None:
        query = query.where(Site.id == only_site)
    if account_id is not None:
        query = query.where(Site.account_id == account_id)
    return query


async def count_sites(session: AsyncSession, account_id: int) -> int:
    return int(
        (
            await session.execute(
                select(func.count()).select_from(Site).where(Site.account_id == account_id)
            )
        ).scalar_one()
    )


async def has_site_access(session: AsyncSession, user_id: int, site_id: int) -> bool:
    return (
        await session.execute(
            select(SiteUserAccess.id).where(
                SiteUserAccess.user_id == user_id, SiteUserAccess.site_id == site_id
            )
        )
    ).first() is not None


async def site_by_api_key_any_tenant(session: AsyncSession, key_hash: str) -> Site | None:
    return (
        await session.execute(select(Site).where(Site.api_key_hash == key_hash))
    ).scalar_one_or_none()


def sectors_query(
    principal: Principal,
    *,
    site_id: int | None = None,
    within_sites: Select[Any] | None = None,
    is_active: bool | None = None,
) -> Select[Any]:
    """Sectors of one site, or of the sites `within_sites` (a sites query) selects."""
    query = scoped(select(Sector).order_by(Sector.site_id, Sector.id), Sector, principal)
    if site_id is not None:
        query = query.where(Sector.site_id == site_id)
    if within_sites is not None:
        query = query.where(Sector.site_id.in_(within_sites.with_only_columns(Site.id)))
    return with_active(query, Sector, is_active)


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


def site_access_query(
    principal: Principal, *, user_id: int | None = None, site_id: int | None = None
) -> Select[Any]:
    query = scoped(select(SiteUserAccess).order_by(SiteUserAccess.id), SiteUserAccess, principal)
    if user_id is not None:
        query = query.where(SiteUserAccess.user_id == user_id)
    if site_id is not None:
        query = query.where(SiteUserAccess.site_id == site_id)
    return query


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


# --- groups -----------------------------------------------------------------------------------


def groups_query(principal: Principal) -> Select[Any]:
    return scoped(select(Group).order_by(Group.id), Group, principal)


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


async def user_ids_in_account(
    session: AsyncSession, account_id: int, ids: Sequence[int]
) -> set[int]:
    if not ids:
        return set()
    return set(
        (
            await session.execute(
                select(User.id).where(User.account_id == account_id, User.id.in_(list(ids)))
            )
        ).scalars()
    )


# --- catalogue ------------------------------------------------------------------------------


def industries_query() -> Select[Any]:
    return select(Industry).where(Industry.is_active.is_(True)).order_by(Industry.name)


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


def seed_keywords_query(
    *,
    industry: str | None,
    sector: str | None,
    intent: str | None,
    country: str | None,
    search: str | None,
    ordering: str | None,
) -> Select[Any]:
    query = (
        select(SeedKeyword, Industry, IndustrySector)
        .join(Industry, Industry.id == SeedKeyword.industry_id)
        .join(IndustrySector, IndustrySector.id == SeedKeyword.sector_id)
        .where(SeedKeyword.is_active.is_(True))
    )
    if industry:
        industry_id = _as_id(industry)
        query = query.where(
            Industry.id == industry_id if industry_id else Industry.slug == industry
        )
    if sector:
        sector_id = _as_id(sector)
        query = query.where(
            IndustrySector.id == sector_id if sector_id else IndustrySector.slug == sector
        )
    if intent:
        query = query.where(SeedKeyword.intent == intent)
    if country:
        query = query.where(SeedKeyword.country == country.upper())
    if search:
        query = query.where(contains(SeedKeyword.keyword, search))
    orderings = {
        "keyword": SeedKeyword.keyword,
        "-keyword": SeedKeyword.keyword.desc(),
        "volume": SeedKeyword.volume,
        "-volume": SeedKeyword.volume.desc(),
        "difficulty": SeedKeyword.difficulty,
        "-difficulty": SeedKeyword.difficulty.desc(),
    }
    return query.order_by(orderings.get(ordering or "", SeedKeyword.keyword), SeedKeyword.id)


async def page_rows(
    session: AsyncSession, query: Select[Any], params: PageParams
) -> tuple[int, list[Any]]:
    """Like `page` for multi-entity selects: rows rather than scalars."""
    count = (
        await session.execute(select(func.count()).select_from(query.order_by(None).subquery()))
    ).scalar_one()
    rows = (await session.execute(query.offset(params.offset).limit(params.limit))).all()
    return int(count), list(rows)


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


def _as_id(value: str) -> int | None:
    """`value` as a row id when it is one (digits within bigint), else None (a slug)."""
    return int(value) if value.isdigit() and 0 < int(value) <= MAX_BIGINT else None


# --- account AI configuration -----------------------------------------------------------


def prompts_query(principal: Principal) -> Select[Any]:
    return scoped(select(Prompt).order_by(Prompt.prompt_type), Prompt, principal)


async def prompt_by_type(session: AsyncSession, account_id: int, prompt_type: str) -> Prompt | None:
    return (
        await session.execute(
            select(Prompt).where(Prompt.account_id == account_id, Prompt.prompt_type == prompt_type)
        )
    ).scalar_one_or_none()


async def integration(
    session: AsyncSession, account_id: int, provider: str
) -> IntegrationSetting | None:
    return (
        await session.execute(
            select(IntegrationSetting).where(
                IntegrationSetting.account_id == account_id, IntegrationSetting.provider == provider
            )
        )
    ).scalar_one_or_none()


async def account_prompts(
    session: AsyncSession, account_id: int, prompt_types: Sequence[str] | None = None
) -> list[Prompt]:
    """The account's saved, active prompts (of `prompt_types` when given)."""
    query = select(Prompt).where(Prompt.account_id == account_id, Prompt.is_active.is_(True))
    if prompt_types is not None:
        query = query.where(Prompt.prompt_type.in_(list(prompt_types)))
    return list((await session.execute(query.order_by(Prompt.prompt_type))).scalars())
