"""Tenancy, who: accounts and registration, subscriptions, users. A change that locks
someone out (deactivation, deletion, a blocked account) revokes their sessions."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError

from libs.common.events import utcnow
from libs.common.problems import NotFound, PermissionDenied, ValidationFailed
from libs.common.repository import ListQuery, Page, Visibility
from libs.common.security import ROLE_RANK, Principal
from libs.common.uow import UnitOfWork
from services.auth import events, passwords
from services.auth import repository as repo
from services.auth import schemas as s
from services.auth.models import Account, Plan, Subscription, User
from services.auth.repository import accounts as accounts_repo
from services.auth.repository import catalogue as catalogue_repo
from services.auth.repository import sessions as sessions_repo
from services.auth.repository import sites as sites_repo
from services.auth.repository import visibility_of
from services.auth.repository.accounts import (
    AccountRepository,
    SubscriptionRepository,
    UserRepository,
)
from services.auth.service.common import (
    BLOCKED_STATUSES,
    Outcome,
    account_and_plan,
    add_month,
    check_role,
    plan_row,
    staff_only,
    unique_slug,
)
from services.auth.service.sessions import revoke_live_sessions

NEW_ACCOUNTS_REGISTER = (
    "A new account is opened by registering (POST /api/v1/auth/register/); only platform "
    "staff open an account for someone else."
)

# --- accounts and registration ---------------------------------------------------------


async def insert_user(uow: UnitOfWork, user: User) -> User:
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
    plan = await catalogue_repo.plan_by_slug(uow.session, plan_slug)
    if plan is None or not plan.is_active:
        raise ValidationFailed(errors={"plan_slug": [f"Unknown plan {plan_slug!r}."]})
    if await sessions_repo.user_by_email_any_tenant(uow.session, email):
        raise ValidationFailed(errors={"email": ["A user with this email already exists."]})
    await repo.lock(uow.session, "auth-account-slugs")
    account = Account(
        name=name,
        slug=await unique_slug(uow, Account, name),
        plan_id=plan.id or 0,
        status=status,
        billing_email=email,
    )
    await repo.add(uow.session, account)
    user = await insert_user(
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


async def list_accounts(
    uow: UnitOfWork, actor: Principal, query: ListQuery[Any]
) -> Page[s.AccountPublic]:
    check_role(actor, "admin")
    page = await AccountRepository(uow.session, visibility_of(actor)).page(query)
    plans = await catalogue_repo.plans_by_id(uow.session, [a.plan_id for a in page.rows])
    return Page(page.count, [s.account_public(a, plans[a.plan_id]) for a in page.rows])


async def get_account(uow: UnitOfWork, actor: Principal, account_id: int) -> tuple[Account, Plan]:
    check_role(actor, "viewer")
    account = await AccountRepository(uow.session, visibility_of(actor)).get(account_id)
    if account is None:
        raise NotFound("Account not found.")
    return account, await plan_row(uow, account.plan_id)


async def create_account(
    uow: UnitOfWork, actor: Principal, data: s.AccountCreate
) -> tuple[Account, Plan]:
    """Platform staff opening an account for someone. Owners and admins are refused with
    the way in: an account's owner is a new user, so a new account is a registration
    (docs/contracts.md, where auth departs from the reference)."""
    if not actor.is_platform_staff:
        raise PermissionDenied(NEW_ACCOUNTS_REGISTER)
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
    check_role(actor, "admin")
    accounts = AccountRepository(uow.session, visibility_of(actor))
    account = await accounts.get_for_update(account_id)
    if account is None:
        raise NotFound("Account not found.")
    changes = data.model_dump(exclude_unset=True)
    # A body that repeats the current status and plan (a GET put back) changes neither.
    if changes.get("status") == account.status:
        del changes["status"]
    if changes.get("plan_id") == account.plan_id:
        del changes["plan_id"]
    if ("status" in changes or "plan_id" in changes) and not actor.is_platform_staff:
        raise PermissionDenied("Only platform staff may change an account's status or plan.")
    outcome = Outcome()
    plan = await plan_row(uow, account.plan_id)
    new_plan_id = changes.pop("plan_id", None)
    if new_plan_id is not None and new_plan_id != account.plan_id:
        plan = await _change_plan(uow, account, new_plan_id)
    old_status = account.status
    for key, value in changes.items():
        setattr(account, key, value)
    account.updated_at = utcnow()
    await repo.add(uow.session, account)
    if account.status in BLOCKED_STATUSES and old_status not in BLOCKED_STATUSES:
        outcome.revoked = await revoke_live_sessions(
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
    subs = await accounts_repo.account_subscriptions(uow.session, account.id or 0)
    if subs:
        sub = subs[0]
        sub.plan_id = plan_id
        sub.updated_at = utcnow()
        await repo.add(uow.session, sub)
        await uow.publish(events.subscription_event("updated", sub, plan))
    return plan


async def delete_account(uow: UnitOfWork, actor: Principal, account_id: int) -> Outcome:
    """Closing an account keeps its data (billing, audit) and shuts every door."""
    accounts = AccountRepository(uow.session, visibility_of(actor))
    account = await accounts.get_for_update(account_id)
    if account is None:
        raise NotFound("Account not found.")
    if not (actor.is_platform_staff or actor.role == "owner"):
        raise PermissionDenied("Only the account owner may close the account.")
    account.status = "cancelled"
    account.updated_at = utcnow()
    await repo.add(uow.session, account)
    revoked = await revoke_live_sessions(uow, account_id=account.id, reason="account_cancelled")
    await uow.publish(
        events.account_event("deleted", account, await plan_row(uow, account.plan_id))
    )
    return Outcome(None, revoked)


async def update_settings(
    uow: UnitOfWork, actor: Principal, data: s.AccountSettingsUpdate
) -> tuple[Account, Plan]:
    outcome = await update_account(
        uow, actor, actor.account_id, s.AccountUpdate(**data.model_dump(exclude_unset=True))
    )
    value: tuple[Account, Plan] = outcome.value
    return value


async def subscriptions_public(
    uow: UnitOfWork, rows: Sequence[Subscription]
) -> list[s.SubscriptionPublic]:
    plans = await catalogue_repo.plans_by_id(uow.session, [x.plan_id for x in rows])
    return [
        s.SubscriptionPublic.model_validate(x).model_copy(
            update={"plan_slug": plans[x.plan_id].slug}
        )
        for x in rows
    ]


async def list_subscriptions(
    uow: UnitOfWork, actor: Principal, query: ListQuery[Any]
) -> Page[s.SubscriptionPublic]:
    check_role(actor, "admin")
    page = await SubscriptionRepository(uow.session, visibility_of(actor)).page(query)
    return Page(page.count, await subscriptions_public(uow, page.rows))


async def get_subscription(uow: UnitOfWork, actor: Principal, sub_id: int) -> Subscription:
    check_role(actor, "admin")
    sub = await SubscriptionRepository(uow.session, visibility_of(actor)).get(sub_id)
    if sub is None:
        raise NotFound("Subscription not found.")
    return sub


async def create_subscription(
    uow: UnitOfWork, actor: Principal, data: s.SubscriptionCreate
) -> Subscription:
    staff_only(actor)
    account, _ = await account_and_plan(uow, data.account_id)
    plan = await repo.get(uow.session, Plan, data.plan_id)
    if plan is None:
        raise ValidationFailed(errors={"plan_id": ["Unknown plan."]})
    current = await accounts_repo.account_subscriptions(uow.session, account.id or 0)
    now = utcnow()
    for old in current:
        if old.status == "active":
            old.status, old.updated_at = "cancelled", now
            await repo.add(uow.session, old)
            await uow.publish(
                events.subscription_event("updated", old, await plan_row(uow, old.plan_id))
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
    staff_only(actor)
    subs = SubscriptionRepository(uow.session, visibility_of(actor))
    sub = await subs.get_for_update(sub_id)
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
    plan = await plan_row(uow, sub.plan_id)
    await uow.publish(events.subscription_event("updated", sub, plan))
    if sub.status == "active":
        account, _ = await account_and_plan(uow, sub.account_id)
        if account.plan_id != plan.id:
            account.plan_id = plan.id or 0
            await repo.add(uow.session, account)
            await uow.publish(events.account_event("updated", account, plan))
    return sub


# --- users ---------------------------------------------------------------------------------


def _may_manage(actor: Principal, target: User) -> bool:
    return actor.is_platform_staff or ROLE_RANK[actor.role] > ROLE_RANK.get(target.role, 99)


def _may_assign(actor: Principal, role: str) -> None:
    if not (actor.is_platform_staff or ROLE_RANK[actor.role] > ROLE_RANK[role]):
        raise PermissionDenied(f"You may not assign the role {role!r}.")


async def _enforce_user_limit(uow: UnitOfWork, account_id: int) -> None:
    await repo.lock(uow.session, f"auth-users:{account_id}")
    _account_row, plan = await account_and_plan(uow, account_id)
    if await accounts_repo.count_members(uow.session, account_id) >= plan.max_users:
        raise PermissionDenied(
            f"Plan limit reached: the {plan.name} plan allows {plan.max_users} users (max_users)."
        )


async def list_users(
    uow: UnitOfWork, actor: Principal, query: ListQuery[Any], *, own_account: bool = False
) -> Page[s.UserPublic]:
    """Users the actor manages; `own_account` keeps platform staff to their own team."""
    check_role(actor, "admin")
    visibility = Visibility(actor.account_id) if own_account else visibility_of(actor)
    page = await UserRepository(uow.session, visibility).page(query)
    return Page(page.count, [s.UserPublic.model_validate(u) for u in page.rows])


async def get_user(uow: UnitOfWork, actor: Principal, user_id: int) -> User:
    users = UserRepository(uow.session, visibility_of(actor), include_bots=actor.is_platform_staff)
    user = await users.get(user_id)
    if user is None:
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
    check_role(actor, "admin")
    _may_assign(actor, data.role)
    await _enforce_user_limit(uow, actor.account_id)
    temporary = None if data.password else secrets.token_urlsafe(12)
    user = await insert_user(
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
    check_role(actor, "admin")
    user = await get_user(uow, actor, user_id)
    # A GET answer put back names the role and flag the user has: no change asked.
    changes = {k: v for k, v in data.model_dump(exclude_unset=True).items()
               if not (k in ("role", "is_active") and v == getattr(user, k))}
    if user.id == actor.user_id and not actor.is_platform_staff:
        # One's own profile, as DRF's user view let an owner or admin edit it; one's
        # own role and active flag stay with whoever is above.
        if any(changes.get(k) is not None for k in ("role", "is_active")):
            raise PermissionDenied("You may not change your own role or deactivate yourself.")
    elif not _may_manage(actor, user):
        raise PermissionDenied("You may not change a user whose role is not below yours.")
    if "role" in changes and changes["role"] is not None:
        _may_assign(actor, changes["role"])
    old_role = user.role
    for key, value in changes.items():
        if value is not None:
            setattr(user, key, value)
    user.updated_at = utcnow()
    await repo.add(uow.session, user)
    revoked: list[str] = []
    # Other services read the role from the token: a deactivated or demoted user's tokens
    # must stop working now, not when they expire. A promotion keeps them (a token that
    # under-states the role grants nothing extra; the next refresh carries the new one).
    if not user.is_active:
        revoked = await revoke_live_sessions(uow, user_id=user.id, reason="user_deactivated")
    elif ROLE_RANK.get(user.role, 0) < ROLE_RANK.get(old_role, 0):
        revoked = await revoke_live_sessions(uow, user_id=user.id, reason="role_lowered")
    await uow.publish(events.user_event("updated", user))
    return Outcome(user, revoked)


async def activate_user(uow: UnitOfWork, actor: Principal, user_id: int) -> User:
    outcome = await update_user(uow, actor, user_id, s.UserUpdate(is_active=True))
    value: User = outcome.value
    return value


async def delete_user(uow: UnitOfWork, actor: Principal, user_id: int) -> list[str]:
    check_role(actor, "admin")
    user = await get_user(uow, actor, user_id)
    if user.id == actor.user_id:
        raise ValidationFailed("You cannot delete yourself.")
    if not _may_manage(actor, user) or user.role == "owner":
        raise PermissionDenied("You may not delete this user.")
    revoked = await revoke_live_sessions(uow, user_id=user.id, reason="user_deleted")
    for access in await sites_repo.site_access_for_user(uow.session, user.id or 0):
        await uow.publish(
            events.site_access_event("revoked", access.account_id, access.user_id, access.site_id)
        )
    user.is_active = False
    await uow.publish(events.user_event("deleted", user))
    await repo.remove(uow.session, user)
    return revoked
