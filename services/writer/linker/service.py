"""The linker's requests: `suggest` and `apply` for one content, 1 credit each
(billing's `linking` operation, per request, DOMAIN.md).

The caller's content (another tenant's: 404) is linked against the live content of its
site: the site's pages are read without their HTML and indexed (WordLlama embeddings,
the anchors' automaton) in a worker thread. The credit is held before the work (402 when
the account cannot pay), released when the request's unit of work does not commit (a bad
link is a 400 and costs nothing), and captured once it has committed. Applying links
revises the content (its HTML, word count and revision) only if nobody changed it since
it was read (else 409, nothing charged), and publishes `writer.content.updated`.

Indexes of the last few sites are kept in the process, keyed by the site's targets
themselves (ids, titles, keywords, clusters, lengths, URLs): a request whose site has
not changed since reuses its index; any change to those fields makes a new one."""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from libs.common.ai.local import LocalEmbedder
from libs.common.problems import Conflict, ValidationFailed
from libs.common.repository import Row
from services.writer import events
from services.writer.document import html_word_count
from services.writer.linker.engine import Link, LinkRefused, SiteIndex, Target
from services.writer.linker.html import insert_links
from services.writer.linker.repository import LinkTargetRepository
from services.writer.service.tasks import ContentService
from services.writer.text import slugify

OPERATION = "linking"
CHANGED = "The content changed while it was being linked; ask again."
MODEL = "local-linker-wordllama-1"

_embedder = LocalEmbedder()
INDEXES_KEPT = 4
_indexes: OrderedDict[tuple[Target, ...], SiteIndex] = OrderedDict()


async def site_index(targets: Sequence[Target]) -> SiteIndex:
    """The index of a site's targets, built in a worker thread unless one is kept."""
    key = tuple(targets)
    found = _indexes.get(key)
    if found is not None:
        _indexes.move_to_end(key)
        return found
    index = await asyncio.to_thread(SiteIndex, key, embedder=_embedder)
    _indexes[key] = index
    while len(_indexes) > INDEXES_KEPT:
        _indexes.popitem(last=False)
    return index


def href_of(row: Row) -> str:
    """Where a content lives on its site: its published URL, else `/<slug>/` (WordPress's
    post-name permalinks), the slug made from the title when it has none."""
    if row.get("external_url"):
        return str(row["external_url"])
    slug = row.get("slug") or slugify(row.get("title") or "", 8) or f"content-{row['id']}"
    return f"/{slug}/"


def target_of(row: Row) -> Target:
    return Target(
        id=int(row["id"]), title=row["title"] or "",
        keyphrase=row["primary_keyword"] or row["title"] or "",
        keywords=tuple(str(k) for k in row.get("secondary_keywords") or ()),
        cluster_id=row["cluster_id"], structure=row["content_structure"] or "article",
        content_type=row["content_type"] or "post", word_count=int(row["word_count"] or 0),
        href=href_of(row))


@dataclass(frozen=True)
class Applied:
    content: Row
    links: list[Link]


class LinkerService(ContentService):
    async def _index(self, content: Row) -> SiteIndex:
        rows = await (await self.repository(LinkTargetRepository)).of_site(content["site_id"])
        return await site_index([target_of(r) for r in rows])

    async def _charge(self, content: Row) -> None:
        """Hold the request's credit now; capture it once the unit of work commits."""
        jobs = self.platform.ai_jobs
        if jobs is None:
            raise RuntimeError("this service was made without billing's client")
        billing, account_id = jobs.billing, self.account_id
        hold = await billing.hold(account_id, OPERATION, units=1,
                                  idempotency_key=f"linker:{uuid.uuid4()}",
                                  ttl_seconds=jobs.hold_ttl_seconds)

        async def release() -> None:
            await billing.release(hold.hold_id, account_id=account_id)

        async def capture() -> None:
            await billing.capture(hold.hold_id, account_id=account_id, units=1, model=MODEL,
                                  related_object_type="content",
                                  related_object_id=content["id"])

        self.uow.on_rollback(release)
        self.uow.after_commit(capture)

    async def suggest(self, content_id: int) -> list[Link]:
        content = await self.get(content_id)
        await self._charge(content)
        index = await self._index(content)
        return await asyncio.to_thread(index.suggest, content_id, content["html"] or "")

    async def apply(self, content_id: int, links: Sequence[Link] | None) -> Applied:
        """Put `links` (or the suggested ones) into the content's HTML."""
        content = await self.get(content_id)
        await self._charge(content)
        index = await self._index(content)
        html = content["html"] or ""
        if links is None:
            new_html, placed = await asyncio.to_thread(index.apply, content_id, html)
        else:
            try:
                placements = index.place(content_id, html, links)
            except LinkRefused as refused:
                name = ("links" if refused.index is None
                        else f"links.{refused.index}.{refused.field}")
                raise ValidationFailed.field(name, refused.message) from refused
            new_html, placed = insert_links(html, placements), list(links)
        if not placed:
            return Applied(content, [])
        row = await (await self.repository(LinkTargetRepository)).revise_if_unchanged(
            content_id, content["revision"],
            {"html": new_html, "word_count": html_word_count(new_html)})
        if row is None:  # edited meanwhile: its new HTML was not what was linked
            raise Conflict(CHANGED, errors={"content_id": [CHANGED]})
        await self.uow.publish(events.content_updated(row, "updated"))
        return Applied(row, placed)
