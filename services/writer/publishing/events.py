"""What publishing publishes (stream `IGNY8_WRITER`, through the outbox; docs/contracts.md):

- `writer.content.published`: `task_id, content_id, site_id, sector_id, integration_id,
  publication_id, external_id, url, slug, status` (WordPress's: `publish` `future`
  `draft`), `revision, adopted, warnings`.
- `writer.content.unpublished`: `task_id, content_id, site_id, sector_id, integration_id,
  publication_id, external_id, trashed`.
- `writer.integration.synced`: `integration_id, site_id, kind` (`sync`
  `sync_wordpress_content`), `terms_pulled, terms_pushed, posts_imported, posts_updated,
  posts_linked`.
- Jobs `igny8.jobs.writer.publish` (`content_id, integration_id, status, date_gmt`) and
  `igny8.jobs.writer.unpublish` (`content_id, integration_id, trash`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from libs.common.events import Event
from libs.common.repository import Row
from services.writer.publishing.models import post_id_text

CONTENT_PUBLISHED = "writer.content.published"
CONTENT_UNPUBLISHED = "writer.content.unpublished"
INTEGRATION_SYNCED = "writer.integration.synced"


def content_published(content: Row, publication: Row, *, task_id: UUID, status: str,
                      adopted: bool, warnings: tuple[str, ...]) -> Event:
    return Event(type=CONTENT_PUBLISHED, account_id=content["account_id"], data={
        "task_id": str(task_id), "content_id": content["id"], "site_id": content["site_id"],
        "sector_id": content["sector_id"], "integration_id": publication["integration_id"],
        "publication_id": publication["id"],
        "external_id": post_id_text(publication["external_id"]),
        "url": publication["url"], "slug": publication["slug"], "status": status,
        "revision": publication["revision"], "adopted": adopted, "warnings": list(warnings)})


def content_unpublished(content: Row, publication: Row, *, task_id: UUID,
                        trashed: bool) -> Event:
    return Event(type=CONTENT_UNPUBLISHED, account_id=content["account_id"], data={
        "task_id": str(task_id), "content_id": content["id"], "site_id": content["site_id"],
        "sector_id": content["sector_id"], "integration_id": publication["integration_id"],
        "publication_id": publication["id"],
        "external_id": post_id_text(publication["external_id"]),
        "trashed": trashed})


def integration_synced(integration: Row, kind: str, counts: Mapping[str, Any]) -> Event:
    return Event(type=INTEGRATION_SYNCED, account_id=integration["account_id"], data={
        "integration_id": integration["id"], "site_id": integration["site_id"],
        "kind": str(kind), **dict(counts)})
