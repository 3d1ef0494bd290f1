"""`/api/v1/linker/` bodies and answers."""

from __future__ import annotations

from pydantic import BaseModel, Field

from libs.common.fields import ShortText
from libs.common.ids import Id


class LinkIn(BaseModel):
    target_content_id: Id
    anchor: ShortText
    paragraph_index: int = Field(ge=0, le=100_000)


class LinkOut(BaseModel):
    target_content_id: int
    anchor: str
    paragraph_index: int


class SuggestRequest(BaseModel):
    content_id: Id


class ApplyRequest(SuggestRequest):
    """Without `links`, the suggested links are applied."""

    links: list[LinkIn] | None = Field(default=None, max_length=200)


class SuggestOut(BaseModel):
    content_id: int
    links: list[LinkOut]


class ApplyOut(SuggestOut):
    """The links put in, the content's new HTML and revision (unchanged when none)."""

    html: str
    revision: int
    word_count: int
