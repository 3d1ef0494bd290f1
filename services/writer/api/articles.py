"""`/api/v1/writer/tasks/` and `/api/v1/writer/content/`, as the reference lists them:
standard CRUD (`libs/common/resources.py`) and each one's actions.

Endpoints parse, call a service obtained through a typed dependency, and answer; the unit
of work commits. Bulk actions answer `data` + `message`; AI functions answer `{task_id}`.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from libs.common.pagination import message_response
from libs.common.problems import Conflict, PaymentRequired, answers
from libs.common.resources import resource_routes
from services.writer import schemas as s
from services.writer.api.deps import Contents, ContentsEditor, Tasks, TasksEditor, queued

router = APIRouter(prefix="/api/v1/writer", tags=["writer"])


@router.post("/tasks/bulk_delete/")
async def bulk_delete_tasks(body: s.Ids, tasks: TasksEditor) -> Response:
    deleted = await tasks.delete(body.ids)
    return message_response({"deleted_count": deleted}, f"{deleted} tasks deleted")


@router.post("/tasks/bulk_update/")
async def bulk_update_tasks(body: s.BulkTaskStatus, tasks: TasksEditor) -> Response:
    """Move tasks to a status."""
    updated = await tasks.set_status(body.ids, body.status)
    return message_response({"updated_count": updated}, f"{updated} tasks updated")


@router.post("/tasks/auto_generate_content/", response_model=s.TaskQueued,
             responses=answers(PaymentRequired))
async def auto_generate_content(body: s.AutoGenerateContent,
                                tasks: TasksEditor) -> dict[str, str]:
    """Draft each task's article (at most 50 tasks); each becomes `review`."""
    return queued(await tasks.request_content(body.ids, body.run_id))


@router.post("/content/generate_image_prompts/", response_model=s.TaskQueued,
             responses=answers(PaymentRequired))
async def generate_image_prompts(body: s.ContentIds,
                                 contents: ContentsEditor) -> dict[str, str]:
    """One featured and up to `max_in_article_images` in-article prompts per content."""
    return queued(await contents.request_image_prompts(body.ids, body.run_id))


resource_routes(router, "/tasks/", name="task", reader=Tasks, editor=TasksEditor,
                out=s.TaskOut, create=s.TaskCreate, update=s.TaskWrite, query=s.TaskQuery)
resource_routes(router, "/content/", name="content", reader=Contents, editor=ContentsEditor,
                out=s.ContentOut, create=s.ContentCreate, update=s.ContentWrite,
                query=s.ContentQuery,
                create_answers=answers(Conflict, description="The task has its content"))
