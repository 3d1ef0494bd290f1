"""What writer's API reads and answers (field names as the reference uses them): request
and response models, and each list's filters and ordering, declared once for the OpenAPI
parameters, their validation and the SQL (`libs/common/repository.py`). Bodies that
create or change a resource are `WriteModel`s of the resource GET answers, so a GET
answer can be edited and PUT back; each update body is its create body made partial
(`partial_of`, ADR 0030), the create body declaring every field once with the default a
row gets when it is left out."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field

from libs.common.content_kinds import ContentStructure, ContentType
from libs.common.fields import Name
from libs.common.ids import Id
from libs.common.repository import (
    Choice,
    Equals,
    FilterSet,
    ListQuery,
    Orderings,
    Search,
    SiteFilters,
)
from libs.common.schemas import ActionBody, Ids, WriteModel, partial_of
from services.writer.models import (
    ContentSource,
    ContentStatus,
    ImageStatus,
    ImageType,
    TaskStatus,
    TaxonomyType,
)

MAX_WORDS = 100_000


class TaskQueued(BaseModel):
    task_id: UUID


class Scoped(BaseModel):
    """What every tenant row shows: its id, owner, site and sector, and when."""

    id: int
    account_id: int
    site_id: int
    sector_id: int
    created_at: datetime
    updated_at: datetime


# --- tasks -----------------------------------------------------------------------------


class TaskFilters(SiteFilters):
    status = Choice(TaskStatus)
    cluster_id = Equals(Id)
    content_type = Choice(ContentType)
    content_structure = Choice(ContentStructure)
    search = Search("title", "keywords", description="Search by title or keywords")


TASK_ORDERING = Orderings("created_at", "updated_at", "id", "title", "status", "word_count",
                          "content_type", "content_structure")
TaskQuery = ListQuery.of(TaskFilters, TASK_ORDERING)


class TaskOut(Scoped):
    title: str
    description: str
    keywords: str
    primary_keyword: str
    cluster_id: int | None
    idea_id: int | None
    content_type: ContentType
    content_structure: ContentStructure
    word_count: int
    status: TaskStatus
    prompt_override: str | None
    author_profile_id: int | None
    # The task's live content, once written.
    content_id: int | None = None


class TaskCreate(WriteModel):
    resource = TaskOut

    title: Name
    site_id: Id
    sector_id: Id
    cluster_id: Id | None = None
    description: str = ""
    keywords: str = ""
    primary_keyword: str = Field(default="", max_length=255)
    content_type: ContentType = ContentType.POST
    content_structure: ContentStructure = ContentStructure.ARTICLE
    word_count: int = Field(default=1500, ge=0, le=MAX_WORDS)
    status: TaskStatus = TaskStatus.DRAFT
    prompt_override: str | None = None
    author_profile_id: Id | None = None



@partial_of(TaskCreate, fixed={"site_id", "sector_id"})
class TaskWrite(WriteModel):
    pass


class BulkTaskStatus(Ids):
    status: TaskStatus


class AutoGenerateContent(Ids):
    """`run_id`: an automation run's id, carried into the job's events."""

    run_id: str | None = Field(default=None, max_length=64)


# --- content ---------------------------------------------------------------------------


class ContentFilters(SiteFilters):
    status = Choice(ContentStatus)
    content_type = Choice(ContentType)
    task_id = Equals(Id)
    search = Search("title", description="Search by title")


CONTENT_ORDERING = Orderings("created_at", "updated_at", "id", "title", "status",
                             "word_count", "optimizer_score")
ContentQuery = ListQuery.of(ContentFilters, CONTENT_ORDERING)


class ContentOut(Scoped):
    task_id: int | None
    cluster_id: int | None
    title: str
    html: str
    word_count: int
    meta_title: str
    meta_description: str
    slug: str
    primary_keyword: str
    secondary_keywords: list[str]
    tags: list[str]
    categories: list[str]
    content_type: ContentType
    content_structure: ContentStructure
    status: ContentStatus
    source: ContentSource
    model: str
    external_id: str | None
    external_url: str | None
    external_status: str | None
    optimizer_score: int | None
    revision: int


class ContentCreate(WriteModel):
    resource = ContentOut

    title: Name
    site_id: Id
    sector_id: Id
    task_id: Id | None = None
    html: str = ""
    meta_title: str = Field(default="", max_length=255)
    meta_description: str = Field(default="", max_length=500)
    slug: str = Field(default="", max_length=255, pattern=r"^[a-z0-9-]*$")
    primary_keyword: str = Field(default="", max_length=255)
    secondary_keywords: list[str] = Field(default_factory=list, max_length=100)
    tags: list[str] = Field(default_factory=list, max_length=100)
    categories: list[str] = Field(default_factory=list, max_length=100)
    content_type: ContentType = ContentType.POST
    content_structure: ContentStructure = ContentStructure.ARTICLE
    status: ContentStatus = ContentStatus.DRAFT
    cluster_id: Id | None = None



@partial_of(ContentCreate, fixed={"site_id", "sector_id", "task_id"})
class ContentWrite(WriteModel):
    """`word_count` is counted from `html`; `revision` goes up on every change."""


class ContentIds(Ids):
    run_id: str | None = Field(default=None, max_length=64)


# --- images ----------------------------------------------------------------------------


class ImageFilters(SiteFilters):
    image_type = Choice(ImageType)
    status = Choice(ImageStatus)
    content_id = Equals(Id)
    task_id = Equals(Id)


IMAGE_ORDERING = Orderings("created_at", "updated_at", "id", "position", "image_type",
                           "status", default="-created_at")
ImageQuery = ListQuery.of(ImageFilters, IMAGE_ORDERING)


class ImageOut(Scoped):
    content_id: int | None
    task_id: int | None
    image_type: ImageType
    position: int
    prompt: str
    negative_prompt: str
    alt_text: str
    status: ImageStatus
    error: str | None  # why it failed
    # The file's URL (`{id}/file/` answers it too), once generated.
    image_url: str | None = None
    sha256: str | None
    mime_type: str | None
    file_size: int | None
    width: int | None
    height: int | None
    provider: str
    model: str


class ImageCreate(WriteModel):
    """An image of a content, or of a task (its content's site and sector)."""

    resource = ImageOut

    content_id: Id | None = None
    task_id: Id | None = None
    image_type: ImageType = ImageType.FEATURED
    position: int = Field(default=0, ge=0, le=1000)
    prompt: str = Field(default="", max_length=4000)
    negative_prompt: str = Field(default="", max_length=2000)
    alt_text: str = Field(default="", max_length=300)
    status: ImageStatus = ImageStatus.PENDING


@partial_of(ImageCreate, fixed={"content_id", "task_id"})
class ImageWrite(WriteModel):
    pass


class BulkImageStatus(Ids):
    status: ImageStatus


class FileUrl(BaseModel):
    url: str


class ImageIds(Ids):
    run_id: str | None = Field(default=None, max_length=64)


# --- taxonomies ------------------------------------------------------------------------


class TaxonomyFilters(FilterSet):
    taxonomy_type = Choice(TaxonomyType)
    site_id = Equals(Id)
    external_id = Equals(str)
    search = Search("name", "slug", description="Search by name or slug")


TAXONOMY_ORDERING = Orderings("created_at", "updated_at", "id", "name", "slug",
                              "taxonomy_type")
TaxonomyQuery = ListQuery.of(TaxonomyFilters, TAXONOMY_ORDERING)


class TaxonomyOut(BaseModel):
    id: int
    account_id: int
    site_id: int
    name: str
    slug: str
    taxonomy_type: TaxonomyType
    description: str
    external_id: str | None
    external_taxonomy: str | None
    created_at: datetime
    updated_at: datetime


class TaxonomyCreate(WriteModel):
    """`slug` is made from the name when absent or empty."""

    resource = TaxonomyOut

    name: Name
    site_id: Id
    slug: str = Field(default="", max_length=255, pattern=r"^[a-z0-9-]*$")
    taxonomy_type: TaxonomyType = TaxonomyType.CATEGORY
    description: str = ""
    external_id: str | None = Field(default=None, max_length=64)
    external_taxonomy: str | None = Field(default=None, max_length=64)



@partial_of(TaxonomyCreate, fixed={"site_id"})
class TaxonomyWrite(WriteModel):
    """An empty `slug` is made again from the name."""


# --- author profiles -------------------------------------------------------------------


class AuthorProfileFilters(FilterSet):
    is_active = Equals(bool)
    language = Equals(str)
    search = Search("name", description="Search by name")


AUTHOR_ORDERING = Orderings("created_at", "updated_at", "id", "name", "language")
AuthorProfileQuery = ListQuery.of(AuthorProfileFilters, AUTHOR_ORDERING)


class AuthorProfileOut(BaseModel):
    id: int
    account_id: int
    name: str
    description: str
    tone: str
    language: str
    structure_template: str
    is_active: bool
    created_at: datetime
    updated_at: datetime


class AuthorProfileCreate(WriteModel):
    resource = AuthorProfileOut

    name: Name
    description: str = ""
    tone: str = Field(default="", max_length=255)
    language: str = Field(default="en", min_length=2, max_length=16)
    structure_template: str = ""
    is_active: bool = True



@partial_of(AuthorProfileCreate)
class AuthorProfileWrite(WriteModel):
    pass


# --- optimizer -------------------------------------------------------------------------


class AnalyzeRequest(ActionBody):
    content_id: Id


class CheckOut(BaseModel):
    name: str
    status: str
    message: str
    fix: str


class AnalysisOut(BaseModel):
    content_id: int
    score: int
    word_count: int
    checks: list[CheckOut]


def analysis_out(content_id: int, analysis: dict[str, Any]) -> AnalysisOut:
    return AnalysisOut.model_validate({"content_id": content_id, **analysis})
