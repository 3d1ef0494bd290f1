"""Auth's domain logic. No HTTP and no commits: functions take a unit of work (its
session and its outbox) and the acting principal, raise domain errors, publish events.

Failures that must leave a trace (a failed sign-in counted, a reused refresh token's
family revoked) raise a `PersistentFailure`: the endpoint commits before answering.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import csv
import io
import math
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from libs.common.crypto import InvalidToken as UndecryptableSecret
from libs.common.crypto import SecretBox, mask_secret
from libs.common.db import Database, TenantScope
from libs.common.events import utcnow
from libs.common.problems import (
    DomainError,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    TooManyRequests,
    ValidationFailed,
)
from libs.common.security import ROLE_RANK, Principal
from libs.common.tenancy import UnitOfWork
from services.auth import events, passwords, tokens
from services.auth import repository as repo
from services.auth import schemas as s
from services.auth.models import (
    Account,
    AuthSession,
    Group,
    Industry,
    IndustrySector,
    IntegrationSetting,
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
from services.auth.settings import AuthSettings

BLOCKED_STATUSES = ("suspended", "cancelled")
SEES_ALL_SITES = ("owner", "admin", "developer")
API_KEY_SESSION_TTL = timedelta(days=3650)


# --- errors ------------------------------------------------------------------------------


class PersistentFailure(DomainError):
    """A failure whose side effects (counters, revocations) must be committed."""

    revoked: tuple[str, ...] = ()


class InvalidCredentials(PersistentFailure, NotAuthenticated):
    pass


class RefreshTokenReused(PersistentFailure, NotAuthenticated):
    def __init__(self, revoked: Sequence[str]) -> None:
        super().__init__("Refresh token has already been used; the session has been revoked.")
        self.revoked = tuple(revoked)


class AccountBlocked(PermissionDenied):
    def __init__(self, status: str) -> None:
        super().__init__(f"Account is {status}. Contact support to restore access.")


# --- configuration every flow that issues tokens needs ------------------------------------

# The SecretBox purpose the integration API keys are encrypted under.
INTEGRATION_KEYS_PURPOSE = "auth-integration-keys"


@dataclass
class Issuer:
    settings: AuthSettings
    keyring: tokens.KeyRing

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> Issuer:
        return cls(settings, tokens.KeyRing(settings.secret_key))

    @property
    def secrets(self) -> SecretBox:
        return SecretBox(self.settings.secret_key, INTEGRATION_KEYS_PURPOSE)


@dataclass
class Session:
    """A sign-in's tokens, as login and refresh return them."""

    user: User
    account: Account
    plan: Plan
    access: str
    access_expires_at: datetime
    refresh: str | None = None
    refresh_expires_at: datetime | None = None
    session_id: str = ""


@dataclass
class Outcome:
    """What a change did besides its result: sessions it revoked (the caller tells NATS)."""

    value: Any = None
    revoked: list[str] = field(default_factory=list)


# --- small helpers ---------------------------------------------------------------------------


