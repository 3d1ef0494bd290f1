"""Tables for the kernel's own tests of its repository base (and what services declare
from the kernel into their metadata), on a registry of their own as a service has."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Identity
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from libs.common.ai_jobs import ai_task_logs_in
from libs.common.columns import created_timestamp, optional_timestamp
from libs.common.directory import Directory


class KernelTestModel(SQLModel, registry=registry()):
    pass


class Thing(KernelTestModel, table=True):
    """A tenant row with a site, soft-deleted."""

    __tablename__ = "things"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(),
                                                          primary_key=True))
    account_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    site_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    name: str = Field(max_length=100)
    status: str = Field(default="new", max_length=16)
    volume: int = 0
    created_at: datetime | None = created_timestamp()
    updated_at: datetime | None = created_timestamp()
    deleted_at: datetime | None = optional_timestamp()


class Label(KernelTestModel, table=True):
    """A tenant row without a site, deleted for good."""

    __tablename__ = "labels"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(),
                                                          primary_key=True))
    account_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    text: str = Field(max_length=100)


class Colour(KernelTestModel, table=True):
    """A global row (no account)."""

    __tablename__ = "colours"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(),
                                                          primary_key=True))
    name: str = Field(max_length=100)


# Declared into this registry's metadata, as a service declares it.
DIRECTORY = Directory(KernelTestModel.metadata)
AI_TASK_LOGS = ai_task_logs_in(KernelTestModel.metadata)

