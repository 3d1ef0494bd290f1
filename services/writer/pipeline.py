"""Writer's answers to automation's pipeline commands (`libs/common/pipeline.py`): what
waits at stages 4-7 in a site, and starting writer's own jobs for a batch of it through
the same services the API uses (same limits, holds and events).

4 draft tasks without content (`auto_generate_content`); 5 drafts without images
(`generate_image_prompts`); 6 pending images (`generate_images`); 7 drafts whose images
are all settled, for the review gate: their optimizer score (the free analysis run again
on the text as it is, `_scores`) and whether the drafting engine's "[Add a fact: …]"
placeholders are still in the text. A job's task id is
derived from automation's key: asking twice is one job.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from libs.common.db import TenantScope
from libs.common.pipeline import (
    PendingResult,
    PendingWork,
    PipelineAnswerer,
    QueueResult,
    QueueWork,
)
from libs.common.repository import Row, Visibility
from libs.common.uow import unit_of_work
from services.writer.models import (
    AI_TASK_LOGS,
    DIRECTORY,
    ContentSource,
    ContentStatus,
    ImageStatus,
    TaskStatus,
)
from services.writer.optimizer import analyze_content
from services.writer.repository import ContentRepository, ImageRepository, TaskRepository
from services.writer.service import (
    ContentService,
    ImageService,
    Platform,
    TaskService,
    content_input,
    site_host,
)
from services.writer.settings import WriterSettings

# What the offline drafting engine leaves for a person to fill in (drafting_phrases.py).
PLACEHOLDER = re.compile(r"\[Add (?:a|an) [a-z]+:")
UNSETTLED_IMAGES = (ImageStatus.PENDING, ImageStatus.GENERATING)


def has_placeholders(html: str) -> bool:
    return PLACEHOLDER.search(html or "") is not None


class WriterPipeline(PipelineAnswerer[WriterSettings]):
    owner = "writer"
    ai_task_logs = AI_TASK_LOGS

    async def pending(self, req: PendingWork) -> PendingResult:
        missing = 0
        items: dict[str, dict[str, Any]] = {}
        host: str | None = None
        images_of: list[Row] = []
        async with self.reading(req) as (session, vis):
            rows: list[Row]
            if req.stage == 4:
                tasks = TaskRepository(session, vis)
                rows = [t for t in await tasks.find(tasks.table.c.status == TaskStatus.DRAFT)
                        if t["content_id"] is None]
                if req.expect:
                    made = {t["idea_id"] for t in await tasks.find(
                        tasks.table.c.idea_id.in_(req.expect))}
                    missing = len(set(req.expect) - made)
            elif req.stage in (5, 7):
                contents = ContentRepository(session, vis)
                drafts = await contents.find(contents.table.c.status == ContentStatus.DRAFT,
                                             contents.table.c.source == ContentSource.IGNY8)
                images = await ImageRepository(session, vis).of_content(
                    [c["id"] for c in drafts])
                with_images = {i["content_id"] for i in images}
                if req.stage == 5:
                    rows = [c for c in drafts if c["id"] not in with_images]
                else:
                    unsettled = {i["content_id"] for i in images
                                 if i["status"] in UNSETTLED_IMAGES}
                    rows = [c for c in drafts
                            if c["id"] in with_images and c["id"] not in unsettled]
                    if req.chosen(rows):
                        host = site_host(await DIRECTORY.repository(session).site(
                            req.account_id, req.site_id))
                        images_of = images
            elif req.stage == 6:
                img = ImageRepository(session, vis)
                rows = await img.find(img.table.c.status == ImageStatus.PENDING)
            else:
                raise ValueError(f"writer has no stage {req.stage}")
        picked = req.chosen(rows)
        if req.stage == 7 and picked:
            scores = await self._scores(req.account_id, picked, host) if req.score else {}
            items = {str(c["id"]): {
                "title": c["title"], "optimizer_score": scores.get(c["id"]),
                "placeholders": has_placeholders(c["html"]),
                "images": sum(1 for i in images_of if i["content_id"] == c["id"]
                              and i["status"] == ImageStatus.GENERATED)}
                for c in picked}
        return PendingResult(stage=req.stage, count=len(rows),
                             ids=[r["id"] for r in picked], items=items,
                             missing=missing)

    async def _scores(self, account_id: int, contents: list[Row],
                      host: str | None) -> dict[int, int]:
        """The optimizer's score of each draft's text as it is now, which stage 7's gate
        compares with the threshold: the free analysis (`OptimizerService.analyze`'s),
        kept on the content with the revision it read. A score of the current revision
        is reused; drafts the pipeline wrote have none, and an edit since the last
        analysis (a new revision) makes it stale, so those are analysed again."""
        scores = {c["id"]: int(c["optimizer_score"]) for c in contents
                  if c["optimizer_score"] is not None
                  and (c["optimizer_analysis"] or {}).get("revision") == c["revision"]}
        stale = [c for c in contents if c["id"] not in scores]
        if not stale:
            return scores

        def analyse() -> dict[int, dict[str, Any]]:
            return {c["id"]: {**analyze_content(content_input(c, host)).as_dict(),
                              "revision": c["revision"]} for c in stale}

        analyses = await asyncio.to_thread(analyse)
        async with unit_of_work(self.db, TenantScope.account(account_id)) as uow:
            rows = ContentRepository(uow.session, Visibility(account_id))
            for content_id, analysis in analyses.items():
                # Only if nobody changed the content meanwhile (the analysis is of this one).
                await rows.update_many([content_id], {
                    "optimizer_score": analysis["score"], "optimizer_analysis": analysis},
                    rows.table.c.revision == analysis["revision"])
                scores[content_id] = int(analysis["score"])
        return scores

    async def queue(self, req: QueueWork) -> QueueResult:
        async with self.acting(req) as (uow, principal, requests):
            platform = Platform(self.settings, ai_jobs=requests)
            if req.stage == 4:
                job = await TaskService(uow, principal, platform).request_content(
                    req.ids, req.run_id)
            elif req.stage == 5:
                job = await ContentService(uow, principal, platform).request_image_prompts(
                    req.ids, req.run_id)
            elif req.stage == 6:
                job = await ImageService(uow, principal, platform).request_images(
                    req.ids, req.run_id)
            else:
                raise ValueError(f"writer has no job for stage {req.stage}")
        return QueueResult(stage=req.stage, task_id=job.task_id, ids=req.ids,
                           replayed=job.replayed)