def slugify(value: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")
    return slug[:200] or "item"


def add_month(moment: datetime) -> datetime:
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


async def _unique_slug(uow: UnitOfWork, model: Any, name: str, **same: Any) -> str:
    base = slugify(name)
    candidate, n = base, 1
    while await repo.slug_taken(uow.session, model, candidate, **same):
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def _require_role(actor: Principal, minimum: str) -> None:
    if not actor.has_role(minimum):
        raise PermissionDenied("You do not have permission to perform this action.")


def _staff_only(actor: Principal) -> None:
    if not actor.is_platform_staff:
        raise PermissionDenied("Only platform staff may do this.")


async def _plan(uow: UnitOfWork, plan_id: int) -> Plan:
    plan = await repo.get(uow.session, Plan, plan_id)
    if plan is None:
        raise RuntimeError(f"plan {plan_id} vanished")
    return plan


async def _account(uow: UnitOfWork, account_id: int) -> tuple[Account, Plan]:
    account = await repo.get(uow.session, Account, account_id)
    if account is None:
        raise NotFound("Account not found.")
    return account, await _plan(uow, account.plan_id)


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
    async with db.session(TenantScope.system()) as session:
        uow = UnitOfWork(session)
        await repo.lock(session, "auth-signing-keys")
        if await repo.signing_keys_exist(session):
            return ""
        kid = await _create_signing_key(uow, keyring, utcnow())
        await uow.commit()
        return kid


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
    async with db.session(TenantScope.system()) as session:
        uow = UnitOfWork(session)
        await repo.lock(session, "auth-signing-keys")
        activates_at = utcnow() + timedelta(seconds=settings.key_activation_delay_seconds)
        await repo.retire_signing_keys(session, activates_at, activates_at + overlap)
        kid = await _create_signing_key(uow, keyring, activates_at)
        await uow.commit()
        return kid


async def jwks(uow: UnitOfWork) -> dict[str, Any]:
    keys = await repo.published_signing_keys(uow.session, utcnow())
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
    row = await repo.current_signing_key(uow.session, utcnow())
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


# --- accounts and registration ---------------------------------------------------------


async def _insert_user(uow: UnitOfWork, user: User) -> User:
    """Emails are unique across tenants; the caller's scope cannot see other tenants'
    rows, so the unique index decides (inside a savepoint, keeping the transaction)."""
    try:
        async with uow.session.begin_nested():
            await repo.add(uow.session, user)
    except IntegrityError as exc:
        raise ValidationFailed(
            errors={"email": ["A user with this email already exists."]}
        ) from exc
    return user


async def open_account(
    uow: UnitOfWork,
    *,
    name: str,
    email: str,
    password: str,
    plan_slug: str = "free",
    username: str | None = None,
    first_name: str = "",
    last_name: str = "",
    status: str = "active",
) -> tuple[Account, User, Plan]:
    """A new tenant: account on `plan_slug`, an active subscription for one month, and
    its owner. Runs in the system scope (the account has no id yet to scope by)."""
    plan = await repo.plan_by_slug(uow.session, plan_slug)
    if plan is None or not plan.is_active:
        raise ValidationFailed(errors={"plan_slug": [f"Unknown plan {plan_slug!r}."]})
    if await repo.user_by_email_any_tenant(uow.session, email):
        raise ValidationFailed(errors={"email": ["A user with this email already exists."]})
    await repo.lock(uow.session, "auth-account-slugs")
    account = Account(
        name=name,
        slug=await _unique_slug(uow, Account, name),
        plan_id=plan.id or 0,
        status=status,
        billing_email=email,
    )
    await repo.add(uow.session, account)
    user = await _insert_user(
        uow,
        User(
            account_id=account.id or 0,
            email=email.lower(),
            username=username or email.split("@")[0],
            first_name=first_name,
            last_name=last_name,
            password_hash=await passwords.hash_password(password),
            role="owner",
            password_changed_at=utcnow(),
        ),
    )
    account.owner_user_id = user.id
    now = utcnow()
    sub = Subscription(
        account_id=account.id or 0,
        plan_id=plan.id or 0,
        status="active",
        current_period_start=now,
        current_period_end=add_month(now),
    )
    await repo.add(uow.session, account, sub)
    await uow.publish(
        events.account_event("created", account, plan),
        events.user_event("created", user),
        events.subscription_event("created", sub, plan),
    )
    return account, user, plan


async def register(uow: UnitOfWork, data: s.RegisterRequest) -> tuple[User, Account, Plan]:
    if data.password != data.password_confirm:
        raise ValidationFailed(errors={"password_confirm": ["Passwords do not match."]})
    local = data.email.split("@")[0]
    account, user, plan = await open_account(
        uow,
        name=data.account_name or f"{data.username or local}'s account",
        email=data.email,
        password=data.password,
        username=data.username,
        first_name=data.first_name,
        last_name=data.last_name,
    )
    return user, account, plan


async def list_accounts(uow: UnitOfWork, actor: Principal, params: Any) -> tuple[int, list[Any]]:
    _require_role(actor, "admin")
    return await repo.page(uow.session, repo.accounts_query(actor), params)


async def get_account(uow: UnitOfWork, actor: Principal, account_id: int) -> tuple[Account, Plan]:
    _require_role(actor, "viewer")
    account = await repo.get_scoped(uow.session, Account, actor, account_id)
    if account is None:
        raise NotFound("Account not found.")
    return account, await _plan(uow, account.plan_id)


async def create_account(
    uow: UnitOfWork, actor: Principal, data: s.AccountCreate
) -> tuple[Account, Plan]:
    _staff_only(actor)
    account, _user, plan = await open_account(
        uow,
        name=data.name,
        email=data.owner_email,
        password=data.owner_password,
        plan_slug=data.plan_slug,
    )
    return account, plan


async def update_account(
    uow: UnitOfWork, actor: Principal, account_id: int, data: s.AccountUpdate
) -> Outcome:
    _require_role(actor, "admin")
    account = await repo.get_scoped(uow.session, Account, actor, account_id, for_update=True)
    if account is None:
        raise NotFound("Account not found.")
    changes = data.model_dump(exclude_unset=True)
    if ("status" in changes or "plan_id" in changes) and not actor.is_platform_staff:
        raise PermissionDenied("Only platform staff may change an account's status or plan.")
    outcome = Outcome()
    plan = await _plan(uow, account.plan_id)
    new_plan_id = changes.pop("plan_id", None)
    if new_plan_id is not None and new_plan_id != account.plan_id:
        plan = await _change_plan(uow, account, new_plan_id)
    old_status = account.status
    for key, value in changes.items():
        setattr(account, key, value)
    account.updated_at = utcnow()
    await repo.add(uow.session, account)
    if account.status in BLOCKED_STATUSES and old_status not in BLOCKED_STATUSES:
        outcome.revoked = await _revoke(
            uow, account_id=account.id, reason=f"account_{account.status}"
        )
    await uow.publish(events.account_event("updated", account, plan))
    outcome.value = (account, plan)
    return outcome


async def _change_plan(uow: UnitOfWork, account: Account, plan_id: int) -> Plan:
    plan = await repo.get(uow.session, Plan, plan_id)
    if plan is None:
        raise ValidationFailed(errors={"plan_id": ["Unknown plan."]})
    account.plan_id = plan_id
    subs = await repo.account_subscriptions(uow.session, account.id or 0)
    if subs:
        sub = subs[0]
        sub.plan_id = plan_id
        sub.updated_at = utcnow()
        await repo.add(uow.session, sub)
        await uow.publish(events.subscription_event("updated", sub, plan))
    return plan


async def delete_account(uow: UnitOfWork, actor: Principal, account_id: int) -> Outcome:
    """Closing an account keeps its data (billing, audit) and shuts every door."""
    account = await repo.get_scoped(uow.session, Account, actor, account_id, for_update=True)
    if account is None:
        raise NotFound("Account not found.")
    if not (actor.is_platform_staff or actor.role == "owner"):
        raise PermissionDenied("Only the account owner may close the account.")
    account.status = "cancelled"
    account.updated_at = utcnow()
    await repo.add(uow.session, account)
    revoked = await _revoke(uow, account_id=account.id, reason="account_cancelled")
    await uow.publish(events.account_event("deleted", account, await _plan(uow, account.plan_id)))
    return Outcome(None, revoked)


async def update_settings(
    uow: UnitOfWork, actor: Principal, data: s.AccountSettingsUpdate
) -> tuple[Account, Plan]:
    outcome = await update_account(
        uow, actor, actor.account_id, s.AccountUpdate(**data.model_dump(exclude_unset=True))
    )
    value: tuple[Account, Plan] = outcome.value
    return value


# --- plans and subscriptions -----------------------------------------------------------------


async def create_plan(uow: UnitOfWork, actor: Principal, data: s.PlanCreate) -> Plan:
    _staff_only(actor)
    if await repo.plan_by_slug(uow.session, data.slug):
        raise ValidationFailed(errors={"slug": ["A plan with this slug already exists."]})
    plan = Plan(**data.model_dump())
    await repo.add(uow.session, plan)
    await uow.publish(events.plan_event("created", plan))
    return plan


async def update_plan(uow: UnitOfWork, actor: Principal, plan_id: int, data: s.PlanUpdate) -> Plan:
    _staff_only(actor)
    plan = await repo.get(uow.session, Plan, plan_id)
    if plan is None:
        raise NotFound("Plan not found.")
    for key, value in data.model_dump(exclude_unset=True).items():
        setattr(plan, key, value)
    plan.updated_at = utcnow()
    await repo.add(uow.session, plan)
    await uow.publish(events.plan_event("updated", plan))
    return plan


async def get_subscription(uow: UnitOfWork, actor: Principal, sub_id: int) -> Subscription:
    _require_role(actor, "admin")
    sub = await repo.get_scoped(uow.session, Subscription, actor, sub_id)
    if sub is None:
        raise NotFound("Subscription not found.")
    return sub


async def create_subscription(
    uow: UnitOfWork, actor: Principal, data: s.SubscriptionCreate
) -> Subscription:
    _staff_only(actor)
    account, _ = await _account(uow, data.account_id)
    plan = await repo.get(uow.session, Plan, data.plan_id)
    if plan is None:
        raise ValidationFailed(errors={"plan_id": ["Unknown plan."]})
    current = await repo.account_subscriptions(uow.session, account.id or 0)
    now = utcnow()
    for old in current:
        if old.status == "active":
            old.status, old.updated_at = "cancelled", now
            await repo.add(uow.session, old)
            await uow.publish(
                events.subscription_event("updated", old, await _plan(uow, old.plan_id))
            )
    sub = Subscription(
        account_id=account.id or 0,
        plan_id=plan.id or 0,
        status=data.status,
        current_period_start=now,
        current_period_end=add_month(now),
    )
    account.plan_id = plan.id or 0
    await repo.add(uow.session, sub, account)
    await uow.publish(
        events.subscription_event("created", sub, plan),
        events.account_event("updated", account, plan),
    )
    return sub


async def update_subscription(
    uow: UnitOfWork, actor: Principal, sub_id: int, data: s.SubscriptionUpdate
) -> Subscription:
    _staff_only(actor)
    sub = await repo.get_scoped(uow.session, Subscription, actor, sub_id, for_update=True)
    if sub is None:
        raise NotFound("Subscription not found.")
    changes = data.model_dump(exclude_unset=True)
    if (
        changes.get("plan_id") is not None
        and await repo.get(uow.session, Plan, changes["plan_id"]) is None
    ):
        raise ValidationFailed(errors={"plan_id": ["Unknown plan."]})
    for key, value in changes.items():
        if value is not None:
            setattr(sub, key, value)
    sub.updated_at = utcnow()
    await repo.add(uow.session, sub)
    plan = await _plan(uow, sub.plan_id)
    await uow.publish(events.subscription_event("updated", sub, plan))
    if sub.status == "active":
        account, _ = await _account(uow, sub.account_id)
        if account.plan_id != plan.id:
            account.plan_id = plan.id or 0
            await repo.add(uow.session, account)
            await uow.publish(events.account_event("updated", account, plan))
    return sub


# --- sign-in, sessions, tokens -----------------------------------------------------------


def _throttle_keys(email: str, address: str | None) -> dict[str, int]:
    return {f"email:{email.lower()}": 0, **({f"addr:{address}": 1} if address else {})}


async def _check_throttle(
    uow: UnitOfWork, issuer: Issuer, email: str, address: str | None
) -> dict[str, Any]:
    rows = await repo.throttles(uow.session, list(_throttle_keys(email, address)))
    now = utcnow()
    locked = [r.locked_until for r in rows.values() if r.locked_until and r.locked_until > now]
    if locked:
        retry = max(1, math.ceil((max(locked) - now).total_seconds()))
        raise TooManyRequests(
            "Too many failed sign-in attempts. Try again later.",
            headers={"Retry-After": str(retry)},
        )
    return rows


def _record_failure(issuer: Issuer, rows: dict[str, Any]) -> None:
    cfg = issuer.settings
    now = utcnow()
    window = timedelta(seconds=cfg.login_window_seconds)
    for key, row in rows.items():
        if row.window_started_at + window <= now:
            row.failures, row.window_started_at, row.locked_until = 0, now, None
        row.failures += 1
        limit = (
            cfg.login_max_failures_per_account
            if key.startswith("email:")
            else cfg.login_max_failures_per_address
        )
        if row.failures >= limit:
            row.locked_until = now + window


async def authenticate(
    uow: UnitOfWork, issuer: Issuer, email: str, password: str, address: str | None
) -> tuple[User, Account, Plan]:
    """Check credentials with throttling per account and per client address. Must run
    in the system scope: the user is found by email across tenants."""
    rows = await _check_throttle(uow, issuer, email, address)
    user = await repo.user_by_email_any_tenant(uow.session, email)
    usable = user is not None and user.role != "system_bot"
    ok = await passwords.verify_password(user.password_hash if usable and user else None, password)
    if not ok or user is None:
        _record_failure(issuer, rows)
        await repo.add(uow.session, *rows.values())
        raise InvalidCredentials("Invalid email or password.")
    await repo.clear_throttle(uow.session, f"email:{email.lower()}")
    account, plan = await _account(uow, user.account_id)
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
        access=access.token,
        access_expires_at=_at(access.expires_at),
        session_id=sid,
    )
    if kind == "login":
        result.refresh, result.refresh_expires_at = await _new_refresh(uow, issuer, user, sid)
    return result


