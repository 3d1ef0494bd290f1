"""The `openai` engine: a draft from any OpenAI-compatible chat model.

    prompt = resolve_prompt(task_override, account_prompt)   # → built-in when both blank
    await draft_openai(provider, brief, prompt, model=None) -> Draft

The brief goes to the model through the resolved prompt (placeholders such as
[IGNY8_TITLE] are filled; a prompt without them gets the brief appended), with a system
message fixing the answer's JSON shape. The answer is validated with pydantic and
`complete_json` gives the model one repair turn on malformed output (then
`AIResponseInvalid`, which the job layer refunds in full). The model's HTML is sanitised
with nh3 (an allow-list of article tags; no scripts, styles, event handlers or
javascript: URLs) before it is returned; missing or out-of-range SEO fields are fitted
the way the local engine fits them. Token usage is the provider's, summed over both
turns when there was a repair. Retries on 429/5xx and the timeout belong to the caller's
job layer: `OpenAIProvider` raises `AIProviderError(retryable=True)` for them.
"""

from __future__ import annotations

import re

import nh3
from pydantic import BaseModel, Field, field_validator

from libs.common.ai.base import ChatMessage, TextGenerator
from libs.common.ai.structured import complete_json
from services.writer.brief import Brief, Draft
from services.writer.document import html_word_count, parse_document
from services.writer.serp import (
    META_DESCRIPTION_MAX,
    META_DESCRIPTION_MIN,
    META_TITLE_MAX_CHARS,
    fit_meta_description,
    fit_meta_title,
    fit_slug,
)
from services.writer.text import Keyphrase, split_sentences

PLACEHOLDERS = {
    "[IGNY8_TITLE]": lambda b: b.title,
    "[IGNY8_OUTLINE]": lambda b: "\n".join(f"- {h}" for h in b.outline) or "(free)",
    "[IGNY8_DESCRIPTION]": lambda b: b.description,
    "[IGNY8_PRIMARY_KEYWORD]": lambda b: b.primary_keyword,
    "[IGNY8_KEYWORDS]": lambda b: ", ".join(b.secondary_keywords),
    "[IGNY8_QUESTIONS]": lambda b: "\n".join(f"- {q}" for q in b.question_keywords) or "(none)",
    "[IGNY8_INTENT]": lambda b: b.intent,
    "[IGNY8_STRUCTURE]": lambda b: b.content_structure,
    "[IGNY8_CONTENT_TYPE]": lambda b: b.content_type,
    "[IGNY8_WORD_COUNT]": lambda b: str(b.target_word_count),
    "[IGNY8_CLUSTER]": lambda b: b.cluster_name,
    "[IGNY8_TONE]": lambda b: (b.author.tone if b.author else "") or "clear and friendly",
    "[IGNY8_LANGUAGE]": lambda b: (b.author.language if b.author else "") or "en",
}

DEFAULT_CONTENT_PROMPT = (
    "Write a [IGNY8_STRUCTURE] of about [IGNY8_WORD_COUNT] words titled "
    "“[IGNY8_TITLE]” for readers searching “[IGNY8_PRIMARY_KEYWORD]” "
    "([IGNY8_INTENT] intent), in language [IGNY8_LANGUAGE], tone: [IGNY8_TONE].\n"
    "Outline (H2 sections):\n[IGNY8_OUTLINE]\n"
    "Work these keywords in naturally: [IGNY8_KEYWORDS].\n"
    "End with an FAQ answering:\n[IGNY8_QUESTIONS]\n"
    "Rules: the first sentence answers the query directly and uses the keyphrase; one H1; "
    "short paragraphs and sentences; never invent statistics, prices, names or quotes — "
    "write a visible placeholder such as [Add a fact: ...] where one is needed."
)

SYSTEM_CONTRACT = (
    "You write web articles. Answer with one JSON object and nothing else: "
    '{"title": "...", "meta_title": "at most 60 characters, starting with the keyphrase", '
    '"meta_description": "120-156 characters, with the keyphrase", '
    '"slug": "at most 5 words, hyphenated", '
    '"html": "the article body as HTML: one <h1>, <h2>/<h3> sections, <p>, <ul>/<ol>, '
    '<table> where useful"}.'
)

