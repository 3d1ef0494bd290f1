"""Tasks (articles to write) and their content."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from libs.common.ai_jobs import QueuedJob
from libs.common.problems import Conflict, NotFound, ValidationFailed
from libs.common.repository import Row
from services.writer import events
from services.writer.brief import MAX_TARGET_WORDS, MIN_TARGET_WORDS
from services.writer.document import html_word_count
from services.writer.events import AUTO_GENERATE_CONTENT, GENERATE_IMAGE_PROMPTS
from services.writer.repository import ContentRepository, TaskRepository
from services.writer.service.common import Aggregate
from services.writer.service.library import AuthorProfileService

TASK_HAS_CONTENT = "This task has content already."


def target_words(task: Row) -> int:
    """The length a draft is written to (what its hold is estimated on)."""
    return min(max(int(task["word_count"] or 0), MIN_TARGET_WORDS), MAX_TARGET_WORDS)


class TaskService(Aggregate[TaskRepository]):
    repository_class = TaskRepository
    noun = "Task"

    async def create(self, values: dict[str, Any]) -> Row:
        await self.access.site_and_sector(values["site_id"], values["sector_id"])
        await self.cluster_of_site(values.get("cluster_id"), values["site_id"])
        await self.owned("author_profile_id", AuthorProfileService,
                         values.get("author_profile_id"))
        row = await (await self.rows()).insert(values)
        await self.uow.publish(events.task_created(row))
        return await self.get(row["id"])

    async def update(self, task_id: int, changes: dict[str, Any]) -> Row:
        current = await self.get(task_id)
        if not changes:
            return current
        await self.cluster_of_site(changes.get("cluster_id"), current["site_id"])
        await self.owned("author_profile_id", AuthorProfileService,
                         changes.get("author_profile_id"))
        await (await self.rows()).update(task_id, changes)
        return await self.get(task_id)

    async def set_status(self, ids: Sequence[int], status: str) -> int:
        return len(await (await self.rows()).set_status(ids, status))

    async def request_content(self, ids: Sequence[int], run_id: str | None = None
                              ) -> QueuedJob:
        """Queue `auto_generate_content`: each task holds its target length's credits (1
        per 100 words), captured for the words it really got."""
        wanted = self.limited(ids, self.settings.auto_generate_content_max_tasks)
        found = await self.all_of(wanted)
        return await self.queue(AUTO_GENERATE_CONTENT, {"task_ids": wanted, "run_id": run_id},
                                items={str(t["id"]): target_words(t) for t in found})


class ContentService(Aggregate[ContentRepository]):
    repository_class = ContentRepository
    noun = "Content"

    async def create(self, values: dict[str, Any]) -> Row:
        await self.access.site_and_sector(values["site_id"], values["sector_id"])
        task = await self.owned("task_id", TaskService, values.get("task_id"))
        if task is not None and task["content_id"] is not None:
            raise Conflict(TASK_HAS_CONTENT, errors={"task_id": [TASK_HAS_CONTENT]})
        if task is not None and (task["site_id"], task["sector_id"]) != (
                values["site_id"], values["sector_id"]):
            raise ValidationFailed.field("task_id", "The task is in another site or sector.")
        await self.cluster_of_site(values.get("cluster_id"), values["site_id"])
        row = await (await self.rows()).insert({
            **values, "word_count": html_word_count(values.get("html") or "")})
        await self.uow.publish(events.content_updated(row, "created"))
        return row

    async def update(self, content_id: int, changes: dict[str, Any]) -> Row:
        current = await self.get(content_id)
        if not changes:
            return current
        await self.cluster_of_site(changes.get("cluster_id"), current["site_id"])
        if "html" in changes:
            changes = {**changes, "word_count": html_word_count(changes["html"] or "")}
        row = await (await self.rows()).revise(content_id, changes)
        if row is None:
            raise NotFound("Content not found.")
        await self.uow.publish(events.content_updated(row, "updated"))
        return row

    async def delete(self, ids: Sequence[int], *, single: bool = False) -> int:
        deleted = await self.remove(ids, single=single)
        await self.uow.publish(*(events.content_updated(row, "deleted") for row in deleted))
        return len(deleted)

    async def request_image_prompts(self, ids: Sequence[int], run_id: str | None = None
                                    ) -> QueuedJob:
        """Queue `generate_image_prompts`: each content holds one unit (2 credits)."""
        wanted = self.limited(ids, self.settings.generate_image_prompts_max_content)
        await self.all_of(wanted)
        return await self.queue(GENERATE_IMAGE_PROMPTS,
                                {"content_ids": wanted, "run_id": run_id},
                                items={str(i): 1 for i in wanted})