async def _new_refresh(
    uow: UnitOfWork, issuer: Issuer, user: User, sid: str
) -> tuple[str, datetime]:
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
    return token, expires


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
    row = await repo.refresh_token_any_tenant(uow.session, tokens.digest(token))
    if row is None:
        raise NotAuthenticated("Invalid refresh token.")
    family = await repo.get(uow.session, AuthSession, row.session_id)
    now = utcnow()
    if family is None or family.revoked_at is not None:
        raise NotAuthenticated("Session has been revoked.")
    if row.used_at is not None:
        await repo.revoke_session_rows(uow.session, [family.id], "refresh_reuse", now)
        raise RefreshTokenReused([family.id])
    if row.expires_at <= now:
        raise NotAuthenticated("Refresh token has expired.")
    user = await repo.get(uow.session, User, family.user_id)
    account, plan = await _account(uow, family.account_id)
    if account.status in BLOCKED_STATUSES:
        raise AccountBlocked(account.status)
    if user is None or not user.is_active:
        raise NotAuthenticated("User is inactive.")
    row.used_at = now
    new_refresh, refresh_expires = await _new_refresh(uow, issuer, user, family.id)
    family.expires_at = refresh_expires
    await repo.add(uow.session, row, family)
    access = await _sign(uow, issuer, user, family.id)
    return Session(
        user=user,
        account=account,
        plan=plan,
        access=access.token,
        access_expires_at=_at(access.expires_at),
        refresh=new_refresh,
        refresh_expires_at=refresh_expires,
        session_id=family.id,
    )


