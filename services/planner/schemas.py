"""What planner's API reads and answers (field names as the reference uses them): request
and response models, and each list's filters and ordering, declared once for the OpenAPI
parameters, their validation and the SQL (`libs/common/repository.py`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import ColumnElement, func

from libs.common.fields import IdList, Name, Squashed, squash_spaces
from libs.common.ids import Id
from libs.common.repository import (
    AtLeast,
    AtMost,
    Choice,
    Equals,
    Filter,
    FilterSet,
    ListQuery,
    Orderings,
    Search,
)
from libs.common.schemas import ActionBody, Ids, WriteModel, partial_of
from services.planner.intent import Intent
from services.planner.models import (
    ClusterStatus,
    ContentStructure,
    ContentType,
    IdeaStatus,
    KeywordStatus,
)
from services.planner.settings import PlannerSettings

# --- lists ---------------------------------------------------------------------------


class KeywordFilters(FilterSet):
    status = Choice(KeywordStatus)
    cluster_id = Equals(Id)
    seed_keyword__intent = Choice(Intent, column="intent", description="Filter by intent")
    seed_keyword_id = Equals(Id)
    difficulty_min = AtLeast("difficulty")
    difficulty_max = AtMost("difficulty")
    volume_min = AtLeast("volume")
    volume_max = AtMost("volume")
    site_id = Equals(Id)
    sector_id = Equals(Id)
    search = Search("keyword", description="Search by keyword text")


# `seed_keyword__volume`/`__difficulty` are the keyword's own (copied from the seed).
KEYWORD_ORDERING = Orderings(
    "created_at", "updated_at", "id", "keyword", "volume", "difficulty", "status",
    seed_keyword__volume="volume", seed_keyword__difficulty="difficulty")
KeywordQuery = ListQuery.of(KeywordFilters, KEYWORD_ORDERING)


class TopicIs(Filter):
    """The clusters of one topic: its name, case and spacing aside."""

    def clean(self, value: Any) -> Any:
        return squash_spaces(value) or None if isinstance(value, str) else value

    def condition(self, t: Any, value: Any) -> ColumnElement[bool]:
        # Lowered by PostgreSQL on both sides (its `lower()` is not Python's for `É`).
        return func.lower(t.c[self.column]) == func.lower(value)


class ClusterFilters(FilterSet):
    status = Choice(ClusterStatus)
    site_id = Equals(Id)
    sector_id = Equals(Id)
    topic = TopicIs(description="Clusters of this topic")
    intent = Choice(Intent, description="Clusters of this intent")
    search = Search("name", description="Search by cluster name")


CLUSTER_ORDERING = Orderings(
    "created_at", "updated_at", "id", "name", "keywords_count", "volume", "difficulty",
    "ideas_count", "status")
ClusterQuery = ListQuery.of(ClusterFilters, CLUSTER_ORDERING)


class IdeaFilters(FilterSet):
    status = Choice(IdeaStatus)
    cluster_id = Equals(Id)
    content_type = Choice(ContentType)
    site_id = Equals(Id)
    sector_id = Equals(Id)
    search = Search("idea_title", description="Search by idea title")


IDEA_ORDERING = Orderings(
    "created_at", "updated_at", "id", "idea_title", "status", "estimated_word_count")
IdeaQuery = ListQuery.of(IdeaFilters, IDEA_ORDERING)


# --- keywords ------------------------------------------------------------------------


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


class _KeywordWrite(WriteModel):
    """`intent: null` asks the intent rules (services/planner/intent.py) to decide."""

    @classmethod
    def nullable(cls, name: str) -> bool:
        return name == "intent" or super().nullable(name)


class KeywordCreate(_KeywordWrite):
    resource = KeywordOut
    keyword: Name
    site_id: Id
    sector_id: Id
    volume: int = Field(default=0, ge=0, le=2**31 - 1)
    difficulty: int = Field(default=0, ge=0, le=100)
    # None: the intent rules classify the keyword (services/planner/intent.py).
    intent: Intent | None = None
    seed_keyword_id: Id | None = None
    cluster_id: Id | None = None
    status: KeywordStatus = KeywordStatus.ACTIVE
    disabled: bool = False



# The seed a keyword came from, its site and its sector are set once (`partial_of`).
@partial_of(KeywordCreate, fixed={"site_id", "sector_id", "seed_keyword_id"})
class KeywordUpdate(_KeywordWrite):
    pass


class BulkStatus(Ids):
    status: KeywordStatus


class BulkFromSeed(ActionBody):
    seed_keyword_ids: IdList
    site_id: Id
    sector_id: Id


MAX_TOPICS = 100
MAX_SEEDS_PER_TOPIC = 100


def _named(value: str) -> str:
    cleaned = squash_spaces(value)
    if not any(c.isalnum() for c in cleaned):
        raise ValueError("Must contain letters or digits.")
    if len(cleaned) > 255:
        raise ValueError("Ensure this value has at most 255 characters.")
    return cleaned


def _ids_at_most(setting: str, noun: str) -> Any:
    """An AI action's ids, limited per request by a planner setting: the document shows
    the setting's default (the reference's batch limit), and more is a 400 naming `ids`."""
    limit = PlannerSettings.model_fields[setting].default
    return Field(json_schema_extra={"maxItems": limit},
                 description=f"The {noun} to process: at most `{setting}` per request "
                             f"({limit} unless the deployment sets it).")


class AutoCluster(ActionBody):
    """`topics`: topic names the user wants (they get exactly those topics);
    `seed_keywords`: topic name -> seed keywords of that topic (a topic too)."""

    ids: Annotated[IdList, _ids_at_most("auto_cluster_max_keywords", "keywords")]
    sector_id: Id | None = None
    topics: list[str] = Field(default_factory=list, max_length=MAX_TOPICS)
    seed_keywords: dict[str, list[str]] = Field(default_factory=dict, max_length=MAX_TOPICS)

    @field_validator("topics")
    @classmethod
    def _topics(cls, value: list[str]) -> list[str]:
        return [_named(v) for v in value]

    @field_validator("seed_keywords")
    @classmethod
    def _seeds(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if any(len(seeds) > MAX_SEEDS_PER_TOPIC for seeds in value.values()):
            raise ValueError(f"At most {MAX_SEEDS_PER_TOPIC} seed keywords per topic.")
        return {_named(name): [_named(k) for k in seeds] for name, seeds in value.items()}

    def anchors(self) -> list[dict[str, Any]]:
        """The topics as the job carries them, [{name, keywords}], each name once."""
        names = list(dict.fromkeys([*self.topics, *self.seed_keywords]))
        return [{"name": n, "keywords": self.seed_keywords.get(n, [])} for n in names]


class TaskQueued(BaseModel):
    task_id: UUID


# --- clusters ------------------------------------------------------------------------


class ClusterOut(BaseModel):
    id: int
    name: str
    description: str
    topic: str
    intent: str
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


class ClusterCreate(WriteModel):
    resource = ClusterOut
    name: Name
    site_id: Id
    sector_id: Id
    description: str = ""
    topic: Annotated[str, Squashed] = Field(default="", max_length=255)
    status: ClusterStatus = ClusterStatus.ACTIVE



@partial_of(ClusterCreate, fixed={"site_id", "sector_id"})
class ClusterUpdate(WriteModel):
    pass


# --- ideas ---------------------------------------------------------------------------


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


class IdeaCreate(WriteModel):
    resource = IdeaOut
    idea_title: Name
    site_id: Id
    sector_id: Id
    cluster_id: Id | None = None
    description: str = ""
    keywords: str = ""
    content_type: ContentType = ContentType.POST
    content_structure: ContentStructure = ContentStructure.ARTICLE
    estimated_word_count: int = Field(default=1500, ge=0, le=100_000)
    status: IdeaStatus = IdeaStatus.NEW



@partial_of(IdeaCreate, fixed={"site_id", "sector_id"})
class IdeaUpdate(WriteModel):
    pass


class AutoGenerateIdeas(ActionBody):
    ids: Annotated[IdList, _ids_at_most("auto_generate_ideas_max_clusters", "clusters")]


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
