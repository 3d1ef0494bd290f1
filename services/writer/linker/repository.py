"""The linker's one query: a site's content as link targets (no HTML: a 10,000-page
site is read in one narrow statement)."""

from __future__ import annotations

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