async def _revoke(
    uow: UnitOfWork,
    *,
    user_id: int | None = None,
    account_id: int | None = None,
    reason: str,
    keep: str | None = None,
) -> list[str]:
    live = await repo.live_sessions(
        uow.session, user_id=user_id, account_id=account_id, now=utcnow()
    )
    sids = [x.id for x in live if x.id != keep]
    await repo.revoke_session_rows(uow.session, sids, reason, utcnow())
    return sids


async def logout(uow: UnitOfWork, actor: Principal) -> list[str]:
    if actor.session_id is None:
        return []
    await repo.revoke_session_rows(uow.session, [actor.session_id], "logout", utcnow())
    return [actor.session_id]


async def change_password(
    uow: UnitOfWork, actor: Principal, data: s.ChangePasswordRequest
) -> list[str]:
    user = await repo.get_scoped(uow.session, User, actor, actor.user_id, for_update=True)
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
    return await _revoke(uow, user_id=user.id, reason="password_changed", keep=actor.session_id)


async def session_actor(uow: UnitOfWork, token_principal: Principal) -> Principal:
    """Auth's own check behind the token: the session is live, the user active, the
    account not blocked. The role comes from the database, so changes apply at once."""
    state = await repo.session_state(uow.session, _session_id(token_principal))
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
        return tokens.AccessToken(session.access, "", int(session.access_expires_at.timestamp()))
    if scheme.lower() == "apikey" and value:
        site = await repo.site_by_api_key_any_tenant(uow.session, tokens.digest(value))
        if site is None or not site.is_active or site.api_key_session_id is None:
            raise NotAuthenticated("Invalid API key.")
        account, _plan_row = await _account(uow, site.account_id)
        if account.status in BLOCKED_STATUSES:
            raise AccountBlocked(account.status)
        bot = await repo.bot_user(uow.session, site.account_id)
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


# --- users ---------------------------------------------------------------------------------


def _may_manage(actor: Principal, target: User) -> bool:
    return actor.is_platform_staff or ROLE_RANK[actor.role] > ROLE_RANK.get(target.role, 99)


def _may_assign(actor: Principal, role: str) -> None:
    if not (actor.is_platform_staff or ROLE_RANK[actor.role] > ROLE_RANK[role]):
        raise PermissionDenied(f"You may not assign the role {role!r}.")


async def _enforce_user_limit(uow: UnitOfWork, account_id: int) -> None:
    await repo.lock(uow.session, f"auth-users:{account_id}")
    _account_row, plan = await _account(uow, account_id)
    if await repo.count_members(uow.session, account_id) >= plan.max_users:
        raise PermissionDenied(
            f"Plan limit reached: the {plan.name} plan allows {plan.max_users} users (max_users)."
        )


async def get_user(uow: UnitOfWork, actor: Principal, user_id: int) -> User:
    user = await repo.get_scoped(uow.session, User, actor, user_id)
    if user is None or (user.role == "system_bot" and not actor.is_platform_staff):
        raise NotFound("User not found.")
    return user


async def create_user(
    uow: UnitOfWork,
    actor: Principal,
    data: s.UserCreate | s.TeamMemberCreate,
    *,
    active: bool = True,
) -> tuple[User, str | None]:
    """Returns the user and, when no password was given, a one-time temporary password."""
    _require_role(actor, "admin")
    _may_assign(actor, data.role)
    await _enforce_user_limit(uow, actor.account_id)
    temporary = None if data.password else secrets.token_urlsafe(12)
    user = await _insert_user(
        uow,
        User(
            account_id=actor.account_id,
            email=str(data.email).lower(),
            username=getattr(data, "username", None) or str(data.email).split("@")[0],
            first_name=data.first_name,
            last_name=data.last_name,
            role=data.role,
            password_hash=await passwords.hash_password(data.password or temporary or ""),
            is_active=active,
        ),
    )
    await uow.publish(events.user_event("created", user))
    return user, temporary


async def invite_user(uow: UnitOfWork, actor: Principal, data: s.UserInvite) -> tuple[User, str]:
    """An invited user starts inactive with a temporary password; `activate` lets them in."""
    user, temporary = await create_user(
        uow,
        actor,
        s.TeamMemberCreate(
            email=data.email, role=data.role, first_name=data.first_name, last_name=data.last_name
        ),
        active=False,
    )
    assert temporary is not None
    return user, temporary


