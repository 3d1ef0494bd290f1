"""Publishing a content to WordPress exactly once, by construction (issue 11).

WordPress's REST API has no idempotency key: a create resent after a lost answer makes a
second post. So nothing is resent blindly; every write is either safe to repeat or preceded
by a durable note that it is about to happen (`PublicationStore`), and after any doubt the
publisher looks for what the write would have made before writing again:

1. `store.begin` records the attempt before any call.
2. Images are keyed by their sha256: the media item's slug is `igny8-img-<sha256[:32]>`, so
   an image the store does not know on the site is looked up (`?slug=`) before it is
   uploaded, and an upload whose answer was lost is found and reused, never made twice.
3. Terms are looked up by slug and created when missing; `term_exists` counts as success
   (creating a term is therefore safe to repeat).
4. The post is created as a draft carrying a marker, `<!-- igny8:content=<id>:rev=<n> -->`,
   with a slug checked free first; its id is stored the moment the 201 arrives.
5. After a timeout, a lost connection, a 5xx or an HTML answer to the create, the post is
   looked up by slug and by marker (`?search=`: a draft's slug is empty in WordPress 6.1
   when none was given, and an editor may change it) and adopted.
6. Then the status changes (`publish`, `future` with `date_gmt`, or `draft`), which is safe
   to repeat; a later publish of the same content updates the known id.
7. The final slug and link are read back from WordPress's answer.

WordPress drops unknown category ids and an unknown `featured_media` silently (201): the
answer is checked, and a media item or term deleted on the site is forgotten and made again.
Yoast's meta fields are only sent when the site registers them for REST
(`WordPressClient.seo_fields`); otherwise WordPress would drop them silently, so the result
carries a warning instead.

Interface for the writer service:

    publisher = Publisher(store, policy=OutboundPolicy.from_settings(settings))
    result = await publisher.publish(site, content, status="publish", on_progress=report)
    await publisher.unpublish(site, content_id)

`publish` retries what can be retried (`attempts`, with backoff) and ends with a
`PublicationResult`, or records the failure's reason in the store and raises
`PublishFailed(reason)`. `on_progress(step, percentage, message)` (sync or async) hears
the steps, for the job's progress: PREP 10 (attempt recorded), MEDIA 20, TERMS 40,
POST 60, STATUS 80, RETRY 15 (with the reason, before a retry), DONE 100.
`PublicationResult.warnings` says what was published with less than asked (no Yoast).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal
from urllib.parse import unquote

from libs.common.outbound import HostResolver, OutboundPolicy
from libs.common.problems import ValidationFailed
from services.writer.publishing.store import (
    Outcome,
    PublicationRecord,
    PublicationStatus,
    PublicationStore,
)
from services.writer.publishing.wp_client import (
    CallRecord,
    RemotePost,
    WordPressClient,
    WordPressError,
    WordPressSite,
    backoff,
    slugify,
)

TargetStatus = Literal["publish", "draft", "future"]
ProgressCallback = Callable[[str, int, str], Awaitable[None] | None]

_MARKER = re.compile(r"<!-- igny8:content=(\d+):rev=(\d+) -->")
_SLUG_CANDIDATES = 5


@dataclass(frozen=True)
class ImageAsset:
    """An image to upload. For in-article images, `ref` is the exact `src` the HTML uses for
    it (e.g. the platform's file URL); the publisher replaces it with the site's URL."""

    data: bytes
    media_type: str
    filename: str = "image"
    alt: str = ""
    title: str = ""
    ref: str | None = None

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class PublishableContent:
    """What the writer service hands over to publish one content (one revision of it)."""

    content_id: int
    revision: int
    title: str
    html: str
    excerpt: str = ""
    slug: str = ""
    categories: Sequence[str] = ()
    tags: Sequence[str] = ()
    featured_image: ImageAsset | None = None
    inline_images: Sequence[ImageAsset] = ()
    seo_title: str = ""
    meta_description: str = ""
    focus_keyword: str = ""


@dataclass(frozen=True)
class PublicationResult:
    content_id: int
    site_key: str
    status: PublicationStatus
    post_id: int | None
    url: str | None
    slug: str | None
    revision: int | None
    featured_media_id: int | None = None
    media_ids: tuple[int, ...] = ()
    category_ids: tuple[int, ...] = ()
    tag_ids: tuple[int, ...] = ()
    seo_fields_sent: tuple[str, ...] = ()
    adopted: bool = False
    warnings: tuple[str, ...] = ()


class PublishFailed(Exception):
    """The publish (or unpublish) did not complete; `reason` is recorded and shown."""

    def __init__(self, reason: str, kind: str = "failed") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class _Retry(WordPressError):
    """Something the site dropped silently (a deleted media item or term): try again."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid", message, retryable=True)


