"""The typed dependencies writer's endpoints take: each gives the service of one
aggregate, made for the caller in the request's unit of work. Reads are open to every
authenticated role; writes need an editor or above."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

from libs.common.ai_jobs import QueuedJob
from libs.common.security import Principal
from libs.common.tenancy import get_principal, require_role, service_dependency
from libs.common.uow import UnitOfWork
from services.writer.service import (
    AuthorProfileService,
    ContentService,
    ImageService,
    OptimizerService,
    TaskService,
    TaxonomyService,
    WriterService,
)

S = TypeVar("S", bound=WriterService)

def _service(kind: type[S], *, editor: bool = False) -> Any:
    def build(request: Request, uow: UnitOfWork, principal: Principal) -> S:
        return kind(uow, principal, request.app.state.platform)

    who = require_role("editor") if editor else get_principal
    return Depends(service_dependency(build, who))


Tasks = Annotated[TaskService, _service(TaskService)]
TasksEditor = Annotated[TaskService, _service(TaskService, editor=True)]
Contents = Annotated[ContentService, _service(ContentService)]
ContentsEditor = Annotated[ContentService, _service(ContentService, editor=True)]
Images = Annotated[ImageService, _service(ImageService)]
ImagesEditor = Annotated[ImageService, _service(ImageService, editor=True)]
Taxonomies = Annotated[TaxonomyService, _service(TaxonomyService)]
TaxonomiesEditor = Annotated[TaxonomyService, _service(TaxonomyService, editor=True)]
AuthorProfiles = Annotated[AuthorProfileService, _service(AuthorProfileService)]
AuthorProfilesEditor = Annotated[AuthorProfileService, _service(AuthorProfileService, editor=True)]
OptimizerEditor = Annotated[OptimizerService, _service(OptimizerService, editor=True)]


def queued(job: QueuedJob) -> dict[str, str]:
    """A billed job's answer: its task id (progress at `/api/v1/system/settings/
    task_progress/{task_id}/`). The relay sends the job once the unit of work commits;
    the credits go back if it does not."""
    return {"task_id": str(job.task_id)}
