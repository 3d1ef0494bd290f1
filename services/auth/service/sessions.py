"""Keys and sessions: signing keys, sign-in with throttling per account and per client
address, refresh-token rotation, revocation, the gateway's credential exchange, and the
session check every auth endpoint runs (`session_actor`, and `me` in one statement)."""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from libs.common.db import Database, TenantScope
from libs.common.events import utcnow
from libs.common.problems import (
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    TooManyRequests,
    ValidationFailed,
)
from libs.common.security import Principal
from libs.common.uow import UnitOfWork, unit_of_work
from services.auth import events, passwords, tokens
from services.auth import repository as repo
from services.auth import schemas as s
from services.auth.models import Account, AuthSession, Plan, RefreshToken, SigningKey, User
from services.auth.repository import sessions as sessions_repo
from services.auth.repository import visibility_of
from services.auth.repository.accounts import UserRepository
from services.auth.service.common import (
    BLOCKED_STATUSES,
    AccountBlocked,
    InvalidCredentials,
    RefreshTokenReused,
    account_and_plan,
    sees_all_sites,
)
from services.auth.settings import AuthSettings


@dataclass
class Issuer:
    """What every flow that issues tokens needs: the settings and the signing keyring."""

    settings: AuthSettings
    keyring: tokens.KeyRing

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> Issuer:
        return cls(settings, tokens.KeyRing(settings.secret_key))


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token as the client gets it: the value and when it stops being accepted."""

    value: str
    expires_at: datetime


@dataclass
class Session:
    """A sign-in's tokens, as login and refresh return them (an exchange has no refresh)."""

    user: User
    account: Account
    plan: Plan
    access: IssuedToken
    refresh: IssuedToken | None = None
    session_id: str = ""


# --- signing keys --------------------------------------------------------------------------


async def _create_signing_key(
    uow: UnitOfWork, keyring: tokens.KeyRing, activates_at: datetime
) -> str:
    kid, key = tokens.new_signing_key()
    await repo.add(
        uow.session,
        SigningKey(
            kid=kid,
            private_jwk_encrypted=keyring.seal(key),
            public_jwk=tokens.public_jwk(key),
            activates_at=activates_at,
        ),
    )
    return kid


async def ensure_signing_key(db: Database, keyring: tokens.KeyRing) -> str:
    """First start: create a key if there is none (replicas racing take turns); returns
    its kid, or "" when keys existed already."""
    async with unit_of_work(db, TenantScope.system()) as uow:
        await repo.lock(uow.session, "auth-signing-keys")
        if await sessions_repo.signing_keys_exist(uow.session):
            return ""
        return await _create_signing_key(uow, keyring, utcnow())


async def rotate_signing_key(db: Database, *, settings: AuthSettings | None = None) -> str:
    """Start signing with a new key. It is published at once and signs after
    `key_activation_delay_seconds` (verifiers learn it first); from then the old key stops
    signing but stays published until every token it signed has expired (the longest
    access token lifetime plus leeway)."""
    settings = settings or AuthSettings()
    keyring = tokens.KeyRing(settings.secret_key)
    overlap = timedelta(
        seconds=max(settings.access_token_ttl_seconds, settings.exchange_token_ttl_seconds)
        + settings.jwt_leeway_seconds
    )
    async with unit_of_work(db, TenantScope.system()) as uow:
        await repo.lock(uow.session, "auth-signing-keys")
        activates_at = utcnow() + timedelta(seconds=settings.key_activation_delay_seconds)
        await sessions_repo.retire_signing_keys(uow.session, activates_at, activates_at + overlap)
        return await _create_signing_key(uow, keyring, activates_at)


async def jwks(uow: UnitOfWork) -> dict[str, Any]:
    keys = await sessions_repo.published_signing_keys(uow.session, utcnow())
    return {"keys": [dict(k.public_jwk) for k in keys]}


async def _sign(
    uow: UnitOfWork,
    issuer: Issuer,
    user: User,
    session_id: str,
    *,
    role: str | None = None,
    ttl: int | None = None,
    site_id: int | None = None,
) -> tokens.AccessToken:
    row = await sessions_repo.current_signing_key(uow.session, utcnow())
    if row is None:
        raise RuntimeError("no signing key: auth has not finished starting")
    cfg = issuer.settings
    return tokens.sign_access_token(
        issuer.keyring.open(row.kid, row.private_jwk_encrypted),
        row.kid,
        user_id=user.id or 0,
        account_id=user.account_id,
        role=role or user.role,
        session_id=session_id,
        issuer=cfg.jwt_issuer,
        audience=cfg.jwt_audience,
        ttl_seconds=ttl or cfg.access_token_ttl_seconds,
        site_id=site_id,
    )


