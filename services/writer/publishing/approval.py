"""Automation's stage 7 in `auto` mode: writer's answer to `pipeline_publish`
(`libs/common/pipeline.py`), which approves one content and publishes it to its site's
active WordPress integration.

The publish is the publish job's own body (`PublishingJobs.publish_loaded`): the
exactly-once publisher of ADR 0019 over writer's publication records, the site's publishes
serialised, then the post on the content and `writer.content.published`. Nothing second
guards the key: its task id (`task_id_for(key)`) is written on the publication when the
publish is recorded, and a request with the same key that finds the publication
`published` under it is answered from the record without a call to the site (a retry
after a lost answer, or a duplicate waiting behind the first on the site's lock). A retry
after a publish that failed or was cut short simply publishes again, which the publisher
makes safe (it finds the post an earlier attempt made).

The answer says published, or why not (`code`): `no_integration`, `inactive`,
`credentials` (none saved, unreadable, or the site refused them: 401/403), `failed` (the
site's reason, recorded on the publication and in a sync event). The content stays a
draft unless it was published; the caller keeps the reason.
"""

from __future__ import annotations

from typing import Any

from libs.common.commands import Command, Handler, serve
from libs.common.db import Database, TenantScope
from libs.common.jobs import JobFailed
from libs.common.pipeline import WRITER_PUBLISH, PublishAnswer, PublishWork, task_id_for
from libs.common.problems import NotFound
from libs.common.repository import Visibility
from libs.common.runtime import WorkerContext
from libs.common.storage import build_storage
from services.writer.publishing.jobs import PublishingJobs
from services.writer.publishing.publisher import PublishFailed
from services.writer.publishing.repository import IntegrationRepository
from services.writer.repository import ContentRepository, ImageRepository
from services.writer.service.common import Platform
from services.writer.settings import WriterSettings

# The site's refusals that need a person to fix the saved credentials.
CREDENTIAL_KINDS = frozenset({"credentials", "auth", "forbidden"})


class AutoPublishing:
    def __init__(self, db: Database, jobs: PublishingJobs) -> None:
        self.db = db
        self.jobs = jobs

    def handlers(self) -> dict[Command[Any, Any], Handler]:
        return {WRITER_PUBLISH: self.publish}

    async def publish(self, req: PublishWork) -> PublishAnswer:
        vis = Visibility(req.account_id, (req.site_id,))
        async with self.db.session(TenantScope.account(req.account_id), read_only=True) as s:
            content = await ContentRepository(s, vis).get(req.content_id)
            integration = await IntegrationRepository(s, vis).of_site(req.site_id)
            images = await ImageRepository(s, vis).of_content([req.content_id])
        if content is None:
            raise NotFound("Content not found.")

        def refused(code: str, reason: str) -> PublishAnswer:
            return PublishAnswer(content_id=req.content_id, published=False, code=code,
                                 reason=reason)

        if integration is None:
            return refused("no_integration", "The site has no WordPress integration.")
        if not integration["is_active"]:
            return refused("inactive", "The site's WordPress integration is not active.")
        try:
            done = await self.jobs.publish_loaded(
                req.account_id, content, integration, images, task_id=task_id_for(req.key),
                replay=True)
        except PublishFailed as exc:
            code = "credentials" if exc.kind in CREDENTIAL_KINDS else "failed"
            return refused(code, exc.reason)
        except JobFailed as exc:  # the content or the integration went away meanwhile
            return refused("failed", str(exc))
        published = done["status"] == "publish"
        return PublishAnswer(
            content_id=req.content_id, published=published,
            code="published" if published else "failed",
            reason="" if published else f"WordPress kept the post as {done['status']}.",
            post_id=done["post_id"], url=done["url"], replayed=bool(done.get("replayed")))

    @classmethod
    async def serve(cls, ctx: WorkerContext, settings: WriterSettings) -> None:
        """A worker task: answer `pipeline_publish` until the worker stops."""
        storage = build_storage(settings)
        try:
            answers = cls(ctx.db, PublishingJobs(ctx.db, Platform(settings, storage=storage)))
            await serve(ctx.nc, answers.handlers(), stop=ctx.stop)
        finally:
            await storage.aclose()

