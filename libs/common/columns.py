"""Column helpers for SQLModel tables that more than one service declares the same way."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, func
from sqlmodel import Field

from libs.common.events import utcnow


def created_timestamp() -> Any:
    """When the row was made: set in Python (so it is known before a refresh) and by the
    database for rows written outside the ORM (COPY, raw SQL)."""
    return Field(
        default_factory=utcnow,
        sa_type=DateTime(timezone=True),
        nullable=False,
        sa_column_kwargs={"server_default": func.now()},
    )


def optional_timestamp() -> Any:
    """A moment that may not have happened yet (deleted, revoked, last synced, ...)."""
    return Field(default=None, sa_type=DateTime(timezone=True), nullable=True)


def one_of(column: str, choices: Iterable[str], *, name: str) -> CheckConstraint:
    """A CHECK that `column` holds one of `choices`, usually a `StrEnum`: the model's
    `__table_args__`, its migration and its schemas then read the same list of values.
    Values are our own identifiers, never user input."""
    values = ", ".join(f"'{value}'" for value in choices)
    return CheckConstraint(f"{column} IN ({values})", name=name)
