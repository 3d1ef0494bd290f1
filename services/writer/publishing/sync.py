"""Categories and tags both ways, and importing a site's existing posts: the WordPress side of
the integration's `sync/` and `sync_wordpress_content/` actions. The writer service stores
what these return (taxonomies with their external ids, contents with source `wordpress`)
and logs a `SyncEvent` per run.

- `pull_terms` reads every category and tag of the site.
- `push_terms` makes sure the site has the platform's terms (found by slug or created;
  `term_exists` counts as found), answering their ids by name.
- `import_posts` walks the site's posts oldest first, page by page, with their terms' names
  and featured image's URL resolved in one extra call per page, and says which ones the
  platform published itself (their marker carries the content id), so the service links
  those instead of importing them twice.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from services.writer.publishing.wp_client import RemotePost, RemoteTerm, WordPressClient

TAXONOMIES = ("categories", "tags")
_MARKER = re.compile(r"\n?<!-- igny8:content=(\d+):rev=\d+ -->")


@dataclass(frozen=True)
class SiteTerms:
    categories: list[RemoteTerm]
    tags: list[RemoteTerm]

    def names(self, taxonomy: str) -> dict[int, str]:
        terms = self.categories if taxonomy == "categories" else self.tags
        return {t.id: t.name for t in terms}


@dataclass(frozen=True)
class ImportedPost:
    """A site's post, ready to become a content with source `wordpress`."""

    post: RemotePost
    html: str  # the content without the platform's marker
    categories: tuple[str, ...]
    tags: tuple[str, ...]
    featured_image_url: str | None
    igny8_content_id: int | None  # set when the platform published this post itself


async def pull_terms(client: WordPressClient) -> SiteTerms:
    found = {tax: [t async for t in client.iter_terms(tax)] for tax in TAXONOMIES}
    return SiteTerms(categories=found["categories"], tags=found["tags"])


async def push_terms(
    client: WordPressClient, taxonomy: str, names: Iterable[str], terms: SiteTerms | None = None
) -> dict[str, int]:
    """The id of each of the platform's term names on the site, creating the missing ones.
    Pass the site's `terms` (from `pull_terms`) to spare the lookups."""
    known = [] if terms is None else (terms.categories if taxonomy == "categories" else terms.tags)
    return await client.ensure_terms(taxonomy, list(names), known)


async def import_posts(
    client: WordPressClient, terms: SiteTerms, *, statuses: str = "publish",
    modified_after: str | None = None,
) -> AsyncIterator[ImportedPost]:
    categories, tags = terms.names("categories"), terms.names("tags")
    page: list[RemotePost] = []

    async def flush() -> AsyncIterator[ImportedPost]:
        media_ids = sorted({p.featured_media for p in page if p.featured_media})
        urls: dict[int, str] = {}
        if media_ids:
            answer = await client.call("GET", "/wp/v2/media", params={
                "include": ",".join(map(str, media_ids)), "per_page": len(media_ids)})
            urls = {int(m["id"]): str(m.get("source_url") or "") for m in answer.body or ()}
        for post in page:
            marker = _MARKER.search(post.content)
            yield ImportedPost(
                post=post,
                html=_MARKER.sub("", post.content),
                categories=tuple(categories[c] for c in post.categories if c in categories),
                tags=tuple(tags[t] for t in post.tags if t in tags),
                featured_image_url=urls.get(post.featured_media),
                igny8_content_id=int(marker.group(1)) if marker else None,
            )
        page.clear()

    async for post in client.iter_posts(statuses=statuses, modified_after=modified_after):
        page.append(post)
        if len(page) == 50:
            async for item in flush():
                yield item
    async for item in flush():
        yield item
