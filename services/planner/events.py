"""What planner publishes, and how it applies what auth publishes.

Published (stream `IGNY8_PLANNER`), `data` fields:

- `planner.keyword.created` / `.updated` / `.deleted`: `keywords`, a list of
  `{id, site_id, sector_id, keyword, volume, difficulty, intent, status, cluster_id,
  seed_keyword_id}` (at most 500 per event; one event per API call or chunk).
- `planner.cluster.created`: `id, site_id, sector_id, name, description, status`.
- `planner.keywords.clustered`: `task_id, site_id, sector_id,
  clusters: [{id, name, created, keyword_ids}]`.
- `planner.ideas.generated`: `task_id, cluster_id, site_id, sector_id, idea_ids`.
- `planner.idea.queued`: the idea: `id, site_id, sector_id, cluster_id, idea_title,
  description, keywords, keyword_ids, content_type, content_structure,
  estimated_word_count`.

Consumed (stream `IGNY8_AUTH`): sites, sectors, site access, accounts, plans and seed
keywords, into the read models (`repository.upsert_*`). Each upsert keeps the newest
event's state: an older event arriving late changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.consumer import EventConsumer, PermanentError
from libs.common.db import Database, TenantScope
from libs.common.events import Event, stream_name
from services.planner import repository as repo

SERVICE = "planner"
KEYWORDS_PER_EVENT = 500

AUTH_SUBJECTS = (
    "igny8.auth.site.>",
    "igny8.auth.sector.>",
    "igny8.auth.site_access.>",
    "igny8.auth.account.>",
    "igny8.auth.plan.>",
    "igny8.auth.seed_keyword.>",
)

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


def cluster_created(row: dict[str, Any]) -> Event:
    return Event(
        type=f"{SERVICE}.cluster.created",
        account_id=row["account_id"],
        data={
            "id": row["id"],
            "site_id": row["site_id"],
            "sector_id": row["sector_id"],
            "name": row["name"],
            "description": row["description"],
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


async def apply_auth_event(session: AsyncSession, event: Event) -> None:
    """Fold one of auth's events into the read models."""
    kind = event.type.split(".")
    if len(kind) != 3 or kind[0] != "auth":
        raise PermanentError(f"not an auth event: {event.type}")
    _, entity, verb = kind
    data, at = event.data, event.occurred_at
    try:
        if entity == "site":
            await repo.upsert_site(session, data, deleted=verb == "deleted", occurred_at=at)
        elif entity == "sector":
            await repo.upsert_sector(session, data, deleted=verb == "deleted", occurred_at=at)
        elif entity == "site_access":
            if verb == "granted":
                await repo.grant_access(
                    session, data["account_id"], data["user_id"], data["site_id"]
                )
            elif verb == "revoked":
                await repo.revoke_access(
                    session, data["account_id"], data["user_id"], data["site_id"]
                )
        elif entity == "account":
            await repo.upsert_account(session, data, deleted=verb == "deleted", occurred_at=at)
        elif entity == "plan":
            await repo.upsert_plan(session, data, occurred_at=at)
        elif entity == "seed_keyword":
            await repo.upsert_seed(session, data, deleted=verb == "deleted", occurred_at=at)
    except KeyError as exc:
        raise PermanentError(f"{event.type} lacks {exc}") from exc


def _scope(event: Event) -> TenantScope:
    # Plans and seed keywords are global (account_id null): written in the system scope.
    return TenantScope.account(event.account_id) if event.account_id else TenantScope.system()


def auth_consumer(
    db: Database, js: Any, *, name: str = "planner-auth-read-models"
) -> EventConsumer:
    return EventConsumer(
        name=name,
        stream=stream_name("auth"),
        subjects=AUTH_SUBJECTS,
        handler=apply_auth_event,
        db=db,
        js=js,
        service=SERVICE,
        scope=_scope,
    )