async def update_user(
    uow: UnitOfWork, actor: Principal, user_id: int, data: s.UserUpdate
) -> Outcome:
    _require_role(actor, "admin")
    user = await get_user(uow, actor, user_id)
    changes = data.model_dump(exclude_unset=True)
    if not _may_manage(actor, user):
        raise PermissionDenied("You may not change a user whose role is not below yours.")
    if "role" in changes and changes["role"] is not None:
        _may_assign(actor, changes["role"])
    revoked: list[str] = []
    for key, value in changes.items():
        if value is not None:
            setattr(user, key, value)
    user.updated_at = utcnow()
    await repo.add(uow.session, user)
    if changes.get("is_active") is False:
        revoked = await _revoke(uow, user_id=user.id, reason="user_deactivated")
    await uow.publish(events.user_event("updated", user))
    return Outcome(user, revoked)


async def activate_user(uow: UnitOfWork, actor: Principal, user_id: int) -> User:
    outcome = await update_user(uow, actor, user_id, s.UserUpdate(is_active=True))
    value: User = outcome.value
    return value


async def delete_user(uow: UnitOfWork, actor: Principal, user_id: int) -> list[str]:
    _require_role(actor, "admin")
    user = await get_user(uow, actor, user_id)
    if user.id == actor.user_id:
        raise ValidationFailed("You cannot delete yourself.")
    if not _may_manage(actor, user) or user.role == "owner":
        raise PermissionDenied("You may not delete this user.")
    revoked = await _revoke(uow, user_id=user.id, reason="user_deleted")
    for access in await repo.site_access_for_user(uow.session, user.id or 0):
        await uow.publish(
            events.site_access_event("revoked", access.account_id, access.user_id, access.site_id)
        )
    user.is_active = False
    await uow.publish(events.user_event("deleted", user))
    await repo.remove(uow.session, user)
    return revoked


# --- sites -----------------------------------------------------------------------------------


def sees_all_sites(actor: Principal) -> bool:
    return actor.site_id is None and actor.role in SEES_ALL_SITES


def site_list_query(actor: Principal, *, own_account: bool = False) -> Any:
    """The sites the actor may see: a site key's one site, every site for owners and
    admins, the granted ones for editors and viewers."""
    account_id = actor.account_id if own_account else None
    if actor.site_id is not None:
        return repo.sites_query(actor, only_site=actor.site_id, account_id=account_id)
    if sees_all_sites(actor):
        return repo.sites_query(actor, account_id=account_id)
    return repo.sites_query(actor, accessible_to=actor.user_id, account_id=account_id)


async def get_site(
    uow: UnitOfWork,
    actor: Principal,
    site_id: int,
    *,
    write: bool = False,
    for_update: bool = False,
) -> Site:
    """Tenant, then site access, then role: a site the caller cannot see is a 404."""
    site = await repo.get_scoped(uow.session, Site, actor, site_id, for_update=for_update)
    if site is None or (actor.site_id is not None and site.id != actor.site_id):
        raise NotFound("Site not found.")
    if (
        not sees_all_sites(actor)
        and actor.site_id is None
        and not await repo.has_site_access(uow.session, actor.user_id, site_id)
    ):
        raise NotFound("Site not found.")
    if write:
        _require_role(actor, "editor")
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
    _require_role(actor, "editor")
    industry = await _industry(uow, data.industry_id)
    await repo.lock(uow.session, f"auth-sites:{actor.account_id}")
    _account_row, plan = await _account(uow, actor.account_id)
    if await repo.count_sites(uow.session, actor.account_id) >= plan.max_sites:
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
        slug=await _unique_slug(uow, Site, data.name, account_id=actor.account_id),
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
    for sector in await repo.site_sectors(uow.session, site_id):
        await uow.publish(events.sector_event("deleted", sector))
    for access in await repo.site_access_for_site(uow.session, site_id):
        await uow.publish(
            events.site_access_event("revoked", access.account_id, access.user_id, access.site_id)
        )
    revoked = []
    if site.api_key_session_id:
        revoked = [site.api_key_session_id]
        await repo.revoke_session_rows(uow.session, revoked, "site_deleted", utcnow())
    await uow.publish(events.site_event("deleted", site, industry))
    await repo.remove(uow.session, site)
    return revoked


async def generate_api_key(uow: UnitOfWork, actor: Principal, site_id: int) -> Outcome:
    """A new key for the WordPress plugin, shown once; the previous key and every token
    minted from it stop working."""
    _require_role(actor, "admin")
    site = await get_site(uow, actor, site_id, for_update=True)
    bot = await repo.bot_user(uow.session, site.account_id)
    if bot is None:
        account, _ = await _account(uow, site.account_id)
        bot = User(
            account_id=site.account_id,
            email=f"bot+{account.slug}@system.igny8.local",
            username=f"{account.slug}-bot",
            role="system_bot",
            password_hash=passwords.unusable_password_hash(),
        )
        await _insert_user(uow, bot)
        await uow.publish(events.user_event("created", bot))
    revoked = []
    if site.api_key_session_id:
        revoked = [site.api_key_session_id]
        await repo.revoke_session_rows(uow.session, revoked, "api_key_rotated", utcnow())
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
    industry = await repo.industry_by_slug(uow.session, data.industry_slug)
    if industry is None or not industry.is_active:
        raise ValidationFailed(errors={"industry_slug": ["Unknown industry."]})
    wanted: list[IndustrySector] = []
    unknown = []
    for slug in dict.fromkeys(data.sector_slugs):
        template = await repo.industry_sector_by_slug(uow.session, industry.id or 0, slug)
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
    _account_row, plan = await _account(uow, site.account_id)
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
    existing = {x.slug: x for x in await repo.site_sectors(uow.session, site_id, for_update=True)}
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
    _account_row, plan = await _account(uow, site.account_id)
    if await repo.count_active_sectors(uow.session, site.id or 0) >= plan.max_sectors_per_site:
        raise PermissionDenied(
            f"Plan limit reached: the {plan.name} plan allows "
            f"{plan.max_sectors_per_site} active sectors per site "
            f"(max_sectors_per_site)."
        )


