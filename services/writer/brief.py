"""What the writer's engines take and give: an article brief and a draft.

A `Brief` is built by the writer service from a task (itself from a planner idea): the
H1 idea, the outline, the keywords split into primary / secondary / question keywords,
the search intent, the content type and structure, the target length, the cluster, an
optional author profile and an optional prompt override. Both engines
(`services.writer.drafting.draft_local`, `services.writer.drafting_openai.draft_openai`)
answer with a `Draft`, which the service stores as content.

`Brief.from_task` is the one place that turns a task's loose fields (keywords as one
list, an outline written into the description as "H2: ..." lines) into a brief.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from libs.common.ai.base import Usage

Intent = Literal["informational", "navigational", "commercial", "transactional"]
ContentType = Literal["post", "page", "product", "taxonomy"]
ContentStructure = Literal[
    "article", "guide", "listicle", "how_to", "comparison", "review", "landing_page"
]

MIN_TARGET_WORDS = 500
MAX_TARGET_WORDS = 5000
MAX_IN_ARTICLE_IMAGES = 6

# A keyword that starts with one of these reads as a question ("how to descale a kettle",
# "is decaf coffee bad for you"): it belongs in the FAQ.
_QUESTION_START = re.compile(
    r"^(?:how|what|why|when|where|who|whom|whose|which|can|could|does|do|did|is|are|was|"
    r"were|should|will|would)\b",
    re.IGNORECASE,
)
# Outline lines as the planner writes them ("H2: ...") or as people type them.
_OUTLINE_LINE = re.compile(r"^\s*(?:H2\s*[:\-]\s*|#{2}\s+|[-*•]\s+|\d+[.)]\s+)(.+?)\s*$", re.I)


def squash(text: str) -> str:
    """One space between words, none at the ends."""
    return " ".join(text.split())


def is_question(keyword: str) -> bool:
    """Whether a keyword is phrased as a question (it then goes to the FAQ)."""
    text = squash(keyword)
    return text.endswith("?") or bool(_QUESTION_START.match(text))


def _unique(items: Iterable[str], *, skip: Iterable[str] = ()) -> tuple[str, ...]:
    seen = {squash(s).lower() for s in skip}
    out: list[str] = []
    for item in items:
        text = squash(item)
        if text and text.lower() not in seen:
            seen.add(text.lower())
            out.append(text)
    return tuple(out)


class Link(BaseModel):
    """A page the draft may link to: the site's own (internal) or a source (outbound)."""

    model_config = ConfigDict(frozen=True)

    title: str = Field(min_length=1, max_length=200)
    url: str = Field(min_length=1, max_length=2000)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.strip()
        if not (v.startswith(("http://", "https://", "/")) and " " not in v):
            raise ValueError("url must be an absolute http(s) URL or a site path")
        return v


class AuthorProfile(BaseModel):
    """The voice an account writes in (DOMAIN.md: name, description, tone, language,
    structure template)."""

    model_config = ConfigDict(frozen=True)

    name: str = ""
    description: str = ""
    tone: str = ""
    language: str = "en"
    structure_template: str = ""


class Brief(BaseModel):
    """Everything an engine needs to draft one article."""

    model_config = ConfigDict(frozen=True)

    title: str = Field(min_length=3, max_length=200)
    description: str = Field(default="", max_length=20000)
    outline: tuple[str, ...] = ()
    primary_keyword: str = Field(min_length=1, max_length=120)
    secondary_keywords: tuple[str, ...] = ()
    question_keywords: tuple[str, ...] = ()
    intent: Intent = "informational"
    content_type: ContentType = "post"
    content_structure: ContentStructure = "article"
    target_word_count: int = Field(default=1200, ge=MIN_TARGET_WORDS, le=MAX_TARGET_WORDS)
    cluster_name: str = ""
    author: AuthorProfile | None = None
    prompt_override: str | None = None
    internal_links: tuple[Link, ...] = ()
    outbound_links: tuple[Link, ...] = ()
    in_article_images: int = Field(default=2, ge=0, le=MAX_IN_ARTICLE_IMAGES)

    @field_validator("title", "primary_keyword", "cluster_name")
    @classmethod
    def _squash(cls, v: str) -> str:
        return squash(v)

    @field_validator("primary_keyword")
    @classmethod
    def _keyword_has_a_word(cls, v: str) -> str:
        if not re.search(r"\w", v):
            raise ValueError("the primary keyword needs at least one word")
        return v

    @model_validator(mode="after")
    def _clean_lists(self) -> Brief:
        primary = [self.primary_keyword]
        outline = _unique(self.outline) or outline_from_description(self.description)
        questions = _unique(self.question_keywords, skip=primary)
        secondary = _unique(self.secondary_keywords, skip=[*primary, *questions])
        object.__setattr__(self, "outline", outline[:20])
        object.__setattr__(self, "question_keywords", questions[:12])
        object.__setattr__(self, "secondary_keywords", secondary[:20])
        return self

    @classmethod
    def from_task(
        cls,
        *,
        title: str,
        keywords: Sequence[str],
        description: str = "",
        primary_keyword: str | None = None,
        **fields: object,
    ) -> Brief:
        """A brief from a task's fields: the first keyword (or `primary_keyword`) is
        primary, keywords phrased as questions go to the FAQ, the rest are secondary."""
        words = [squash(k) for k in keywords if squash(k)]
        primary = squash(primary_keyword or "") or (words[0] if words else squash(title))
        rest = [k for k in words if k.lower() != primary.lower()]
        return cls.model_validate(
            {
                "title": title,
                "description": description,
                "primary_keyword": primary,
                "secondary_keywords": tuple(k for k in rest if not is_question(k)),
                "question_keywords": tuple(k for k in rest if is_question(k)),
                **fields,
            }
        )


def outline_from_description(description: str) -> tuple[str, ...]:
    """The H2 lines of a description written as an outline ("H2: ...", "## ...",
    bullets or numbered lines)."""
    found = (m.group(1) for line in description.splitlines() if (m := _OUTLINE_LINE.match(line)))
    return _unique(h.rstrip(":") for h in found)


class Draft(BaseModel):
    """An engine's answer, ready to store as content."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    title: str
    html: str
    meta_title: str
    meta_description: str
    slug: str
    primary_keyword: str
    secondary_keywords: tuple[str, ...]
    word_count: int
    outline: tuple[str, ...]
    model: str
    usage: Usage = Field(default_factory=Usage)
