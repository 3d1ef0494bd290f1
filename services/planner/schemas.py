"""Request and response models of planner's API (field names as the reference uses them)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

KeywordStatus = Literal["active", "mapped", "archived"]
ClusterStatus = Literal["active", "mapped", "archived"]
IdeaStatus = Literal["new", "queued", "completed"]
Intent = Literal["informational", "navigational", "commercial", "transactional"]
ContentType = Literal["post", "page", "product", "taxonomy"]
ContentStructure = Literal[
    "article", "guide", "listicle", "how_to", "comparison", "review", "landing_page"
]

MAX_BULK_IDS = 1000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _clean_text(value: str) -> str:
    cleaned = " ".join(value.split())
    if not cleaned:
        raise ValueError("This field may not be blank.")
    return cleaned


# --- keywords ------------------------------------------------------------------------


class KeywordCreate(Strict):
    keyword: str = Field(min_length=1, max_length=255)
    site_id: int
    sector_id: int
    volume: int = Field(default=0, ge=0)
    difficulty: int = Field(default=0, ge=0, le=100)
    intent: Intent = "informational"
    seed_keyword_id: int | None = None
    cluster_id: int | None = None
    status: KeywordStatus = "active"
    disabled: bool = False

    _clean = field_validator("keyword")(_clean_text)


class KeywordUpdate(Strict):
    keyword: str | None = Field(default=None, min_length=1, max_length=255)
    volume: int | None = Field(default=None, ge=0)
    difficulty: int | None = Field(default=None, ge=0, le=100)
    intent: Intent | None = None
    cluster_id: int | None = None
    status: KeywordStatus | None = None
    disabled: bool | None = None

    @field_validator("keyword")
    @classmethod
    def _keyword(cls, value: str | None) -> str | None:
        return None if value is None else _clean_text(value)


class KeywordOut(BaseModel):
    id: int
    keyword: str
    site_id: int
    sector_id: int
    sector_name: str | None = None
    volume: int
    difficulty: int
    intent: str
    seed_keyword_id: int | None
    cluster_id: int | None
    cluster_name: str | None = None
    status: str
    disabled: bool
    account_id: int
    created_at: datetime
    updated_at: datetime


class Ids(Strict):
    ids: list[int] = Field(min_length=1, max_length=MAX_BULK_IDS)


class BulkStatus(Ids):
    status: KeywordStatus


class BulkFromSeed(Strict):
    seed_keyword_ids: list[int] = Field(min_length=1, max_length=MAX_BULK_IDS)
    site_id: int
    sector_id: int


class AutoCluster(Strict):
    ids: list[int] = Field(min_length=1, max_length=MAX_BULK_IDS)
    sector_id: int | None = None


class TaskQueued(BaseModel):
    task_id: UUID


# --- clusters ------------------------------------------------------------------------


class ClusterCreate(Strict):
    name: str = Field(min_length=1, max_length=255)
    site_id: int
    sector_id: int
    description: str = ""
    status: ClusterStatus = "active"

    _clean = field_validator("name")(_clean_text)


class ClusterUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = None
    status: ClusterStatus | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else _clean_text(value)


class ClusterOut(BaseModel):
    id: int
    name: str
    description: str
    site_id: int
    sector_id: int
    keywords_count: int
    volume: int
    difficulty: int
    ideas_count: int
    content_count: int
    status: str
    account_id: int
    created_at: datetime
    updated_at: datetime


# --- ideas ---------------------------------------------------------------------------


class IdeaCreate(Strict):
    idea_title: str = Field(min_length=1, max_length=255)
    site_id: int
    sector_id: int
    cluster_id: int | None = None
    description: str = ""
    keywords: str = ""
    content_type: ContentType = "post"
    content_structure: ContentStructure = "article"
    estimated_word_count: int = Field(default=1500, ge=0, le=100_000)
    status: IdeaStatus = "new"

    _clean = field_validator("idea_title")(_clean_text)


class IdeaUpdate(Strict):
    idea_title: str | None = Field(default=None, min_length=1, max_length=255)
    cluster_id: int | None = None
    description: str | None = None
    keywords: str | None = None
    content_type: ContentType | None = None
    content_structure: ContentStructure | None = None
    estimated_word_count: int | None = Field(default=None, ge=0, le=100_000)
    status: IdeaStatus | None = None

    @field_validator("idea_title")
    @classmethod
    def _title(cls, value: str | None) -> str | None:
        return None if value is None else _clean_text(value)


class IdeaOut(BaseModel):
    id: int
    idea_title: str
    description: str
    keywords: str
    keyword_ids: list[int]
    cluster_id: int | None
    content_type: str
    content_structure: str
    estimated_word_count: int
    status: str
    site_id: int
    sector_id: int
    account_id: int
    queued_at: datetime | None
    created_at: datetime
    updated_at: datetime


class AutoGenerateIdeas(Strict):
    ids: list[int] = Field(min_length=1, max_length=MAX_BULK_IDS)


# --- CSV import ----------------------------------------------------------------------


class ImportError_(BaseModel):
    line: int
    errors: dict[str, list[str]]


class ImportResult(BaseModel):
    total_rows: int
    imported: int
    skipped_duplicates: int
    over_limit: int
    failed: int
    errors: list[ImportError_]