async def get_sector(
    uow: UnitOfWork, actor: Principal, sector_id: int, *, write: bool = False
) -> Sector:
    sector = await repo.get_scoped(uow.session, Sector, actor, sector_id, for_update=write)
    if sector is None:
        raise NotFound("Sector not found.")
    try:
        await get_site(uow, actor, sector.site_id, write=write)
    except NotFound as exc:
        raise NotFound("Sector not found.") from exc
    return sector


async def sector_list_query(
    uow: UnitOfWork, actor: Principal, site_id: int | None, is_active: bool | None = None
) -> Any:
    if site_id is not None:
        await get_site(uow, actor, site_id)
        return repo.sectors_query(actor, site_id=site_id, is_active=is_active)
    return repo.sectors_query(actor, within_sites=site_list_query(actor), is_active=is_active)


async def create_sector(uow: UnitOfWork, actor: Principal, data: s.SectorCreate) -> Sector:
    site = await get_site(uow, actor, data.site_id, write=True)
    template = None
    if data.industry_sector_id is not None:
        template = await repo.get(uow.session, IndustrySector, data.industry_sector_id)
        if template is None:
            raise ValidationFailed(errors={"industry_sector_id": ["Unknown industry sector."]})
    if data.is_active:
        await _enforce_sector_limit(uow, site)
    slug = await _unique_slug(uow, Sector, data.name, site_id=site.id)
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
    row = await repo.site_access_row(uow.session, user_id, site_id)
    if row is not None:
        return row
    row = SiteUserAccess(
        account_id=account_id, user_id=user_id, site_id=site_id, granted_by_user_id=granted_by
    )
    await repo.add(uow.session, row)
    await uow.publish(events.site_access_event("granted", account_id, user_id, site_id))
    return row


async def grant_site_access(
    uow: UnitOfWork, actor: Principal, data: s.SiteAccessCreate
) -> SiteUserAccess:
    _require_role(actor, "admin")
    site = await get_site(uow, actor, data.site_id)
    user = await get_user(uow, actor, data.user_id)
    if user.account_id != site.account_id:
        raise ValidationFailed(errors={"user_id": ["User and site belong to different accounts."]})
    return await _grant(uow, site.account_id, user.id or 0, site.id or 0, actor.user_id)


async def revoke_site_access(uow: UnitOfWork, actor: Principal, access_id: int) -> None:
    _require_role(actor, "admin")
    row = await repo.get_scoped(uow.session, SiteUserAccess, actor, access_id)
    if row is None:
        raise NotFound("Site access not found.")
    await uow.publish(events.site_access_event("revoked", row.account_id, row.user_id, row.site_id))
    await repo.remove(uow.session, row)


async def group_public(uow: UnitOfWork, groups: Sequence[Group]) -> list[s.GroupPublic]:
    members = await repo.group_members(uow.session, [g.id for g in groups if g.id])
    return [
        s.GroupPublic.model_validate(g).model_copy(update={"user_ids": members[g.id or 0]})
        for g in groups
    ]


async def _members(uow: UnitOfWork, account_id: int, user_ids: Sequence[int]) -> list[int]:
    found = await repo.user_ids_in_account(uow.session, account_id, user_ids)
    missing = sorted(set(user_ids) - found)
    if missing:
        raise ValidationFailed(errors={"user_ids": [f"Unknown user(s): {missing}"]})
    return sorted(found)


async def get_group(uow: UnitOfWork, actor: Principal, group_id: int) -> Group:
    _require_role(actor, "admin")
    group = await repo.get_scoped(uow.session, Group, actor, group_id)
    if group is None:
        raise NotFound("Group not found.")
    return group


async def save_group(
    uow: UnitOfWork,
    actor: Principal,
    data: s.GroupCreate | s.GroupUpdate,
    group_id: int | None = None,
) -> Group:
    _require_role(actor, "admin")
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
        await repo.set_group_members(
            uow.session, group, await _members(uow, group.account_id, user_ids)
        )
    return group


async def delete_group(uow: UnitOfWork, actor: Principal, group_id: int) -> None:
    await repo.remove(uow.session, await get_group(uow, actor, group_id))


# --- me ---------------------------------------------------------------------------------------


_USER_FIELDS = tuple(s.UserPublic.model_fields)
_ACCOUNT_FIELDS = tuple(f for f in s.AccountPublic.model_fields if f != "plan")
_PLAN_FIELDS = tuple(s.PlanPublic.model_fields)
_SITE_FIELDS = tuple(s.SiteBrief.model_fields)


async def me(uow: UnitOfWork, token_principal: Principal) -> s.MeUser:
    """The caller's profile, account, plan and the sites they may open, after the same
    session check as every other endpoint (`session_actor`), all read in one statement.
    The role shown is the actor's (a site key's bot shows `system_bot`)."""
    row = await repo.me_view(uow.session, _session_id(token_principal), token_principal.site_id)
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


# --- catalogue ------------------------------------------------------------------------------


async def industries_public(
    uow: UnitOfWork, industries: Sequence[Industry]
) -> list[s.IndustryPublic]:
    sectors = await repo.industry_sectors(uow.session, [i.id for i in industries if i.id])
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
    industry = await repo.industry_by_slug(uow.session, slug)
    if industry is not None:
        return industry, False
    industry = Industry(name=name, slug=slug, description=description)
    await repo.add(uow.session, industry)
    return industry, True


async def upsert_industry_sector(
    uow: UnitOfWork, industry: Industry, *, name: str, slug: str, description: str = ""
) -> tuple[IndustrySector, bool]:
    sector = await repo.industry_sector_by_slug(uow.session, industry.id or 0, slug)
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


