"""Optimizing through the account's model: what the local optimizer cannot fix without
writing (keyphrase in subheadings, long sentences, passive voice, transitions, sections
over 300 words, answer-first...) is rewritten by the model, and the rewrite is checked
before it is kept.

    await optimize_openai(provider, content, model=None) -> OptimizedContent

1. `optimize_local` first: the deterministic fixes (SEO title, meta description, slug,
   the keyphrase in the introduction and alt texts, H1s, long paragraphs).
2. The checks still not good, with their fixes, go to the model with the article; it
   answers one JSON object `{html, meta_title, meta_description, slug}`.
3. The answer is validated (`complete_json`: one repair turn with the reasons, then
   `AIResponseInvalid`, which the job layer refunds in full) against rules that keep the
   model from inventing: its HTML is sanitised with nh3 (`drafting_openai.sanitize_html`);
   no figure (a number) and no link that the article did not have; the length within
   80-130 % of the article's; the score not lower than the one it started from.

There is no silent local result for an account that runs on its model: a model that
fails makes the optimization fail (and refunds it). When the local fixes leave nothing
to rewrite, the model is not called.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace

from pydantic import BaseModel, Field, field_validator

from libs.common.ai.base import ChatMessage, TextGenerator
from libs.common.ai.structured import complete_json
from services.writer.document import parse_document
from services.writer.drafting_openai import sanitize_html
from services.writer.optimizer import (
    Analysis,
    ContentInput,
    OptimizedContent,
    analyze_content,
    optimize_local,
)
from services.writer.serp import META_TITLE_MAX_CHARS, SLUG_MAX_WORDS

MIN_LENGTH_RATIO, MAX_LENGTH_RATIO = 0.8, 1.3
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")

OPTIMIZE_INSTRUCTIONS = (
    "You edit a web article so that it passes the SEO and readability checks listed under "
    '"problems", each with what would fix it. Answer with one JSON object and nothing else: '
    '{"html": "the whole edited article body", "meta_title": "...", "meta_description": '
    '"...", "slug": "..."}. Rules: keep every fact, figure, name, link and placeholder such '
    "as [Add a fact: ...] exactly as it is; add no new facts, numbers, names, quotes, "
    "statistics or links; keep the sections and roughly the length; keep one <h1>; edit "
    "sentences (shorter, active voice, transition words, the keyphrase where a check asks "
    "for it) and split long sections under new <h2>/<h3> headings that describe them."
)


class _Edited(BaseModel):
    html: str = Field(min_length=20)
    meta_title: str = ""
    meta_description: str = ""
    slug: str = ""

    @field_validator("meta_title", "meta_description", "slug")
    @classmethod
    def _squash(cls, v: str) -> str:
        return " ".join(v.split())


def _figures(text: str) -> set[str]:
    return set(_NUMBER.findall(text))


def _edited_content(start: ContentInput, answer: _Edited) -> ContentInput:
    """The model's edit as content: sanitised HTML; a meta field it left empty, made too
    long or (for the slug) malformed keeps what the local fixes gave."""
    slug = answer.slug.lower()
    return replace(
        start,
        html=sanitize_html(answer.html),
        meta_title=answer.meta_title if 0 < len(answer.meta_title) <= META_TITLE_MAX_CHARS
        else start.meta_title,
        meta_description=answer.meta_description or start.meta_description,
        slug=slug if _SLUG.match(slug) and len(slug.split("-")) <= SLUG_MAX_WORDS
        else start.slug,
    )


def _checker(start: ContentInput, start_analysis: Analysis) -> tuple[
        dict[str, tuple[ContentInput, Analysis]], Callable[[_Edited], None]]:
    """The validation `complete_json` runs on each answer (ValueError: one repair turn),
    and where it leaves the last accepted edit with its analysis."""
    original = parse_document(start.html)
    figures = _figures(original.text + start.meta_title + start.meta_description)
    links = {a.href for a in original.links}
    kept: dict[str, tuple[ContentInput, Analysis]] = {}

    def check(answer: _Edited) -> None:
        edited = _edited_content(start, answer)
        doc = parse_document(edited.html)
        new_figures = sorted(_figures(doc.text + edited.meta_title + edited.meta_description)
                             - figures)
        if new_figures:
            raise ValueError("the edit adds figures the article does not have: "
                             f"{', '.join(new_figures[:10])}; keep only the article's own")
        new_links = sorted({a.href for a in doc.links} - links)
        if new_links:
            raise ValueError(f"the edit adds links: {', '.join(new_links[:5])}; add none")
        words = original.word_count or 1
        if not MIN_LENGTH_RATIO <= doc.word_count / words <= MAX_LENGTH_RATIO:
            raise ValueError(f"the edit has {doc.word_count} words for the article's {words}: "
                             "keep its length")
        after = analyze_content(edited)
        if after.score < start_analysis.score:
            raise ValueError(f"the edit scores {after.score}, below the article's "
                             f"{start_analysis.score}: fix the problems listed")
        kept["edit"] = (edited, after)

    return kept, check


async def optimize_openai(provider: TextGenerator, content: ContentInput, *,
                          model: str | None = None) -> OptimizedContent:
    """See the module docstring."""
    local = optimize_local(content)
    problems = [c for c in local.after.checks if c.status != "good"]
    if not problems:
        return local
    start = local.content
    request = {
        "keyphrase": start.keyphrase, "title": start.title, "html": start.html,
        "meta_title": start.meta_title, "meta_description": start.meta_description,
        "slug": start.slug,
        "problems": [{"check": c.name, "message": c.message, "fix": c.fix} for c in problems],
    }
    kept, check = _checker(start, local.after)
    answer = await complete_json(
        provider,
        [ChatMessage("system", OPTIMIZE_INSTRUCTIONS),
         ChatMessage("user", json.dumps(request, ensure_ascii=False))],
        _Edited, check=check, model=model, temperature=0.3)
    edited, after = kept["edit"]
    fixed = [c.name for c in problems if after.check(c.name).status == "good"]
    note = ("rewrote through the account's model: "
            + (", ".join(fixed) if fixed else "no check turned good"))
    return OptimizedContent(edited, local.before, after, (*local.changes, note), answer.model,
                            answer.usage)
