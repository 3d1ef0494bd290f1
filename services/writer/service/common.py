"""What writer's services share: the caller, the unit of work, the platform clients, the
directory, the clusters a body may name, and one aggregate's reads and deletes written
once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from libs.common.ai_jobs import AIJobRequests, QueuedJob
from libs.common.ai_jobs.request import AIFunction
from libs.common.auth import AuthClient
from libs.common.directory import CallerService
from libs.common.planner import PlannerClient
from libs.common.problems import NotFound, ValidationFailed
from libs.common.repository import ListQuery, Page, Repository, Row
from libs.common.security import Principal
from libs.common.storage import FileStorage
from libs.common.uow import UnitOfWork
from services.writer.models import DIRECTORY
from services.writer.repository import PlannerRefs
from services.writer.settings import WriterSettings

R = TypeVar("R", bound=Repository[Row])

# The image file endpoint, under the public (gateway) URL.
IMAGE_FILE_PATH = "/api/v1/writer/images/{id}/download/"

# DRF's PrimaryKeyRelatedField answer to a pk its queryset does not hold (the reference's
# clients read it).
INVALID_PK = 'Invalid pk "{pk}" - object does not exist.'


@dataclass
class Platform:
    """What the app (or a worker) gives every writer service: settings, auth's, planner's
    and billing's clients (billing's through the AI job requests) and the file storage."""

    settings: WriterSettings
    auth: AuthClient | None = None
    planner: PlannerClient | None = None
    ai_jobs: AIJobRequests | None = None
    storage: FileStorage | None = None

    def image_url(self, image: Row) -> str | None:
        """Where a generated image's bytes are served (through the gateway, after the
        same tenant check as any read); None while it has no file."""
        if not image.get("storage_key"):
            return None
        return self.settings.public_url.rstrip("/") + IMAGE_FILE_PATH.format(id=image["id"])


class WriterService(CallerService):
    """One caller's view of writer in one unit of work (`CallerService`). Never commits."""

    directory = DIRECTORY

    def __init__(self, uow: UnitOfWork, principal: Principal, platform: Platform) -> None:
        super().__init__(uow, principal, platform.auth)
        self.platform = platform

    @property
    def settings(self) -> WriterSettings:
        return self.platform.settings

    async def planner_refs(self) -> PlannerRefs:
        return PlannerRefs(self.uow.session, await self.visibility())

    async def cluster_of_site(self, cluster_id: int | None, site_id: int) -> Row | None:
        """The planner cluster a body names (`cluster_id`): the caller's, in the body's
        site, or a 400 naming the field with DRF's message. Writer's read model answers
        first; on a miss planner is asked (`lookup_cluster`) and its answer kept, so a
        cluster created a moment ago is not refused while its event is on the way. Planner
        not answering is a 503 (`ServiceUnavailable`), as a failed directory lookup is:
        a reference is never accepted unchecked."""
        if cluster_id is None:
            return None
        refs = await self.planner_refs()
        found = await refs.cluster(cluster_id)
        if found is None and self.platform.planner is not None:
            doc = await self.platform.planner.lookup_cluster(self.account_id, cluster_id)
            if doc is not None and doc.account_id == self.account_id:
                await refs.upsert_cluster(doc.model_dump())
                found = await refs.cluster(cluster_id)
        if found is None or found["site_id"] != site_id:
            raise ValidationFailed.field("cluster_id", INVALID_PK.format(pk=cluster_id))
        return found

    async def queue(self, function: AIFunction, data: dict[str, Any],
                    items: dict[str, int]) -> QueuedJob:
        """A billed job with one hold per item (each item captured for what it cost):
        402 before anything is written when the account cannot cover them all."""
        if self.platform.ai_jobs is None:
            raise RuntimeError("this service was made without AI job requests")
        return await self.platform.ai_jobs.queue(self.uow, self.principal, function, data,
                                                 items=items)

    def limited(self, ids: Sequence[int], limit: int) -> list[int]:
        """The distinct ids of a batch, at most `limit` of them (400 naming `ids`)."""
        wanted = sorted(set(ids))
        if len(wanted) > limit:
            raise ValidationFailed.field("ids", f"At most {limit} items per request.")
        return wanted


class Aggregate(WriterService, Generic[R]):
    """Reads and deletes of one aggregate, for the caller: another tenant's id is a 404."""

    repository_class: ClassVar[type[Repository[Row]]]
    noun: ClassVar[str]

    async def rows(self) -> R:
        return await self.repository(self.repository_class)  # type: ignore[arg-type]

    async def page(self, query: ListQuery[Any]) -> Page[Row]:
        return await (await self.rows()).page(query)

    async def get(self, row_id: int) -> Row:
        found = await (await self.rows()).get(row_id)
        if found is None:
            raise NotFound(f"{self.noun} not found.")
        return found

    async def all_of(self, ids: Sequence[int]) -> list[Row]:
        """Every one of `ids` (404 when any is not the caller's)."""
        found = await (await self.rows()).get_many(ids)
        if len(found) != len(set(ids)):
            raise NotFound(f"{self.noun} not found.")
        return found

    async def delete(self, ids: Sequence[int], *, single: bool = False) -> int:
        return len(await self.remove(ids, single=single))

    async def remove(self, ids: Sequence[int], *, single: bool = False) -> list[Row]:
        """Delete the caller's rows among `ids`; one that is not theirs alone is a 404."""
        deleted = await (await self.rows()).delete(ids)
        if single and not deleted:
            raise NotFound(f"{self.noun} not found.")
        return deleted

    async def owned(self, field: str, kind: type[Aggregate[Any]], row_id: int | None
                    ) -> Row | None:
        """A row of another aggregate a body names (`task_id`, `author_profile_id`): the
        caller's, or a 400 naming the field."""
        if row_id is None:
            return None
        found = await (await self.repository(kind.repository_class)).get(row_id)
        if found is None:
            raise ValidationFailed.field(field, f"{kind.noun} {row_id} not found.")
        return found