def parse_seed_keyword_csv(content: bytes | str) -> list[tuple[int, dict[str, str]]]:
    """Rows of a seed keyword CSV with their line numbers (the header is line 1)."""
    text_content = content.decode("utf-8-sig") if isinstance(content, bytes) else content
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
    industries, sectors = await repo.all_industries_and_sectors(uow.session)
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
                f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in exc.errors()
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
    existing = await repo.seed_keywords_matching(uow.session, list(parsed))
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
    rows = await repo.seed_keywords_by_ids(uow.session, ids)
    return [events.seed_keyword_data(kw, i, sec) for kw, i, sec in rows]


async def lookup_site(uow: UnitOfWork, account_id: int, site_id: int) -> dict[str, Any] | None:
    site = await repo.get(uow.session, Site, site_id)
    if site is None or site.account_id != account_id:
        return None
    industry = await repo.get(uow.session, Industry, site.industry_id) if site.industry_id else None
    sectors = await repo.site_sectors(uow.session, site_id)
    return {
        "site": events.site_data(site, industry),
        "sectors": [events.sector_data(x) for x in sectors],
    }


# --- prompts ---------------------------------------------------------------------------------

DEFAULT_PROMPTS: dict[str, str] = {
    "clustering": (
        "Group the following keywords into topic clusters. Each cluster gathers keywords "
        'that one article could rank for. Answer JSON: {"clusters": [{"name": ..., '
        '"description": ..., "keywords": [...]}]}.\n\nKeywords:\n[IGNY8_KEYWORDS]'
    ),
    "ideas": (
        "Propose content ideas for the cluster [IGNY8_CLUSTER] (keywords: [IGNY8_KEYWORDS]). "
        "For each idea give a title, a content type, a structure and an H2/H3 outline. "
        'Answer JSON: {"ideas": [...]}.'
    ),
    "content_generation": (
        "Write a complete, original article in HTML for: [IGNY8_IDEA]. Cover the outline "
        "[IGNY8_OUTLINE], use the keywords [IGNY8_KEYWORDS] naturally, and add a meta title "
        "and meta description. Answer JSON with title, content, meta_title, "
        "meta_description."
    ),
    "image_prompt_extraction": (
        "Read the article [IGNY8_CONTENT] and write one featured image prompt and "
        "[IGNY8_IMAGE_COUNT] in-article image prompts that illustrate its sections. "
        'Answer JSON: {"featured_prompt": ..., "in_article_prompts": [...]}.'
    ),
    "image_prompt_template": (
        "Create a high-quality [IGNY8_IMAGE_TYPE] image for a blog post titled "
        '"[IGNY8_POST_TITLE]": [IGNY8_IMAGE_PROMPT]'
    ),
    "negative_prompt": "text, watermark, logo, blurry, distorted, low quality, deformed hands",
}


def prompt_public(prompt_type: str, row: Prompt | None) -> s.PromptPublic:
    default = DEFAULT_PROMPTS[prompt_type]
    return s.PromptPublic(
        id=row.id if row else None,
        prompt_type=prompt_type,
        prompt_value=row.prompt_value if row else default,
        default_prompt=default,
        is_customized=row is not None,
        is_active=row.is_active if row else True,
        updated_at=row.updated_at if row else None,
    )


async def get_prompt(uow: UnitOfWork, actor: Principal, prompt_id: int) -> Prompt:
    _require_role(actor, "viewer")
    row = await repo.get_scoped(uow.session, Prompt, actor, prompt_id)
    if row is None:
        raise NotFound("Prompt not found.")
    return row


async def create_prompt(uow: UnitOfWork, actor: Principal, data: s.PromptCreate) -> Prompt:
    _require_role(actor, "editor")
    if await repo.prompt_by_type(uow.session, actor.account_id, data.prompt_type):
        raise ValidationFailed(
            errors={"prompt_type": ["A prompt of this type already exists; update it or use save."]}
        )
    row = Prompt(account_id=actor.account_id, **data.model_dump())
    await repo.add(uow.session, row)
    return row


async def update_prompt(
    uow: UnitOfWork, actor: Principal, prompt_id: int, data: s.PromptUpdate
) -> Prompt:
    _require_role(actor, "editor")
    row = await get_prompt(uow, actor, prompt_id)
    for key, value in data.model_dump(exclude_unset=True).items():
        if value is not None:
            setattr(row, key, value)
    row.updated_at = utcnow()
    await repo.add(uow.session, row)
    return row


async def delete_prompt(uow: UnitOfWork, actor: Principal, prompt_id: int) -> None:
    _require_role(actor, "editor")
    await repo.remove(uow.session, await get_prompt(uow, actor, prompt_id))


async def prompt_by_type(uow: UnitOfWork, actor: Principal, prompt_type: str) -> s.PromptPublic:
    _require_role(actor, "viewer")
    if prompt_type not in DEFAULT_PROMPTS:
        raise NotFound(f"Unknown prompt type {prompt_type!r}.")
    return prompt_public(
        prompt_type, await repo.prompt_by_type(uow.session, actor.account_id, prompt_type)
    )


async def save_prompt(uow: UnitOfWork, actor: Principal, data: s.PromptSave) -> s.PromptPublic:
    _require_role(actor, "editor")
    row = await repo.prompt_by_type(uow.session, actor.account_id, data.prompt_type)
    if row is None:
        row = Prompt(
            account_id=actor.account_id,
            prompt_type=data.prompt_type,
            prompt_value=data.prompt_value,
        )
    row.prompt_value, row.updated_at = data.prompt_value, utcnow()
    await repo.add(uow.session, row)
    return prompt_public(data.prompt_type, row)


async def reset_prompt(uow: UnitOfWork, actor: Principal, data: s.PromptReset) -> s.PromptPublic:
    _require_role(actor, "editor")
    row = await repo.prompt_by_type(uow.session, actor.account_id, data.prompt_type)
    if row is not None:
        await repo.remove(uow.session, row)
    return prompt_public(data.prompt_type, None)


# --- integration settings ----------------------------------------------------------------------