def _at(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, tz=utcnow().tzinfo)


# --- sign-in, sessions, tokens -----------------------------------------------------------


# The rate-limit scope a sign-in lockout names in its `RateLimit` headers.
LOCKOUT_SCOPE = "auth_failures"


def _throttle_keys(email: str, address: str | None) -> list[str]:
    return [f"email:{email.lower()}", *([f"addr:{address}"] if address else [])]


def _failure_limit(settings: AuthSettings, key: str) -> int:
    if key.startswith("email:"):
        return settings.login_max_failures_per_account
    return settings.login_max_failures_per_address


async def _check_throttle(
    uow: UnitOfWork, issuer: Issuer, email: str, address: str | None
) -> dict[str, Any]:
    rows = await sessions_repo.throttles(uow.session, _throttle_keys(email, address))
    now = utcnow()
    locks = [
        (row.locked_until, _failure_limit(issuer.settings, key))
        for key, row in rows.items()
        if row.locked_until and row.locked_until > now
    ]
    if locks:
        until, limit = max(locks)
        raise _lockout(issuer.settings, until, limit, now)
    return rows


def _lockout(settings: AuthSettings, until: datetime, limit: int, now: datetime) -> TooManyRequests:
    """A 429 whose headers describe the lockout itself: no attempt left until `until`
    (not the gateway's request quota, which says nothing about it)."""
    retry = max(1, math.ceil((until - now).total_seconds()))
    return TooManyRequests(
        "Too many failed sign-in attempts. Try again later.",
        headers={
            "Retry-After": str(retry),
            "X-Throttle-Limit": str(limit),
            "X-Throttle-Remaining": "0",
            "X-Throttle-Reset": str(math.ceil(until.timestamp())),
            "RateLimit-Policy": f'"{LOCKOUT_SCOPE}";q={limit};w={settings.login_window_seconds}',
            "RateLimit": f'"{LOCKOUT_SCOPE}";r=0;t={retry}',
        },
    )


def _record_failure(issuer: Issuer, rows: dict[str, Any]) -> None:
    cfg = issuer.settings
    now = utcnow()
    window = timedelta(seconds=cfg.login_window_seconds)
    for key, row in rows.items():
        if row.window_started_at + window <= now:
            row.failures, row.window_started_at, row.locked_until = 0, now, None
        row.failures += 1
        if row.failures >= _failure_limit(cfg, key):
            row.locked_until = now + window


async def authenticate(
    uow: UnitOfWork, issuer: Issuer, email: str, password: str, address: str | None
) -> tuple[User, Account, Plan]:
    """Check credentials with throttling per account and per client address. Must run
    in the system scope: the user is found by email across tenants."""
    rows = await _check_throttle(uow, issuer, email, address)
    user = await sessions_repo.user_by_email_any_tenant(uow.session, email)
    usable = user is not None and user.role != "system_bot"
    ok = await passwords.verify_password(user.password_hash if usable and user else None, password)
    if not ok or user is None:
        _record_failure(issuer, rows)
        await repo.add(uow.session, *rows.values())
        raise InvalidCredentials("Invalid email or password.")
    await sessions_repo.clear_throttle(uow.session, f"email:{email.lower()}")
    account, plan = await account_and_plan(uow, user.account_id)
    if account.status in BLOCKED_STATUSES:
        raise AccountBlocked(account.status)
    if not user.is_active:
        raise PermissionDenied("This user account is disabled.")
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = await passwords.hash_password(password)
    return user, account, plan


async def _open_session(
    uow: UnitOfWork,
    issuer: Issuer,
    user: User,
    account: Account,
    plan: Plan,
    *,
    kind: str = "login",
) -> Session:
    cfg = issuer.settings
    now = utcnow()
    sid = tokens.new_session_id()
    ttl = cfg.refresh_token_ttl_seconds if kind == "login" else cfg.exchange_token_ttl_seconds
    await repo.add(
        uow.session,
        AuthSession(
            id=sid,
            account_id=user.account_id,
            user_id=user.id or 0,
            kind=kind,
            expires_at=now + timedelta(seconds=ttl),
        ),
    )
    access = await _sign(
        uow, issuer, user, sid, ttl=None if kind == "login" else cfg.exchange_token_ttl_seconds
    )
    result = Session(
        user=user,
        account=account,
        plan=plan,
        access=IssuedToken(access.token, _at(access.expires_at)),
        session_id=sid,
    )
    if kind == "login":
        result.refresh = await _new_refresh(uow, issuer, user, sid)
    return result


