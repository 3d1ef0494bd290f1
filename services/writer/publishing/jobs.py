"""The publish and unpublish jobs (`igny8.jobs.writer.publish` / `.unpublish`), on the
kernel's job workers (progress under the task id, redelivery when a worker dies).

A publish reads the content, its generated images (bytes from the platform's storage) and
the integration, then runs the exactly-once `Publisher` over `DbPublicationStore`, with
the site's publishes serialised (a transaction-scoped advisory lock on the integration):
two jobs never race to upload one new image. A redelivered job simply runs again, which
the publisher makes safe (it finds what an earlier attempt made). Then, in one unit of
work: the content's external id, URL and status, a sync event, and
`writer.content.published` (or `unpublished`). A publish that fails records its reason
on the publication and fails the job with it (no redelivery: the publisher retried what
could be retried).

Progress phases are the publisher's steps: PREP 10, MEDIA 20, TERMS 40, POST 60, STATUS 80,
RETRY 15, SAVE 90, DONE 100.
"""

from __future__ import annotations

import mimetypes
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

from nats.js import JetStreamContext
from sqlalchemy import func, literal_column, select

from libs.common.db import Database, TenantScope
from libs.common.jobs import JobContext, JobFailed, JobWorker, TaskProgress
from libs.common.outbound import HostResolver, OutboundPolicy
from libs.common.problems import ValidationFailed
from libs.common.repository import Row, Visibility
from libs.common.uow import unit_of_work
from services.writer import events as writer_events
from services.writer.models import ContentStatus, ImageStatus, ImageType
from services.writer.publishing import events
from services.writer.publishing.models import SyncKind
from services.writer.publishing.publisher import (
    ImageAsset,
    PublishableContent,
    Publisher,
    PublishFailed,
    TargetStatus,
)
from services.writer.publishing.repository import (
    DbPublicationStore,
    IntegrationRepository,
    PublicationRepository,
    SyncEventRepository,
)
from services.writer.publishing.wp_client import WordPressSite
from services.writer.repository import ContentRepository, ImageRepository
from services.writer.service.common import Platform
from services.writer.service.publishing import (
    PUBLISH_FUNCTION,
    UNPUBLISH_FUNCTION,
    credentials_box,
    site_of,
)

SERVICE = "writer"
Progress = Callable[[str, int, str], Awaitable[None]]


