"""Images: prompts, statuses, and their stored files (served after the same tenant check
as any read)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from libs.common.ai_jobs import QueuedJob
from libs.common.problems import NotFound, ValidationFailed
from libs.common.repository import ListQuery, Page, Row
from libs.common.storage import FileMissing, FileStream
from services.writer.events import GENERATE_IMAGES
from services.writer.models import ImageStatus
from services.writer.repository import ImageRepository
from services.writer.service.common import Aggregate
from services.writer.service.tasks import ContentService, TaskService

NO_FILE = "This image has no file yet."


class ImageService(Aggregate[ImageRepository]):
    repository_class = ImageRepository
    noun = "Image"

    def shown(self, row: Row) -> Row:
        """An image as the API shows it: with its file's URL once it has one."""
        return {**row, "image_url": self.platform.image_url(row)}

    async def page(self, query: ListQuery[Any]) -> Page[Row]:
        found = await super().page(query)
        return Page(found.count, [self.shown(r) for r in found.rows])

    async def get(self, row_id: int) -> Row:
        return self.shown(await super().get(row_id))

    async def of_content(self, content_id: int) -> list[Row]:
        """`content_images?content_id=`: the images of a content the caller sees."""
        await ContentService(self.uow, self.principal, self.platform).get(content_id)
        return [self.shown(r) for r in await (await self.rows()).of_content([content_id])]

    async def create(self, values: dict[str, Any]) -> Row:
        """An image of a content (in its site and sector), or of a task."""
        content = await self.owned("content_id", ContentService, values.get("content_id"))
        task = await self.owned("task_id", TaskService, values.get("task_id"))
        parent = content or task
        if parent is None:
            raise ValidationFailed.field("content_id", "Give the image's content_id or task_id.")
        if content is not None and task is not None and content["task_id"] != task["id"]:
            raise ValidationFailed.field("task_id", "The content is not this task's.")
        row = await (await self.rows()).insert({
            **values, "task_id": values.get("task_id") or (content or {}).get("task_id"),
            "site_id": parent["site_id"], "sector_id": parent["sector_id"]})
        return self.shown(row)

    async def update(self, image_id: int, changes: dict[str, Any]) -> Row:
        current = await self.get(image_id)
        if not changes:
            return current
        row = await (await self.rows()).update(image_id, changes)
        if row is None:
            raise NotFound("Image not found.")
        return self.shown(row)

    async def set_status(self, ids: Sequence[int], status: str) -> int:
        return len(await (await self.rows()).set_status(ids, status))

    async def file_url(self, image_id: int) -> str:
        image = await self.get(image_id)
        if image["image_url"] is None:
            raise NotFound(NO_FILE)
        return str(image["image_url"])

    async def open_file(self, image_id: int) -> FileStream:
        """The image's bytes, for the caller only (another tenant's image is a 404)."""
        image = await self.get(image_id)
        storage = self.platform.storage
        if not image["storage_key"] or storage is None:
            raise NotFound(NO_FILE)
        try:
            return await storage.open(image["storage_key"], account_id=self.account_id)
        except FileMissing:
            raise NotFound(NO_FILE) from None

    async def request_images(self, ids: Sequence[int], run_id: str | None = None
                             ) -> QueuedJob:
        """Queue `generate_images` for those not generated yet: one hold per image (4
        credits), captured only for an image that was made."""
        wanted = self.limited(ids, self.settings.generate_images_max_images)
        todo = [r["id"] for r in await self.all_of(wanted)
                if r["status"] != ImageStatus.GENERATED]
        if not todo:
            raise ValidationFailed.field("ids", "These images are generated already.")
        return await self.queue(GENERATE_IMAGES, {"image_ids": todo, "run_id": run_id},
                                items={str(i): 1 for i in todo})
