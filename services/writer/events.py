"""What writer publishes, and how it applies what planner and auth publish.

Published (stream `IGNY8_WRITER`), `data` fields. In every event `task_id` is the id of
the AI job that made the change (null for changes made through the API) and `run_id` the
one the job was asked with (automation's run; null otherwise); a writer task's own id is
`writer_task_id`:

- `writer.task.created`: `writer_task_id, idea_id, cluster_id, site_id, sector_id, title,
  status, content_type, content_structure, word_count`.
- `writer.content.generated` (one per content a job wrote): `task_id, run_id, content_id,
  writer_task_id, idea_id, cluster_id, site_id, sector_id, title, word_count, status,
  revision, model`. Planner marks the idea `completed`.
- `writer.content.updated`: `task_id, run_id, content_id, writer_task_id, cluster_id,
  site_id, sector_id, status, revision, change` (`created` `updated` `deleted` `optimized`
  `images`). Planner counts a cluster's contents from these and `content.generated`.
- `writer.image_prompts.generated` (one per content): `task_id, run_id, content_id,
  writer_task_id, site_id, sector_id, image_ids`.
- `writer.images.generated` (one per job): `task_id, run_id, generated: [image ids],
  failed: [image ids], content_ids`.
- Jobs `igny8.jobs.writer.auto_generate_content` (`task_ids`), `.generate_image_prompts`
  (`content_ids`), `.generate_images` (`image_ids`), `.optimize` (`content_ids`), each with
  an optional `run_id`.

Consumed: auth's directory (kernel), and planner's `idea.queued` (exactly one task per
idea: the task table's unique `(account_id, idea_id)`), `cluster.*`, `keyword.*` and
`keywords.clustered` (the read models briefs are made from). Each read-model upsert keeps
the newest event's state.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common import outbox
from libs.common.ai_jobs import AIFunction
from libs.common.consumer import EventConsumer, PermanentError, default_scope
from libs.common.content_kinds import ContentStructure, ContentType
from libs.common.db import Database
from libs.common.events import Event, stream_name
from libs.common.repository import Row, Visibility
from services.writer.models import DIRECTORY
from services.writer.repository import PlannerRefs, TaskRepository

SERVICE = "writer"

# Writer's billed AI jobs (`igny8.jobs.writer.<name>`, libs/common/ai_jobs), charged as
# billing's operations (DOMAIN.md's cost table).
AUTO_GENERATE_CONTENT = AIFunction(SERVICE, "auto_generate_content", "content_generation",
                                   ("content_generation",))
GENERATE_IMAGE_PROMPTS = AIFunction(
    SERVICE, "generate_image_prompts", "image_prompt_extraction",
    ("image_prompt_extraction", "image_prompt_template", "negative_prompt"))
GENERATE_IMAGES = AIFunction(SERVICE, "generate_images", "image_generation",
                             ("negative_prompt",))
OPTIMIZE = AIFunction(SERVICE, "optimize", "optimization")

TASK_CREATED = f"{SERVICE}.task.created"
CONTENT_GENERATED = f"{SERVICE}.content.generated"
CONTENT_UPDATED = f"{SERVICE}.content.updated"
IMAGE_PROMPTS_GENERATED = f"{SERVICE}.image_prompts.generated"
IMAGES_GENERATED = f"{SERVICE}.images.generated"


def _job(task_id: UUID | None, run_id: str | None) -> dict[str, Any]:
    return {"task_id": str(task_id) if task_id else None, "run_id": run_id}


def task_created(row: Row) -> Event:
    return Event(type=TASK_CREATED, account_id=row["account_id"], data={
        "writer_task_id": row["id"], **{k: row[k] for k in (
            "idea_id", "cluster_id", "site_id", "sector_id", "title", "status",
            "content_type", "content_structure", "word_count")}})


def content_generated(row: Row, *, task_id: UUID, run_id: str | None,
                      idea_id: int | None) -> Event:
    return Event(type=CONTENT_GENERATED, account_id=row["account_id"], data={
        **_job(task_id, run_id), "content_id": row["id"], "writer_task_id": row["task_id"],
        "idea_id": idea_id, **{k: row[k] for k in (
            "cluster_id", "site_id", "sector_id", "title", "word_count", "status",
            "revision", "model")}})


def content_updated(row: Row, change: str, *, task_id: UUID | None = None,
                    run_id: str | None = None) -> Event:
    return Event(type=CONTENT_UPDATED, account_id=row["account_id"], data={
        **_job(task_id, run_id), "content_id": row["id"], "writer_task_id": row["task_id"],
        "change": change, **{k: row[k] for k in (
            "cluster_id", "site_id", "sector_id", "status", "revision")}})


def image_prompts_generated(content: Row, image_ids: Sequence[int], *, task_id: UUID,
                            run_id: str | None) -> Event:
    return Event(type=IMAGE_PROMPTS_GENERATED, account_id=content["account_id"], data={
        **_job(task_id, run_id), "content_id": content["id"],
        "writer_task_id": content["task_id"], "site_id": content["site_id"],
        "sector_id": content["sector_id"], "image_ids": list(image_ids)})


def images_generated(account_id: int, *, task_id: UUID, run_id: str | None,
                     generated: Iterable[int], failed: Iterable[int],
                     content_ids: Iterable[int]) -> Event:
    return Event(type=IMAGES_GENERATED, account_id=account_id, data={
        **_job(task_id, run_id), "generated": sorted(generated), "failed": sorted(failed),
        "content_ids": sorted(set(content_ids))})


# --- consuming planner's events ------------------------------------------------------


class QueuedIdea(BaseModel):
    """`planner.idea.queued` as planner publishes it."""

    id: int
    site_id: int
    sector_id: int
    cluster_id: int | None = None
    idea_title: str = Field(min_length=1)
    description: str = ""
    keywords: str = ""
    content_type: ContentType = ContentType.POST
    content_structure: ContentStructure = ContentStructure.ARTICLE
    estimated_word_count: int = Field(default=1500, ge=0)


async def create_task_for_idea(session: AsyncSession, event: Event) -> None:
    """Exactly one task per idea: a redelivered or replayed event inserts nothing."""
    idea = _parse(QueuedIdea, event)
    account_id = _account(event)
    row = await TaskRepository(session, Visibility(account_id)).insert_from_idea({
        "site_id": idea.site_id, "sector_id": idea.sector_id, "cluster_id": idea.cluster_id,
        "idea_id": idea.id, "title": " ".join(idea.idea_title.split())[:255],
        "description": idea.description, "keywords": idea.keywords,
        "primary_keyword": _first_keyword(idea.keywords),
        "content_type": idea.content_type, "content_structure": idea.content_structure,
        "word_count": idea.estimated_word_count or 1500, "status": "draft"})
    if row is not None:
        await outbox.add(session, task_created(row))


def _first_keyword(keywords: str) -> str:
    first = next((k.strip() for k in keywords.split(",") if k.strip()), "")
    return " ".join(first.split())[:255]


async def apply_cluster_event(session: AsyncSession, event: Event) -> None:
    data = event.data
    if not isinstance(data.get("id"), int):
        raise PermanentError(f"{event.type}: no cluster id")
    account_id = _account(event)
    await PlannerRefs(session, Visibility(account_id)).upsert_cluster(
        {**data, "account_id": account_id}, deleted=event.type.endswith(".deleted"),
        occurred_at=event.occurred_at)


async def apply_keyword_event(session: AsyncSession, event: Event) -> None:
    rows = event.data.get("keywords")
    if not isinstance(rows, list) or not all(isinstance(k, dict) and isinstance(
            k.get("id"), int) for k in rows):
        raise PermanentError(f"{event.type}: no keyword list")
    account_id = _account(event)
    await PlannerRefs(session, Visibility(account_id)).upsert_keywords(
        account_id, rows, deleted=event.type.endswith(".deleted"),
        occurred_at=event.occurred_at)


async def apply_keywords_clustered(session: AsyncSession, event: Event) -> None:
    account_id = _account(event)
    refs = PlannerRefs(session, Visibility(account_id))
    for cluster in event.data.get("clusters") or ():
        await refs.assign(account_id, int(cluster["id"]), cluster.get("keyword_ids") or [],
                          event.occurred_at)


PLANNER_HANDLERS = {
    "planner.idea.queued": create_task_for_idea,
    "planner.cluster.created": apply_cluster_event,
    "planner.cluster.updated": apply_cluster_event,
    "planner.cluster.deleted": apply_cluster_event,
    "planner.keyword.created": apply_keyword_event,
    "planner.keyword.updated": apply_keyword_event,
    "planner.keyword.deleted": apply_keyword_event,
    "planner.keywords.clustered": apply_keywords_clustered,
}


async def apply_planner_event(session: AsyncSession, event: Event) -> None:
    handler = PLANNER_HANDLERS.get(event.type)
    if handler is None:
        return  # planner publishes more than writer needs
    await handler(session, event)


def _account(event: Event) -> int:
    if not event.account_id:
        raise PermanentError(f"{event.type}: no account")
    return event.account_id


def _parse(model: type[QueuedIdea], event: Event) -> QueuedIdea:
    try:
        return model.model_validate(event.data)
    except ValidationError as exc:
        raise PermanentError(f"{event.type}: {exc}") from exc


def planner_consumer(db: Database, js: Any) -> EventConsumer:
    """Queued ideas become tasks; clusters and keywords feed the read models."""
    return EventConsumer(
        name=f"{SERVICE}-planner-events", stream=stream_name("planner"),
        subjects=["igny8.planner.idea.queued", "igny8.planner.cluster.>",
                  "igny8.planner.keyword.>", "igny8.planner.keywords.clustered"],
        handler=apply_planner_event, db=db, js=js, service=SERVICE, scope=default_scope,
        source="planner")


def auth_consumer(db: Database, js: Any) -> EventConsumer:
    """The directory (sites, sectors, site access, accounts, plans)."""
    return DIRECTORY.consumer(db, js, service=SERVICE)
