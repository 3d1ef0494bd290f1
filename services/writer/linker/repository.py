"""The linker's one query: a site's content as link targets (no HTML: a 10,000-page
site is read in one narrow statement)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from libs.common.repository import Row
from services.writer.repository import ContentRepository


class LinkTargetRepository(ContentRepository):
    async def of_site(self, site_id: int) -> list[Row]:
        """The caller's live content of `site_id`, by id."""
        c = self.table.c
        return await self.fetch(
            select(c.id, c.title, c.slug, c.external_url, c.primary_keyword,
                   c.secondary_keywords, c.cluster_id, c.content_type, c.content_structure,
                   c.word_count)
            .where(*self.scope(), c.site_id == site_id).order_by(c.id))

    async def revise_if_unchanged(self, content_id: int, revision: int,
                                  values: dict[str, Any]) -> Row | None:
        """Change a content that is still at `revision` (and bump it); None when it has
        moved on since it was read."""
        rows = await self.update_many([content_id], {
            **values, "revision": self.table.c.revision + 1},
            self.table.c.revision == revision)
        return rows[0] if rows else None
