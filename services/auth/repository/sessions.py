# SQLModel columns compare as `bool` to the type checker; they are SQL expressions.
# mypy: disable-error-code="arg-type, union-attr, attr-defined, operator"
# mypy: disable-error-code="return-value, call-overload"
"""Sessions and sign-in: sessions and refresh tokens, the per-request session check and
`/me` (hand-written, ADR 0017), signing keys, sign-in throttles, and the cross-tenant
lookups by a secret (email, token hash, API key hash), which say so in their names."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.db import driver_connection
from services.auth.models import (
    AuthSession,
    LoginThrottle,
    RefreshToken,
    SigningKey,
    Site,
    User,
)

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


async def site_by_api_key_any_tenant(session: AsyncSession, key_hash: str) -> Site | None:
    return (
        await session.execute(select(Site).where(Site.api_key_hash == key_hash))
    ).scalar_one_or_none()


async def user_by_email_any_tenant(session: AsyncSession, email: str) -> User | None:
    return (
        await session.execute(select(User).where(func.lower(User.email) == email.lower()))
    ).scalar_one_or_none()


async def bot_user(session: AsyncSession, account_id: int) -> User | None:
    return (
        await session.execute(
            select(User)
            .where(User.account_id == account_id, User.role == "system_bot")
            .order_by(User.id)
            .limit(1)
        )
    ).scalar_one_or_none()
