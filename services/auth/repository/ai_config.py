# SQLModel columns compare as `bool` to the type checker; they are SQL expressions.
# mypy: disable-error-code="arg-type, union-attr, attr-defined, operator"
# mypy: disable-error-code="return-value, call-overload"
"""The account's AI configuration: prompts and integration settings."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.auth.models import IntegrationSetting, Prompt
from services.auth.repository import AuthRepository


class PromptRepository(AuthRepository[Prompt]):
    model = Prompt


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