def marker_for(content_id: int, revision: int) -> str:
    return f"<!-- igny8:content={content_id}:rev={revision} -->"


def marker_search(content_id: int) -> str:
    return f"igny8:content={content_id}:"


def carries_marker(post: RemotePost, content_id: int) -> bool:
    return any(int(m.group(1)) == content_id for m in _MARKER.finditer(post.content))


def media_slug(sha256: str) -> str:
    return f"igny8-img-{sha256[:32]}"


def _ascii_filename(image: ImageAsset) -> str:
    stem, _, ext = image.filename.rpartition(".")
    if not (stem and re.fullmatch(r"[A-Za-z0-9]{1,5}", ext)):
        ext = image.media_type.split("/")[-1]
    ascii_stem = slugify(stem or image.filename).encode("ascii", "ignore").decode()
    name = re.sub(r"[^a-z0-9]+", "-", ascii_stem).strip("-") or "image"
    return f"{name[:60]}-{image.sha256[:8]}.{ext.lower()}"


async def _report(on_progress: ProgressCallback | None, step: str, pct: int, msg: str) -> None:
    if on_progress is not None:
        outcome = on_progress(step, pct, msg)
        if inspect.isawaitable(outcome):
            await outcome


@dataclass
class _Run:
    """One publish's working state across its retries."""

    client: WordPressClient
    record: PublicationRecord
    content: PublishableContent
    adopted: bool = False
    media_ids: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class Publisher:
    """Publishes and unpublishes contents on WordPress sites, remembering in `store`."""

    def __init__(
        self,
        store: PublicationStore,
        *,
        policy: OutboundPolicy,
        attempts: int = 3,
        retry_delay: float = 1.0,
        settle_delay: float = 5.0,
        resolver: HostResolver | None = None,
        on_call: Callable[[CallRecord], None] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.store = store
        self.policy = policy
        self.attempts = attempts
        self.retry_delay = retry_delay
        self.settle_delay = settle_delay
        self.resolver = resolver
        self.on_call = on_call
        self.timeout = timeout
        # Yoast fields found per site, so a site that did not say is asked once per process.
        self._seo_fields: dict[str, frozenset[str]] = {}

    @asynccontextmanager
    async def client(self, site: WordPressSite) -> AsyncIterator[WordPressClient]:
        if site.seo_fields is None and site.key in self._seo_fields:
            site = replace(site, seo_fields=self._seo_fields[site.key])
        async with WordPressClient(site, policy=self.policy, resolver=self.resolver,
                                   on_call=self.on_call, timeout=self.timeout) as client:
            try:
                yield client
            finally:
                if client.known_seo_fields is not None:
                    self._seo_fields[site.key] = client.known_seo_fields

    # -- publish ---------------------------------------------------------------------------

    async def publish(
        self,
        site: WordPressSite,
        content: PublishableContent,
        *,
        status: TargetStatus = "publish",
        date_gmt: str | None = None,
        on_progress: ProgressCallback | None = None,
        client: WordPressClient | None = None,
    ) -> PublicationResult:
        if status == "future" and not date_gmt:
            raise ValidationFailed.field("date_gmt", "A scheduled publish needs date_gmt.")
        record = await self.store.begin(site.key, content.content_id)  # step 1
        await _report(on_progress, "PREP", 10, f"Publication attempt {record.attempt} recorded")
        if client is None:
            async with self.client(site) as own:
                return await self._with_retries(
                    _Run(own, record, content), status, date_gmt, on_progress
                )
        return await self._with_retries(_Run(client, record, content), status, date_gmt,
                                        on_progress)

    async def _with_retries(
        self, run: _Run, status: TargetStatus, date_gmt: str | None,
        on_progress: ProgressCallback | None,
    ) -> PublicationResult:
        attempt = 1
        while True:
            try:
                result = await self._publish_once(run, status, date_gmt, on_progress)
            except WordPressError as exc:
                if exc.retryable and attempt < self.attempts:
                    await _report(on_progress, "RETRY", 15, f"{exc.message} Trying again.")
                    await backoff(attempt, exc, self.retry_delay)
                    attempt += 1
                    continue
                await self.store.failed(run.record, exc.message)
                raise PublishFailed(exc.message, exc.kind) from None
            except ValidationFailed as exc:  # the saved password is bound to another URL
                reason = "; ".join(m for ms in (exc.errors or {}).values() for m in ms)
                await self.store.failed(run.record, reason or exc.detail)
                raise PublishFailed(reason or exc.detail, "credentials") from None
            await self.store.finished(run.record, Outcome(
                result.status, result.post_id, result.url, result.slug, result.revision))
            await _report(on_progress, "DONE", 100, f"Published: {result.url}")
            return result

    async def _publish_once(
        self, run: _Run, status: TargetStatus, date_gmt: str | None,
        on_progress: ProgressCallback | None,
    ) -> PublicationResult:
        content, _client = run.content, run.client
        await _report(on_progress, "MEDIA", 20, "Uploading images")
        featured = (await self._ensure_media(run, content.featured_image)
                    if content.featured_image else None)
        html = content.html
        run.media_ids = [featured[0]] if featured else []
        for image in content.inline_images:
            media_id, url = await self._ensure_media(run, image)
            run.media_ids.append(media_id)
            if image.ref:
                html = html.replace(image.ref, url)
        await _report(on_progress, "TERMS", 40, "Finding categories and tags")
        category_ids = await self._ensure_terms(run, "categories", content.categories)
        tag_ids = await self._ensure_terms(run, "tags", content.tags)
        fields: dict[str, Any] = {
            "title": content.title,
            "content": f"{html}\n{marker_for(content.content_id, content.revision)}",
            "excerpt": content.excerpt,
            "categories": category_ids,
            "tags": tag_ids,
            "featured_media": featured[0] if featured else 0,
        }
        seo_sent = await self._seo_meta(run, fields)
        await _report(on_progress, "POST", 60, "Saving the post")
        post = await self._ensure_post(run, fields)
        await self._check_dropped(run, post, fields)
        await _report(on_progress, "STATUS", 80, f"Setting status {status}")
        final = await self._set_status(run, post, status, date_gmt)
        await self._check_dropped(run, final, fields)
        return PublicationResult(
            content_id=content.content_id, site_key=run.record.site_key,
            status={"publish": "published", "future": "scheduled"}.get(final.status, "draft"),  # type: ignore[arg-type]
            post_id=final.id, url=final.link, slug=final.slug or None,
            revision=content.revision, featured_media_id=featured[0] if featured else None,
            media_ids=tuple(run.media_ids), category_ids=tuple(category_ids),
            tag_ids=tuple(tag_ids), seo_fields_sent=seo_sent, adopted=run.adopted,
            warnings=tuple(dict.fromkeys(run.warnings)),
        )

    # -- step 2: media ---------------------------------------------------------------------

    async def _ensure_media(self, run: _Run, image: ImageAsset) -> tuple[int, str]:
        site_key, sha = run.record.site_key, image.sha256
        slug = media_slug(sha)
        known = await self.store.media(site_key, sha)
        if known is not None and known.media_id is not None and known.url:
            return known.media_id, known.url
        # Not known with an id: the site may have it all the same (an upload whose answer
        # was lost, or a store that does not remember this site's media): look first.
        found = await run.client.find_media(slug)
        if found is not None:
            return await self._media_found(site_key, sha, found)
        await self.store.uploading_media(site_key, sha)
        try:
            body = await run.client.upload_media(
                image.data, filename=_ascii_filename(image), media_type=image.media_type,
                slug=slug, title=image.title or image.alt, alt_text=image.alt,
                description=f"igny8 sha256:{sha}",
            )
        except WordPressError as exc:
            if exc.ambiguous:
                await self._settle(exc)
                found = await run.client.find_media(slug)
                if found is not None:
                    return await self._media_found(site_key, sha, found)
            raise
        return await self._media_found(site_key, sha, body)

    async def _media_found(self, site_key: str, sha: str, body: dict[str, Any]) -> tuple[int, str]:
        media_id, url = int(body["id"]), str(body.get("source_url") or "")
        await self.store.media_uploaded(site_key, sha, media_id, url)
        return media_id, url

    # -- step 3: terms ---------------------------------------------------------------------

    async def _ensure_terms(self, run: _Run, taxonomy: str, names: Sequence[str]) -> list[int]:
        wanted = list(dict.fromkeys(n.strip() for n in names if n.strip()))
        if not wanted:
            return []
        site_key = run.record.site_key
        known = await self.store.term_ids(site_key, taxonomy, wanted)
        missing = [n for n in wanted if n not in known]
        if missing:
            new = await run.client.ensure_terms(taxonomy, missing)
            await self.store.terms_found(site_key, taxonomy, new)
            known.update(new)
        return [known[n] for n in wanted]

    # -- SEO -------------------------------------------------------------------------------

    async def _seo_meta(self, run: _Run, fields: dict[str, Any]) -> tuple[str, ...]:
        content = run.content
        values = {"_yoast_wpseo_title": content.seo_title,
                  "_yoast_wpseo_metadesc": content.meta_description,
                  "_yoast_wpseo_focuskw": content.focus_keyword}
        if not any(values.values()):
            return ()
        accepted = await run.client.seo_fields()
        meta = {k: v for k, v in values.items() if v and k in accepted}
        if len(meta) < sum(1 for v in values.values() if v):
            run.warnings.append(
                "The site does not accept Yoast SEO's fields over its REST API, so the SEO "
                "title, meta description and focus keyword were not sent: install Yoast SEO "
                "and the IGNY8 WordPress plugin (which registers them)."
            )
        if meta:
            fields["meta"] = meta
        return tuple(meta)

    # -- steps 4 and 5: the post -----------------------------------------------------------

    async def _ensure_post(self, run: _Run, fields: dict[str, Any]) -> RemotePost:
        record, client, content = run.record, run.client, run.content
        if record.post_id is not None:
            try:
                return await client.update_post(record.post_id, fields)
            except WordPressError as exc:
                if exc.kind != "not_found":
                    raise
                await self.store.post_gone(record)
                run.warnings.append("The post was deleted on the site; it was created again.")
        desired = content.slug.strip() or slugify(content.title) or f"post-{content.content_id}"
        slug, own = await self._free_slug(run, desired)
        if own is None and record.create_started:
            own = await self._find_by_marker(run)
        if own is not None:
            return await self._adopt(run, own, fields)
        await self.store.creating_post(record)
        try:
            created = await client.create_post({**fields, "slug": slug, "status": "draft"})
        except WordPressError as exc:
            if not exc.ambiguous:
                raise
            await self._settle(exc)
            # The create may have landed: never resend it blindly, look for it.
            _, own = await self._free_slug(run, desired)
            own = own or await self._find_by_marker(run)
            if own is None:
                raise
            return await self._adopt(run, own, fields)
        await self.store.post_created(record, created.id)
        return created

    async def _settle(self, exc: WordPressError) -> None:
        """After a timeout (ours, or a proxy's 504) WordPress may still be working on the
        write: give it `settle_delay` seconds before looking for what it made. A lost
        connection or a 502/503 after the answer was written needs no wait."""
        if exc.kind == "timeout" or exc.status == 504:
            await asyncio.sleep(self.settle_delay)

    async def _free_slug(self, run: _Run, desired: str) -> tuple[str, RemotePost | None]:
        """One lookup of the desired slug and its `-2`…`-5` variants: our own post if one
        carries them, else the first slug no post of the site holds."""
        candidates = [desired] + [f"{desired}-{n}" for n in range(2, _SLUG_CANDIDATES + 1)]
        posts = await run.client.find_posts(slugs=candidates, statuses="any",
                                            per_page=_SLUG_CANDIDATES * 4)
        own = [p for p in posts if carries_marker(p, run.content.content_id)]
        if own:
            return own[0].slug or desired, own[0]
        taken = {unquote(p.slug).lower() for p in posts}
        free = next((c for c in candidates if unquote(c).lower() not in taken), desired)
        return free, None

    async def _find_by_marker(self, run: _Run) -> RemotePost | None:
        posts = await run.client.find_posts(search=marker_search(run.content.content_id))
        own = [p for p in posts if carries_marker(p, run.content.content_id)]
        return own[0] if own else None

    async def _adopt(self, run: _Run, post: RemotePost, fields: dict[str, Any]) -> RemotePost:
        await self.store.post_created(run.record, post.id)
        run.adopted = True
        return await run.client.update_post(post.id, fields)

    async def _check_dropped(self, run: _Run, post: RemotePost, fields: dict[str, Any]) -> None:
        """WordPress drops an unknown `featured_media` and unknown term ids with a 201: when
        the site deleted what the store remembers, forget it and try again (it is then
        uploaded or created anew)."""
        site_key, featured = run.record.site_key, run.content.featured_image
        if featured is not None and post.featured_media != fields["featured_media"]:
            await self.store.media_gone(site_key, featured.sha256)
            raise _Retry("The site no longer had the featured image; uploading it again.")
        for taxonomy in ("categories", "tags"):
            have = post.categories if taxonomy == "categories" else post.tags
            missing = set(fields[taxonomy]) - set(have)
            if missing:
                await self.store.terms_gone(site_key, taxonomy, missing)
                raise _Retry(f"The site no longer had some {taxonomy}; creating them again.")

    # -- steps 6 and 7: status, read back --------------------------------------------------

    async def _set_status(
        self, run: _Run, post: RemotePost, status: TargetStatus, date_gmt: str | None
    ) -> RemotePost:
        if post.status == status and (date_gmt is None or post.date_gmt == date_gmt):
            return post
        change: dict[str, Any] = {"status": status}
        if date_gmt:
            change["date_gmt"] = date_gmt
        return await run.client.update_post(post.id, change)

    # -- unpublish -------------------------------------------------------------------------

    async def unpublish(
        self,
        site: WordPressSite,
        content_id: int,
        *,
        trash: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> PublicationResult:
        """Takes the post off the site: back to draft (kept, so a later publish updates the
        same post), or to the trash with `trash=True`. Safe to repeat."""
        record = await self.store.begin(site.key, content_id)
        await _report(on_progress, "PREP", 10, f"Unpublish attempt {record.attempt} recorded")
        async with self.client(site) as client:
            attempt = 1
            while True:
                try:
                    outcome = await self._unpublish_once(client, record, content_id, trash)
                    break
                except WordPressError as exc:
                    if exc.retryable and attempt < self.attempts:
                        await backoff(attempt, exc, self.retry_delay)
                        attempt += 1
                        continue
                    await self.store.failed(record, exc.message)
                    raise PublishFailed(exc.message, exc.kind) from None
        await self.store.finished(record, outcome)
        await _report(on_progress, "DONE", 100, "Unpublished")
        return PublicationResult(content_id=content_id, site_key=site.key, status=outcome.status,
                                 post_id=outcome.post_id, url=outcome.url, slug=outcome.slug,
                                 revision=outcome.revision)

    async def _unpublish_once(
        self, client: WordPressClient, record: PublicationRecord, content_id: int, trash: bool
    ) -> Outcome:
        post_id = record.post_id
        if post_id is None and record.create_started:
            posts = await client.find_posts(search=marker_search(content_id))
            own = [p for p in posts if carries_marker(p, content_id)]
            post_id = own[0].id if own else None
        if post_id is None:
            return Outcome("unpublished", None, None, None, record.revision)
        try:
            if trash:
                await client.trash_post(post_id)
                return Outcome("unpublished", post_id, None, None, record.revision)
            post = await client.update_post(post_id, {"status": "draft"})
        except WordPressError as exc:
            if exc.kind == "not_found" or exc.code == "rest_already_trashed":
                return Outcome("unpublished", post_id, None, None, record.revision)
            raise
        return Outcome("unpublished", post.id, post.link, post.slug or None, record.revision)