ALLOWED_TAGS = {
    "h1", "h2", "h3", "h4", "h5", "h6", "p", "br", "hr", "ul", "ol", "li", "strong", "em",
    "b", "i", "u", "s", "blockquote", "code", "pre", "a", "img", "figure", "figcaption",
    "table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption", "sup", "sub", "span",
    "dl", "dt", "dd",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title", "rel"},
    "img": {"src", "alt", "width", "height"},
    "th": {"colspan", "rowspan", "scope"},
    "td": {"colspan", "rowspan"},
}


def resolve_prompt(task_override: str | None, account_prompt: str | None) -> str:
    """Task override → account prompt → the built-in prompt (blank counts as absent)."""
    for prompt in (task_override, account_prompt):
        if prompt and prompt.strip():
            return prompt
    return DEFAULT_CONTENT_PROMPT


def render_prompt(template: str, brief: Brief) -> str:
    """Fill the [IGNY8_*] placeholders; a template that uses none gets the brief appended
    so that an account's own short prompt still carries the article's facts."""
    used = [p for p in PLACEHOLDERS if p in template]
    text = template
    for placeholder, value in PLACEHOLDERS.items():
        text = text.replace(placeholder, value(brief))
    if used:
        return text
    brief_text = "\n".join(
        f"{name.strip('[]').removeprefix('IGNY8_').lower()}: {value(brief)}"
        for name, value in PLACEHOLDERS.items()
    )
    return f"{text.rstrip()}\n\nBrief:\n{brief_text}"


def sanitize_html(html: str) -> str:
    """The model's HTML with only article tags and safe attributes/URLs left."""
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel=None,
        strip_comments=True,
    ).strip()


class AIArticle(BaseModel):
    title: str = Field(min_length=1, max_length=300)
    html: str = Field(min_length=20)
    meta_title: str = ""
    meta_description: str = ""
    slug: str = ""

    @field_validator("title", "meta_title", "meta_description", "slug")
    @classmethod
    def _squash(cls, v: str) -> str:
        return " ".join(v.split())


def _check(article: AIArticle) -> None:
    doc = parse_document(sanitize_html(article.html))
    if doc.word_count < 50:
        raise ValueError("html must hold the article body (it has fewer than 50 words)")
    if not doc.subheadings:
        raise ValueError("html must have <h2> sections")


async def draft_openai(
    provider: TextGenerator, brief: Brief, prompt: str | None = None, *, model: str | None = None
) -> Draft:
    """A draft from the account's model; see the module docstring."""
    template = resolve_prompt(brief.prompt_override, prompt)
    messages = [
        ChatMessage("system", SYSTEM_CONTRACT),
        ChatMessage("user", render_prompt(template, brief)),
    ]
    answer = await complete_json(provider, messages, AIArticle, check=_check, model=model,
                                 temperature=0.4)
    article = answer.value
    html = sanitize_html(article.html)
    kp = Keyphrase.of(brief.primary_keyword)
    meta_title = article.meta_title
    if not (meta_title and len(meta_title) <= META_TITLE_MAX_CHARS and kp.in_text(meta_title)):
        meta_title = fit_meta_title(brief.primary_keyword, article.title or brief.title)
    meta_description = article.meta_description
    if not (META_DESCRIPTION_MIN <= len(meta_description) <= META_DESCRIPTION_MAX
            and kp.in_text(meta_description)):
        sentences = [meta_description, *split_sentences(parse_document(html).first_paragraph)]
        meta_description = fit_meta_description([s for s in sentences if s],
                                                 brief.primary_keyword)
    slug = re.sub(r"[^a-z0-9-]", "", article.slug.lower().replace(" ", "-")).strip("-")
    if not slug or len(slug.split("-")) > 5:
        slug = fit_slug(brief.primary_keyword)
    doc = parse_document(html)
    return Draft(
        title=article.title,
        html=html,
        meta_title=meta_title,
        meta_description=meta_description,
        slug=slug,
        primary_keyword=brief.primary_keyword,
        secondary_keywords=brief.secondary_keywords,
        word_count=html_word_count(html),
        outline=tuple(h.text for h in doc.subheadings if h.level == 2),
        model=answer.model,
        usage=answer.usage,
    )