async def _new_refresh(uow: UnitOfWork, issuer: Issuer, user: User, sid: str) -> IssuedToken:
    token = tokens.new_refresh_token()
    expires = utcnow() + timedelta(seconds=issuer.settings.refresh_token_ttl_seconds)
    await repo.add(
        uow.session,
        RefreshToken(
            account_id=user.account_id,
            session_id=sid,
            token_hash=tokens.digest(token),
            expires_at=expires,
        ),
    )
    return IssuedToken(token, expires)


async def login(
    uow: UnitOfWork, issuer: Issuer, data: s.LoginRequest, address: str | None
) -> Session:
    user, account, plan = await authenticate(uow, issuer, data.email, data.password, address)
    user.last_login_at = utcnow()
    await repo.add(uow.session, user)
    return await _open_session(uow, issuer, user, account, plan)


async def refresh(uow: UnitOfWork, issuer: Issuer, token: str) -> Session:
    """Rotate: the presented token is spent, a new one issued in the same family. A spent
    token presented again means it leaked: the whole family is revoked."""
    row = await sessions_repo.refresh_token_any_tenant(uow.session, tokens.digest(token))
    if row is None:
        raise NotAuthenticated("Invalid refresh token.")
    family = await repo.get(uow.session, AuthSession, row.session_id)
    now = utcnow()
    if family is None or family.revoked_at is not None:
        raise NotAuthenticated("Session has been revoked.")
    if row.used_at is not None:
        await sessions_repo.revoke_session_rows(uow.session, [family.id], "refresh_reuse", now)
        raise RefreshTokenReused([family.id])
    if row.expires_at <= now:
        raise NotAuthenticated("Refresh token has expired.")
    user = await repo.get(uow.session, User, family.user_id)
    account, plan = await account_and_plan(uow, family.account_id)
    if account.status in BLOCKED_STATUSES:
        raise AccountBlocked(account.status)
    if user is None or not user.is_active:
        raise NotAuthenticated("User is inactive.")
    row.used_at = now
    new_refresh = await _new_refresh(uow, issuer, user, family.id)
    family.expires_at = new_refresh.expires_at
    await repo.add(uow.session, row, family)
    access = await _sign(uow, issuer, user, family.id)
    return Session(
        user=user,
        account=account,
        plan=plan,
        access=IssuedToken(access.token, _at(access.expires_at)),
        refresh=new_refresh,
        session_id=family.id,
    )


async def revoke_live_sessions(
    uow: UnitOfWork,
    *,
    user_id: int | None = None,
    account_id: int | None = None,
    reason: str,
    keep: str | None = None,
) -> list[str]:
    live = await sessions_repo.live_sessions(
        uow.session, user_id=user_id, account_id=account_id, now=utcnow()
    )
    sids = [x.id for x in live if x.id != keep]
    await sessions_repo.revoke_session_rows(uow.session, sids, reason, utcnow())
    return sids


async def logout(uow: UnitOfWork, actor: Principal) -> list[str]:
    if actor.session_id is None:
        return []
    await sessions_repo.revoke_session_rows(uow.session, [actor.session_id], "logout", utcnow())
    return [actor.session_id]


async def change_password(
    uow: UnitOfWork, actor: Principal, data: s.ChangePasswordRequest
) -> list[str]:
    users = UserRepository(uow.session, visibility_of(actor))
    user = await users.get_for_update(actor.user_id)
    if user is None or user.role == "system_bot":
        raise PermissionDenied("This identity has no password.")
    if not await passwords.verify_password(user.password_hash, data.old_password):
        raise ValidationFailed(errors={"old_password": ["Current password is incorrect."]})
    if data.new_password != data.new_password_confirm:
        raise ValidationFailed(errors={"new_password_confirm": ["Passwords do not match."]})
    user.password_hash = await passwords.hash_password(data.new_password)
    user.password_changed_at = user.updated_at = utcnow()
    await repo.add(uow.session, user)
    await uow.publish(events.user_event("updated", user))
    return await revoke_live_sessions(
        uow, user_id=user.id, reason="password_changed", keep=actor.session_id
    )


