"""`/api/v1/linker/`: `suggest` (the internal links a content should get) and `apply`
(put the given or the suggested links into its HTML); 1 credit per request; editors and
above."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from libs.common.problems import Conflict, PaymentRequired, answers
from libs.common.security import Principal
from libs.common.tenancy import require_role, service_dependency
from libs.common.uow import UnitOfWork
from services.writer.linker import schemas as s
from services.writer.linker.engine import Link
from services.writer.linker.service import LinkerService

router = APIRouter(prefix="/api/v1/linker", tags=["linker"])


def _build(request: Request, uow: UnitOfWork, principal: Principal) -> LinkerService:
    return LinkerService(uow, principal, request.app.state.platform)


Linker = Annotated[LinkerService, Depends(service_dependency(_build, require_role("editor")))]


def _out(links: list[Link]) -> list[s.LinkOut]:
    return [s.LinkOut(target_content_id=x.target_content_id, anchor=x.anchor,
                      paragraph_index=x.paragraph_index) for x in links]


@router.post("/suggest/", response_model=s.SuggestOut)
async def suggest(body: s.SuggestRequest, linker: Linker) -> s.SuggestOut:
    """`{content_id, links: [{target_content_id, anchor, paragraph_index}]}`; nothing is
    changed."""
    return s.SuggestOut(content_id=body.content_id,
                        links=_out(await linker.suggest(body.content_id)))


@router.post("/apply/", response_model=s.ApplyOut, responses={
    **answers(PaymentRequired), **answers(Conflict, description="The content changed meanwhile")})
async def apply(body: s.ApplyRequest, linker: Linker) -> s.ApplyOut:
    """The links put in (the body's `links`, or the suggested ones), and the content's new
    HTML, word count and revision."""
    given = None if body.links is None else [
        Link(x.target_content_id, x.anchor, x.paragraph_index) for x in body.links]
    done = await linker.apply(body.content_id, given)
    c = done.content
    return s.ApplyOut(content_id=c["id"], links=_out(done.links), html=c["html"],
                      revision=c["revision"], word_count=c["word_count"])