class PublishingJobs:
    def __init__(self, db: Database, platform: Platform, *,
                 resolver: HostResolver | None = None, retry_delay: float = 1.0,
                 settle_delay: float = 5.0, attempts: int = 3) -> None:
        self.db = db
        self.platform = platform
        self.policy = OutboundPolicy.from_settings(platform.settings)
        self.box = credentials_box(platform.settings.secret_key)
        self.resolver = resolver
        self.retry_delay = retry_delay
        self.settle_delay = settle_delay
        self.attempts = attempts

    def workers(self, js: JetStreamContext, progress: TaskProgress, *, ack_wait: float,
                max_deliver: int = 3) -> list[JobWorker]:
        return [JobWorker(SERVICE, PUBLISH_FUNCTION, self.publish, js, progress,
                          max_deliver=max_deliver, ack_wait=ack_wait),
                JobWorker(SERVICE, UNPUBLISH_FUNCTION, self.unpublish, js, progress,
                          max_deliver=max_deliver, ack_wait=ack_wait)]

    def publisher(self, account_id: int, integration: Row) -> Publisher:
        store = DbPublicationStore(self.db, account_id, integration["id"], integration["site_id"])
        return Publisher(store, policy=self.policy, resolver=self.resolver,
                         attempts=self.attempts, retry_delay=self.retry_delay,
                         settle_delay=self.settle_delay)

    @asynccontextmanager
    async def serialised(self, account_id: int, integration_id: int) -> AsyncIterator[None]:
        """One publishing job per site at a time (across worker processes)."""
        async with self.db.session(TenantScope.account(account_id), read_only=True) as s:
            await s.execute(select(func.pg_advisory_xact_lock(
                literal_column("hashtextextended('igny8.writer.publishing', 0)")
                + integration_id)))
            yield

    async def _load(self, ctx: JobContext) -> tuple[int, Row, Row, list[Row]]:
        account_id = ctx.job.account_id
        if not account_id:
            raise JobFailed("The job names no account.")
        data, vis = ctx.job.data, Visibility(account_id)
        async with unit_of_work(self.db, TenantScope.account(account_id), read_only=True) as uow:
            content = await ContentRepository(uow.session, vis).get(int(data["content_id"]))
            integration = await IntegrationRepository(uow.session, vis).get(
                int(data["integration_id"]))
            images = await ImageRepository(uow.session, vis).of_content([int(data["content_id"])])
        if content is None:
            raise JobFailed("The content no longer exists.")
        if integration is None or not integration["is_active"]:
            raise JobFailed("The site's WordPress integration is gone or not active.")
        return account_id, content, integration, images

    async def _progress(self, ctx: JobContext, step: str, percentage: int, message: str) -> None:
        report = ctx.report
        meta = report.meta("PREP", message)
        meta.update(phase=step, percentage=percentage)
        report.step(step, message=message)
        await report.progress.put(report.task_id, report.account_id, "PROGRESS", meta)

    async def _asset(self, account_id: int, image: Row, title: str) -> ImageAsset | None:
        storage = self.platform.storage
        if storage is None or image["status"] != ImageStatus.GENERATED or not image["storage_key"]:
            return None
        data = await storage.read(image["storage_key"], account_id=account_id)
        media_type = image["mime_type"] or "image/png"
        ext = (mimetypes.guess_extension(media_type) or ".png").lstrip(".")
        return ImageAsset(data=data, media_type=media_type, filename=f"image-{image['id']}.{ext}",
                          alt=image["alt_text"] or title, title=title,
                          ref=self.platform.image_url(image))

    def _site(self, integration: Row) -> WordPressSite:
        """The site with its decrypted credentials, or the job fails saying what to save."""
        try:
            return site_of(integration, self.box)
        except ValidationFailed as exc:
            raise JobFailed("Save the WordPress username and Application Password first.") \
                from exc

    async def publish(self, ctx: JobContext) -> dict[str, Any]:
        account_id, content, integration, images = await self._load(ctx)
        status: TargetStatus = {"draft": "draft", "future": "future"}.get(
            str(ctx.job.data.get("status")), "publish")  # type: ignore[assignment]

        async def progress(step: str, percentage: int, message: str) -> None:
            await self._progress(ctx, step, percentage, message)

        try:
            return await self.publish_loaded(
                account_id, content, integration, images, task_id=ctx.task_id, status=status,
                date_gmt=ctx.job.data.get("date_gmt"), on_progress=progress)
        except PublishFailed as exc:
            raise JobFailed(exc.reason) from None

    async def publish_loaded(self, account_id: int, content: Row, integration: Row,
                             images: list[Row], *, task_id: UUID, status: TargetStatus = "publish",
                             date_gmt: str | None = None,
                             on_progress: Progress | None = None,
                             replay: bool = False) -> dict[str, Any]:
        """Publish one content (the job's body, and automation's `pipeline_publish`): the
        exactly-once publisher with the site's publishes serialised, then the post on the
        content, a sync event and `writer.content.published` in one unit of work. Failing:
        the reason recorded, `PublishFailed` raised (`kind` `credentials` when none are
        saved or cannot be read). `replay`: when the publication already says `published`
        under `task_id` (an earlier request with the same key), answer what it recorded,
        without a call to the site."""
        started = time.perf_counter()
        try:
            site = site_of(integration, self.box)
        except ValidationFailed:
            raise PublishFailed("Save the WordPress username and Application Password first.",
                                "credentials") from None
        featured = None
        inline: list[ImageAsset] = []
        for image in images:
            asset = await self._asset(account_id, image, content["title"])
            if asset is None:
                continue
            if image["image_type"] == ImageType.FEATURED and featured is None:
                featured = asset
            elif image["image_type"] == ImageType.IN_ARTICLE:
                inline.append(asset)
        publishable = PublishableContent(
            content_id=content["id"], revision=int(content["revision"]), title=content["title"],
            html=content["html"], excerpt=content["meta_description"], slug=content["slug"],
            categories=list(content["categories"]), tags=list(content["tags"]),
            featured_image=featured, inline_images=inline, seo_title=content["meta_title"],
            meta_description=content["meta_description"],
            focus_keyword=content["primary_keyword"])

        async with self.serialised(account_id, integration["id"]):
            if replay:
                done = await self._replayed(account_id, integration, content["id"], task_id)
                if done is not None:
                    return done
            try:
                result = await self.publisher(account_id, integration).publish(
                    site, publishable, status=status, date_gmt=date_gmt,
                    on_progress=on_progress)
            except PublishFailed as exc:
                await self._failed(account_id, integration, SyncKind.PUBLISH, started,
                                   content["id"], exc.reason)
                raise
            if on_progress is not None:
                await on_progress("SAVE", 90, "Recording the post on the content")
            wp_status = {"published": "publish", "scheduled": "future"}.get(result.status,
                                                                           "draft")
            async with unit_of_work(self.db, TenantScope.account(account_id)) as uow:
                vis = Visibility(account_id)
                changes: dict[str, Any] = {"external_id": str(result.post_id),
                                           "external_url": result.url,
                                           "external_status": wp_status}
                if wp_status == "publish":
                    changes["status"] = ContentStatus.PUBLISHED
                row = await ContentRepository(uow.session, vis).update(content["id"], changes)
                publications = PublicationRepository(uow.session, vis)
                publication = await publications.of_content(integration["id"], content["id"])
                if row is None or publication is None:
                    raise JobFailed("The content no longer exists.")
                if replay:  # the key's mark: a request with it again is answered from here
                    await publications.update(publication["id"], {"task_id": str(task_id)})
                await SyncEventRepository(uow.session, vis).insert(_sync_event(
                    integration, SyncKind.PUBLISH, started, True, None, {
                        "content_id": content["id"], "post_id": result.post_id,
                        "status": wp_status, "adopted": result.adopted}))
                await uow.publish(
                    events.content_published(row, publication, task_id=task_id,
                                             status=wp_status, adopted=result.adopted,
                                             warnings=result.warnings),
                    writer_events.content_updated(row, "published", task_id=task_id))
        return {"content_id": content["id"], "publication_id": publication["id"],
                "post_id": result.post_id, "url": result.url, "slug": result.slug,
                "status": wp_status, "featured_media_id": result.featured_media_id,
                "media_ids": list(result.media_ids), "category_ids": list(result.category_ids),
                "tag_ids": list(result.tag_ids), "seo_fields": list(result.seo_fields_sent),
                "adopted": result.adopted, "warnings": list(result.warnings)}

    async def _replayed(self, account_id: int, integration: Row, content_id: int,
                        task_id: UUID) -> dict[str, Any] | None:
        async with self.db.session(TenantScope.account(account_id), read_only=True) as s:
            publication = await PublicationRepository(s, Visibility(account_id)).of_content(
                integration["id"], content_id)
        if (publication is None or publication["task_id"] != str(task_id)
                or publication["status"] != "published"):
            return None
        return {"content_id": content_id, "publication_id": publication["id"],
                "post_id": publication["external_id"], "url": publication["url"],
                "slug": publication["slug"], "status": "publish", "replayed": True}

    async def unpublish(self, ctx: JobContext) -> dict[str, Any]:
        account_id, content, integration, _ = await self._load(ctx)
        started = time.perf_counter()
        site = self._site(integration)
        trash = bool(ctx.job.data.get("trash"))

        async def progress(step: str, percentage: int, message: str) -> None:
            await self._progress(ctx, step, percentage, message)

        async with self.serialised(account_id, integration["id"]):
            try:
                result = await self.publisher(account_id, integration).unpublish(
                    site, content["id"], trash=trash, on_progress=progress)
            except PublishFailed as exc:
                await self._failed(account_id, integration, SyncKind.UNPUBLISH, started,
                                   content["id"], exc.reason)
                raise JobFailed(exc.reason) from None
        async with unit_of_work(self.db, TenantScope.account(account_id)) as uow:
            vis = Visibility(account_id)
            changes: dict[str, Any] = {"external_status": "trash" if trash else "draft"}
            if trash:
                changes["external_url"] = None
            if content["status"] == ContentStatus.PUBLISHED:
                changes["status"] = ContentStatus.REVIEW
            row = await ContentRepository(uow.session, vis).update(content["id"], changes)
            publication = await PublicationRepository(uow.session, vis).of_content(
                integration["id"], content["id"])
            if row is None or publication is None:
                raise JobFailed("The content no longer exists.")
            await SyncEventRepository(uow.session, vis).insert(_sync_event(
                integration, SyncKind.UNPUBLISH, started, True, None,
                {"content_id": content["id"], "post_id": result.post_id, "trash": trash}))
            await uow.publish(
                events.content_unpublished(row, publication, task_id=ctx.task_id, trashed=trash),
                writer_events.content_updated(row, "unpublished", task_id=ctx.task_id))
        return {"content_id": content["id"], "post_id": result.post_id,
                "status": "unpublished", "trashed": trash}

    async def _failed(self, account_id: int, integration: Row, kind: SyncKind, started: float,
                      content_id: int, reason: str) -> None:
        async with unit_of_work(self.db, TenantScope.account(account_id)) as uow:
            await SyncEventRepository(uow.session, Visibility(account_id)).insert(_sync_event(
                integration, kind, started, False, reason, {"content_id": content_id}))


def _sync_event(integration: Row, kind: SyncKind, started: float, success: bool,
                error: str | None, details: dict[str, Any]) -> dict[str, Any]:
    return {"site_id": integration["site_id"], "integration_id": integration["id"],
            "kind": kind, "success": success, "error": error,
            "duration_ms": int((time.perf_counter() - started) * 1000), "details": details}
