"""What every part of auth's domain logic shares: its errors, the `Outcome` of a change
that revoked sessions, role checks, slugs, and the account-and-plan lookup."""

from __future__ import annotations

import calendar
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from libs.common.auth import BLOCKED_ACCOUNT_STATUSES
from libs.common.problems import DomainError, NotAuthenticated, NotFound, PermissionDenied
from libs.common.security import Principal
from libs.common.uow import UnitOfWork
from services.auth import repository as repo
from services.auth.models import Account, Plan

BLOCKED_STATUSES = BLOCKED_ACCOUNT_STATUSES  # the platform's one definition
# Roles that see every site of their account without a grant (unless bound to one site).
SEES_ALL_SITES = ("owner", "admin", "developer")

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


async def unique_slug(uow: UnitOfWork, model: Any, name: str, **same: Any) -> str:
    base = slugify(name)
    candidate, n = base, 1
    while await repo.slug_taken(uow.session, model, candidate, **same):
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def check_role(actor: Principal, minimum: str) -> None:
    if not actor.has_role(minimum):
        raise PermissionDenied("You do not have permission to perform this action.")


def staff_only(actor: Principal) -> None:
    if not actor.is_platform_staff:
        raise PermissionDenied("Only platform staff may do this.")


async def plan_row(uow: UnitOfWork, plan_id: int) -> Plan:
    plan = await repo.get(uow.session, Plan, plan_id)
    if plan is None:
        raise RuntimeError(f"plan {plan_id} vanished")
    return plan


async def account_and_plan(uow: UnitOfWork, account_id: int) -> tuple[Account, Plan]:
    account = await repo.get(uow.session, Account, account_id)
    if account is None:
        raise NotFound("Account not found.")
    return account, await plan_row(uow, account.plan_id)


def sees_all_sites(actor: Principal) -> bool:
    return actor.site_id is None and actor.role in SEES_ALL_SITES