async def session_actor(uow: UnitOfWork, token_principal: Principal) -> Principal:
    """Auth's own check behind the token: the session is live, the user active, the
    account not blocked. The role comes from the database, so changes apply at once."""
    state = await sessions_repo.session_state(uow.session, _session_id(token_principal))
    if state is None:
        raise NotAuthenticated("Session not found.")
    return _actor_from_state(state, token_principal)


def _session_id(token_principal: Principal) -> str:
    if token_principal.session_id is None:
        raise NotAuthenticated("Token has no session.")
    return token_principal.session_id


def _actor_from_state(state: dict[str, Any], token_principal: Principal) -> Principal:
    """`session_actor`'s verdict on a row of `repo.session_state`'s columns."""
    if state["revoked_at"] is not None or state["expires_at"] <= utcnow():
        raise NotAuthenticated("Session has been revoked.")
    if state["user_id"] != token_principal.user_id or not state["is_active"]:
        raise NotAuthenticated("User is inactive.")
    if state["account_status"] in BLOCKED_STATUSES:
        raise AccountBlocked(state["account_status"])
    role = "system_bot" if token_principal.role == "system_bot" else state["role"]
    return Principal(
        user_id=state["user_id"],
        account_id=state["account_id"],
        role=role,
        session_id=token_principal.session_id,
        expires_at=token_principal.expires_at,
        site_id=token_principal.site_id,
    )


async def exchange(
    uow: UnitOfWork, issuer: Issuer, authorization: str, address: str | None
) -> tokens.AccessToken:
    """The gateway's exchange of Basic or ApiKey credentials for a short-lived JWT."""
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "basic" and value:
        try:
            email, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise NotAuthenticated("Malformed Basic credentials.") from exc
        if not sep or not email:
            raise NotAuthenticated("Malformed Basic credentials.")
        user, account, plan = await authenticate(uow, issuer, email, password, address)
        session = await _open_session(uow, issuer, user, account, plan, kind="basic")
        access = session.access
        return tokens.AccessToken(access.value, "", int(access.expires_at.timestamp()))
    if scheme.lower() == "apikey" and value:
        site = await sessions_repo.site_by_api_key_any_tenant(uow.session, tokens.digest(value))
        if site is None or not site.is_active or site.api_key_session_id is None:
            raise NotAuthenticated("Invalid API key.")
        account, _plan_row = await account_and_plan(uow, site.account_id)
        if account.status in BLOCKED_STATUSES:
            raise AccountBlocked(account.status)
        bot = await sessions_repo.bot_user(uow.session, site.account_id)
        if bot is None or not bot.is_active:
            raise NotAuthenticated("Invalid API key.")
        return await _sign(
            uow,
            issuer,
            bot,
            site.api_key_session_id,
            role="system_bot",
            ttl=issuer.settings.exchange_token_ttl_seconds,
            site_id=site.id,
        )
    raise NotAuthenticated("Unsupported authorization scheme.")


# --- me ---------------------------------------------------------------------------------------


_USER_FIELDS = tuple(s.UserPublic.model_fields)
_ACCOUNT_FIELDS = tuple(f for f in s.AccountPublic.model_fields if f != "plan")
_PLAN_FIELDS = tuple(s.PlanPublic.model_fields)
_SITE_FIELDS = tuple(s.SiteBrief.model_fields)


async def me(uow: UnitOfWork, token_principal: Principal) -> s.MeUser:
    """The caller's profile, account, plan and the sites they may open, after the same
    session check as every other endpoint (`session_actor`), all read in one statement.
    The role shown is the actor's (a site key's bot shows `system_bot`)."""
    sid = _session_id(token_principal)
    row = await sessions_repo.me_view(uow.session, sid, token_principal.site_id)
    if row is None:
        raise NotAuthenticated("Session not found.")
    actor = _actor_from_state(row, token_principal)
    if row["a_id"] is None:
        raise NotFound("Account not found.")
    if row["p_id"] is None:
        raise RuntimeError(f"plan {row['a_plan_id']} vanished")
    every_site = actor.site_id is not None or sees_all_sites(actor)
    sites = [x for x in row["sites"] if every_site or x["granted"]]
    return s.MeUser.model_validate(
        {
            **{f: row[f] for f in _USER_FIELDS if f not in ("id", "role")},
            "id": actor.user_id,
            "role": actor.role,
            "account": {
                **{f: row["a_" + f] for f in _ACCOUNT_FIELDS},
                "plan": {f: row["p_" + f] for f in _PLAN_FIELDS},
            },
            "accessible_sites": [{f: x[f] for f in _SITE_FIELDS} for x in sites],
        }
    )
