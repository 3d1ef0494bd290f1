# SQLModel columns compare as `bool` to the type checker; they are SQL expressions.
# mypy: disable-error-code="arg-type, union-attr, attr-defined"
"""Every query auth runs, one module per sub-domain (the names of `service/` and `api/`):
`sessions` (sessions, tokens, signing keys, throttles, and the cross-tenant lookups by a
secret, which say so in their names), `accounts`, `sites`, `catalogue`, `ai_config`.

Each aggregate a caller lists or opens by id has a repository on the kernel's base
(`libs/common/repository.py`): made for the caller's `Visibility` (platform staff see
every account, everyone else their own; row-level security is the second wall), with
the filters, ordering and paging its list declares in `schemas.py`. Rows are the
SQLModel instances the domain code changes. This module holds what they all share.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.ids import MAX_BIGINT
from libs.common.repository import Repository, Visibility
from libs.common.security import Principal
from services.auth.models import AuthModel

M = TypeVar("M", bound=AuthModel)


def visibility_of(actor: Principal) -> Visibility:
    """The accounts an actor may read: platform staff every one, others their own."""
    if actor.is_platform_staff:
        return Visibility.all_accounts()
    return Visibility(actor.account_id)


class AuthRepository(Repository[M]):
    """The kernel's repository over one of auth's tables, answering its SQLModel rows."""

    async def get_for_update(self, row_id: int) -> M | None:
        """The caller's row, locked for the rest of the transaction."""
        if not 0 < row_id <= MAX_BIGINT:
            return None
        t = self.table
        query = self.select().where(*self.scope(), t.c.id == row_id).with_for_update()
        found = await self.fetch(query)
        return found[0] if found else None


async def get(session: AsyncSession, model: type[M], id_: Any) -> M | None:
    """A row by primary key, whoever's it is (the transaction's tenant setting and
    row-level security still apply)."""
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


async def slug_taken(session: AsyncSession, model: type[AuthModel], slug: str, **same: Any) -> bool:
    query = select(func.count()).select_from(model).where(model.slug == slug)
    for column, value in same.items():
        query = query.where(getattr(model, column) == value)
    return bool((await session.execute(query)).scalar_one())