DEFAULT_INTEGRATIONS: dict[str, dict[str, Any]] = {
    "openai": {
        "base_url": "https://api.openai.com/v1",
        "model": "gpt-4o-mini",
        "image_model": "dall-e-3",
    },
    "runware": {"base_url": "https://api.runware.ai/v1", "model": "runware:100@1"},
    "image_generation": {
        "provider": "local",
        "model": "local-image",
        "image_type": "realistic",
        "max_in_article_images": 2,
        "image_format": "webp",
        "desktop_enabled": True,
        "mobile_enabled": True,
    },
}
KEYLESS_PROVIDERS = ("image_generation",)


def _provider(provider: str) -> str:
    if provider not in DEFAULT_INTEGRATIONS:
        raise NotFound(f"Unknown integration {provider!r}.")
    return provider


def integration_public(
    issuer: Issuer, provider: str, row: IntegrationSetting | None
) -> s.IntegrationPublic:
    key = None
    if row is not None and row.api_key_encrypted:
        try:
            key = issuer.secrets.decrypt(row.api_key_encrypted)
        except UndecryptableSecret:
            key = "unreadable"
    return s.IntegrationPublic(
        provider=provider,
        is_active=row.is_active if row else False,
        config={**DEFAULT_INTEGRATIONS[provider], **(row.config if row else {})},
        api_key=mask_secret(key),
        has_api_key=key is not None,
        updated_at=row.updated_at if row else None,
    )


async def get_integration(
    uow: UnitOfWork, actor: Principal, issuer: Issuer, provider: str, *, minimum: str = "admin"
) -> s.IntegrationPublic:
    _require_role(actor, minimum)
    provider = _provider(provider)
    return integration_public(
        issuer, provider, await repo.integration(uow.session, actor.account_id, provider)
    )


async def save_integration(
    uow: UnitOfWork, actor: Principal, issuer: Issuer, provider: str, data: s.IntegrationUpdate
) -> s.IntegrationPublic:
    _require_role(actor, "admin")
    provider = _provider(provider)
    if provider in KEYLESS_PROVIDERS and data.api_key:
        raise ValidationFailed(errors={"api_key": [f"{provider} takes no API key."]})
    row = await repo.integration(uow.session, actor.account_id, provider)
    if row is None:
        row = IntegrationSetting(account_id=actor.account_id, provider=provider)
    config = dict(row.config or {})
    config.update(data.config or {})
    for key in ("base_url", "model"):
        if getattr(data, key) is not None:
            config[key] = getattr(data, key)
    if provider == "image_generation" and config.get("provider") not in (
        None,
        "local",
        *[p for p in DEFAULT_INTEGRATIONS if p not in KEYLESS_PROVIDERS],
    ):
        raise ValidationFailed(errors={"config.provider": ["Unknown image provider."]})
    row.config = config
    if data.api_key is not None:
        row.api_key_encrypted = issuer.secrets.encrypt(data.api_key)
    row.is_active = data.is_active if data.is_active is not None else True
    row.updated_at = utcnow()
    await repo.add(uow.session, row)
    return integration_public(issuer, provider, row)


async def provider_credentials(
    uow: UnitOfWork,
    actor: Principal,
    issuer: Issuer,
    provider: str,
    override: s.IntegrationTest | None = None,
) -> tuple[str, str, dict[str, Any]]:
    """(base_url, api_key, config) for calling a provider: saved values unless overridden."""
    _require_role(actor, "admin")
    provider = _provider(provider)
    if provider in KEYLESS_PROVIDERS:
        raise ValidationFailed(f"{provider} has no endpoint of its own to call.")
    row = await repo.integration(uow.session, actor.account_id, provider)
    config = {**DEFAULT_INTEGRATIONS[provider], **(row.config if row else {})}
    key = override.api_key if override and override.api_key else None
    if key is None and row is not None and row.api_key_encrypted:
        try:
            key = issuer.secrets.decrypt(row.api_key_encrypted)
        except UndecryptableSecret as exc:
            raise ValidationFailed("The saved API key cannot be read; save it again.") from exc
    if not key:
        raise ValidationFailed(errors={"api_key": ["No API key saved for this provider."]})
    base_url = override.base_url if override and override.base_url else config["base_url"]
    return str(base_url).rstrip("/"), key, config


async def image_generation_settings(
    uow: UnitOfWork, actor: Principal, issuer: Issuer
) -> dict[str, Any]:
    public = await get_integration(uow, actor, issuer, "image_generation", minimum="viewer")
    return {"is_active": public.is_active, **public.config}


# --- AI settings for other services' jobs (internal command only) ------------------------------


class UnreadableIntegrationKey(Exception):
    """The account's saved API key cannot be decrypted (the platform secret changed)."""


async def ai_settings(
    uow: UnitOfWork, secrets: SecretBox, account_id: int, prompt_types: Sequence[str] | None = None
) -> dict[str, Any]:
    """What the account's AI jobs run with: its active OpenAI integration (API key in
    clear: for the internal command answer only, never an HTTP response) or `local`, and
    its saved prompts (types without one are absent: callers use their built-ins)."""
    row = await repo.integration(uow.session, account_id, "openai")
    openai: dict[str, str] | None = None
    if row is not None and row.is_active and row.api_key_encrypted:
        try:
            api_key = secrets.decrypt(row.api_key_encrypted)
        except UndecryptableSecret as exc:
            raise UnreadableIntegrationKey(
                "The saved OpenAI API key cannot be read; save it again."
            ) from exc
        config = {**DEFAULT_INTEGRATIONS["openai"], **(row.config or {})}
        openai = {
            "base_url": str(config["base_url"]).rstrip("/"),
            "api_key": api_key,
            "model": str(config["model"]),
        }
    prompts = await repo.account_prompts(uow.session, account_id, prompt_types)
    return {
        "provider": "openai" if openai else "local",
        "openai": openai,
        "prompts": {p.prompt_type: p.prompt_value for p in prompts},
    }
