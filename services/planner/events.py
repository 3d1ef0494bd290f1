"""What planner publishes, and how it applies what auth publishes.

Published (stream `IGNY8_PLANNER`), `data` fields:

- `planner.keyword.created` / `.updated` / `.deleted`: `keywords`, a list of
  `{id, site_id, sector_id, keyword, volume, difficulty, intent, status, cluster_id,
  seed_keyword_id}` (at most 500 per event; one event per API call or chunk).
- `planner.cluster.created` / `.updated` / `.deleted`: `id, site_id, sector_id, name,
  description, topic, status`.
- `planner.keywords.clustered`: `task_id, site_id, sector_id,
  clusters: [{id, name, created, keyword_ids}]`.
- `planner.ideas.generated`: `task_id, cluster_id, site_id, sector_id, idea_ids`.
- Jobs `igny8.jobs.planner.auto_cluster` and `.auto_generate_ideas` (`AUTO_CLUSTER`,
  `AUTO_GENERATE_IDEAS`): data `keyword_ids, site_id, sector_id` / `cluster_ids`.
- `planner.idea.queued`: the idea: `id, site_id, sector_id, cluster_id, idea_title,
  description, keywords, keyword_ids, content_type, content_structure,
  estimated_word_count`.

Consumed (stream `IGNY8_AUTH`): sites, sectors, site access, accounts and plans into the
kernel's directory (`libs/common/directory`), seed keywords into planner's own read model.
Each upsert keeps the newest event's state: an older event arriving late changes nothing.
From writer (stream `IGNY8_WRITER`): `writer.content.generated` marks its idea
`completed`; it and `writer.content.updated` (a content's cluster, or its deletion) keep
clusters' `content_count`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.ai_jobs import AIFunction
from libs.common.auth import SeedKeywordDoc
from libs.common.consumer import EventConsumer, PermanentError
from libs.common.db import Database
from libs.common.events import Event, stream_name
from libs.common.repository import Visibility
from services.planner.models import DIRECTORY
from services.planner.repository import ClusterRepository, IdeaRepository, SeedKeywordRepository

SERVICE = "planner"
KEYWORDS_PER_EVENT = 500

# Planner's billed AI jobs (`igny8.jobs.planner.<name>`, libs/common/ai_jobs): clustering is
# charged per request, ideas per idea.
AUTO_CLUSTER = AIFunction(SERVICE, "auto_cluster", "clustering", ("clustering",))
AUTO_GENERATE_IDEAS = AIFunction(SERVICE, "auto_generate_ideas", "idea_generation", ("ideas",))

KEYWORD_FIELDS = (
    "id",
    "site_id",
    "sector_id",
    "keyword",
    "volume",
    "difficulty",
    "intent",
    "status",
    "cluster_id",
    "seed_keyword_id",
)


def keyword_doc(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row.get(name) for name in KEYWORD_FIELDS}


def keyword_events(verb: str, account_id: int, rows: Sequence[dict[str, Any]]) -> list[Event]:
    docs = [keyword_doc(r) for r in rows]
    return [
        Event(
            type=f"{SERVICE}.keyword.{verb}",
            account_id=account_id,
            data={"keywords": docs[i : i + KEYWORDS_PER_EVENT]},
        )
        for i in range(0, len(docs), KEYWORDS_PER_EVENT)
    ]


def cluster_event(row: dict[str, Any], verb: str = "created") -> Event:
    """`planner.cluster.created` (or `.updated`, `.deleted` with `verb`)."""
    return Event(
        type=f"{SERVICE}.cluster.{verb}",
        account_id=row["account_id"],
        data={
            "id": row["id"],
            "site_id": row["site_id"],
            "sector_id": row["sector_id"],
            "name": row["name"],
            "description": row["description"],
            "topic": row.get("topic", ""),
            "status": row["status"],
        },
    )


def keywords_clustered(
    account_id: int, task_id: UUID, site_id: int, sector_id: int, clusters: Iterable[dict[str, Any]]
) -> Event:
    return Event(
        type=f"{SERVICE}.keywords.clustered",
        account_id=account_id,
        data={
            "task_id": str(task_id),
            "site_id": site_id,
            "sector_id": sector_id,
            "clusters": list(clusters),
        },
    )


def ideas_generated(
    account_id: int, task_id: UUID, cluster: dict[str, Any], idea_ids: Sequence[int]
) -> Event:
    return Event(
        type=f"{SERVICE}.ideas.generated",
        account_id=account_id,
        data={
            "task_id": str(task_id),
            "cluster_id": cluster["id"],
            "site_id": cluster["site_id"],
            "sector_id": cluster["sector_id"],
            "idea_ids": list(idea_ids),
        },
    )


IDEA_FIELDS = (
    "id",
    "site_id",
    "sector_id",
    "cluster_id",
    "idea_title",
    "description",
    "keywords",
    "keyword_ids",
    "content_type",
    "content_structure",
    "estimated_word_count",
)


def idea_queued(row: dict[str, Any]) -> Event:
    return Event(
        type=f"{SERVICE}.idea.queued",
        account_id=row["account_id"],
        data={name: row.get(name) for name in IDEA_FIELDS},
    )


# --- consuming auth's events ---------------------------------------------------------


async def apply_seed_keyword_event(session: AsyncSession, event: Event) -> None:
    """Auth's seed keyword library, as far as planner has seen it (global rows)."""
    try:
        seed = SeedKeywordDoc.model_validate(event.data)
    except ValidationError as exc:
        raise PermanentError(f"{event.type}: {exc}") from exc
    await SeedKeywordRepository(session).upsert(
        seed, deleted=event.type.endswith(".deleted"), occurred_at=event.occurred_at)


def auth_consumer(db: Database, js: Any) -> EventConsumer:
    """The directory (sites, sectors, site access, accounts, plans) and the seed keywords."""
    return DIRECTORY.consumer(db, js, service=SERVICE,
                              extra={"seed_keyword": apply_seed_keyword_event})


# --- consuming writer's events -------------------------------------------------------


async def complete_idea(session: AsyncSession, event: Event) -> None:
    """An idea whose content writer generated is `completed` (again: nothing changes)."""
    idea_id = event.data.get("idea_id")
    if idea_id is None:
        return  # content of a task made by hand
    if not event.account_id or not isinstance(idea_id, int):
        raise PermanentError(f"{event.type}: no account or idea id")
    await IdeaRepository(session, Visibility(event.account_id)).complete([idea_id])


async def count_content(session: AsyncSession, event: Event) -> None:
    """The content's cluster (none once deleted) and the content counts it moves."""
    content_id = event.data.get("content_id")
    if not event.account_id or not isinstance(content_id, int):
        raise PermanentError(f"{event.type}: no account or content id")
    cluster_id = event.data.get("cluster_id")
    if event.data.get("change") == "deleted" or not isinstance(cluster_id, int):
        cluster_id = None
    clusters = ClusterRepository(session, Visibility(event.account_id))
    await clusters.refresh_content_counts(await clusters.place_content(content_id, cluster_id))


async def apply_writer_event(session: AsyncSession, event: Event) -> None:
    if event.type == "writer.content.generated":
        await complete_idea(session, event)
    await count_content(session, event)


def writer_consumer(db: Database, js: Any) -> EventConsumer:
    return EventConsumer(
        name=f"{SERVICE}-writer-events", stream=stream_name("writer"),
        subjects=["igny8.writer.content.generated", "igny8.writer.content.updated"],
        handler=apply_writer_event, db=db, js=js, service=SERVICE, source="writer")
