# SQLModel columns compare as `bool` to the type checker; they are SQL expressions.
# mypy: disable-error-code="arg-type, union-attr, attr-defined, operator"
# mypy: disable-error-code="return-value, call-overload"
"""Tenancy, who: accounts, subscriptions, users."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.repository import Visibility
from services.auth.models import Account, Subscription, User
from services.auth.repository import AuthRepository


class AccountRepository(AuthRepository[Account]):
    model = Account
    tenant_column = "id"  # an account is its own tenant


class SubscriptionRepository(AuthRepository[Subscription]):
    model = Subscription


class UserRepository(AuthRepository[User]):
    """People of the account. A site key's bot user is left out unless asked for: it is
    no member (never listed, never counted against `max_users`)."""

    model = User

    def __init__(
        self, session: AsyncSession, visibility: Visibility, *, include_bots: bool = False
    ) -> None:
        super().__init__(session, visibility)
        self.include_bots = include_bots

    def scope(self, t: Any = None) -> list[ColumnElement[bool]]:
        t = self.table if t is None else t
        conditions = super().scope(t)
        if not self.include_bots:
            conditions.append(t.c.role != "system_bot")
        return conditions


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
