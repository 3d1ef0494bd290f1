"""`/api/v1/writer/images/`: standard CRUD, `content_images`, `bulk_update`,
`generate_images`, and the stored file: `{id}/file/` answers its URL, `{id}/download/`
streams its bytes after the same tenant check as any read (non-JSON passes through the
gateway as it is)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response, StreamingResponse

from libs.common.ids import Id
from libs.common.pagination import message_response
from libs.common.problems import PaymentRequired, answers
from libs.common.resources import resource_routes
from libs.common.tenancy import CurrentPrincipal, request_unit_of_work
from services.writer import schemas as s
from services.writer.api.deps import Images, ImagesEditor, queued
from services.writer.service import ImageService

router = APIRouter(prefix="/api/v1/writer", tags=["writer"])


@router.get("/images/content_images/", response_model=list[s.ImageOut])
async def content_images(images: Images,
                         content_id: Annotated[Id, Query()]) -> list[dict[str, Any]]:
    """The images of one content, featured first."""
    return await images.of_content(content_id)


@router.post("/images/bulk_update/")
async def bulk_update_images(body: s.BulkImageStatus, images: ImagesEditor) -> Response:
    """Move images to a status."""
    updated = await images.set_status(body.ids, body.status)
    return message_response({"updated_count": updated}, f"{updated} images updated")


@router.post("/images/generate_images/", response_model=s.TaskQueued,
             responses=answers(PaymentRequired))
async def generate_images(body: s.ImageIds, images: ImagesEditor) -> dict[str, str]:
    """Make each image's file (pending → generating → generated | failed)."""
    return queued(await images.request_images(body.ids, body.run_id))


@router.get("/images/{image_id}/file/", response_model=s.FileUrl)
async def image_file(image_id: Id, images: Images) -> dict[str, str]:
    """The URL of the image's file (a 404 until it has one)."""
    return {"url": await images.file_url(image_id)}


@router.get("/images/{image_id}/download/", response_class=StreamingResponse,
            responses={200: {"content": {"image/webp": {}}}})
async def download_image(image_id: Id, request: Request,
                         principal: CurrentPrincipal) -> Response:
    """The image's bytes, streamed (checked in a unit of work of its own: the body
    outlives the request's)."""
    async with request_unit_of_work(request, principal.scope) as uow:
        images = ImageService(uow, principal, request.app.state.platform)
        image = await images.get(image_id)
        stream = await images.open_file(image_id)
    return StreamingResponse(stream, media_type=stream.info.content_type, headers={
        "Content-Length": str(stream.info.size), "ETag": f'"{image["sha256"]}"',
        "Cache-Control": "private, max-age=3600"})


resource_routes(router, "/images/", name="image", reader=Images, editor=ImagesEditor,
                out=s.ImageOut, create=s.ImageCreate, update=s.ImageWrite,
                query=s.ImageQuery)
