"""The optimizer: score an article 0-100 and fix what can be fixed without inventing.

    analyze(html, keyphrase=..., meta_title=..., meta_description=..., slug=...,
            secondary=(...), questions=(...), site_host=None) -> Analysis
    optimize_local(content) -> OptimizedContent            # offline, deterministic

`analyze` runs 23 checks: Yoast's 14 SEO checks (`seo_checks`), Yoast's 7 readability
checks (`readability`), answer-first and cluster coverage; each scores 9/6/3 (good/ok/
bad) and the score is the share of points won (`checks.score`). It is offline and
deterministic: same input, same answer. Every check that is not good names its fix.

`optimize_local` changes only what needs no new facts: SEO title, meta description and
slug rebuilt from the article's own words, the keyphrase put into the introduction and
into image alt texts, extra H1s demoted, missing H1 added from the title, long paragraphs
split at sentence ends. What it cannot do honestly (links, new sections, facts) stays in
the checks' fixes; accounts on their own model get those rewritten by it
(`optimizer_openai.optimize_openai`).
Credits for optimization are per 200 words of the article (`Analysis.word_count`);
billing is the job layer's.
"""

from __future__ import annotations

import html as html_lib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from selectolax.lexbor import LexborHTMLParser, LexborNode

from libs.common.ai.base import Usage
from services.writer.checks import Check, score
from services.writer.document import Document, parse_document
from services.writer.readability import readability_checks
from services.writer.seo_checks import rate_answer_first, rate_coverage, seo_checks
from services.writer.serp import SLUG_MAX_WORDS, fit_meta_description, fit_meta_title, fit_slug
from services.writer.text import Keyphrase, count_words, join_list, split_sentences


@dataclass(frozen=True, slots=True)
class ContentInput:
    """An article as stored: HTML body, SEO fields and the keywords it targets."""

    html: str
    keyphrase: str
    meta_title: str = ""
    meta_description: str = ""
    slug: str = ""
    title: str = ""
    secondary: tuple[str, ...] = ()
    questions: tuple[str, ...] = ()
    site_host: str | None = None


@dataclass(frozen=True, slots=True)
class Analysis:
    score: int
    checks: tuple[Check, ...]
    word_count: int

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def good(self, group: str | None = None) -> list[Check]:
        return [
            c for c in self.checks if c.status == "good" and (group is None or c.group == group)
        ]

    def as_dict(self) -> dict[str, object]:
        return {
            "score": self.score,
            "word_count": self.word_count,
            "checks": [
                {"name": c.name, "status": c.status, "message": c.message, "fix": c.fix}
                for c in self.checks
            ],
        }


def _first_sentences(doc: Document, n: int = 2) -> list[str]:
    out: list[str] = []
    for block in doc.prose:
        out.extend(split_sentences(block.text))
        if len(out) >= n:
            break
    return out[:n]


def analyze_content(content: ContentInput) -> Analysis:
    doc = parse_document(content.html)
    kp = Keyphrase.of(content.keyphrase)
    checks = seo_checks(
        doc,
        kp,
        meta_title=content.meta_title,
        meta_description=content.meta_description,
        slug=content.slug,
        site_host=content.site_host,
    )
    checks += readability_checks(doc)
    checks.append(rate_answer_first(kp, _first_sentences(doc)))
    checks.append(
        rate_coverage([*content.secondary, *content.questions], doc.h2_h3(), doc.faq_text)
    )
    return Analysis(score=score(checks), checks=tuple(checks), word_count=doc.word_count)


def analyze(
    html: str,
    *,
    keyphrase: str,
    meta_title: str = "",
    meta_description: str = "",
    slug: str = "",
    secondary: Sequence[str] = (),
    questions: Sequence[str] = (),
    site_host: str | None = None,
) -> Analysis:
    """Score an article: see the module docstring."""
    return analyze_content(
        ContentInput(
            html=html,
            keyphrase=keyphrase,
            meta_title=meta_title,
            meta_description=meta_description,
            slug=slug,
            secondary=tuple(secondary),
            questions=tuple(questions),
            site_host=site_host,
        )
    )


@dataclass(frozen=True, slots=True)
class OptimizedContent:
    content: ContentInput
    before: Analysis
    after: Analysis
    changes: tuple[str, ...] = field(default=())
    model: str = "local-optimizer-1"
    # The tokens the account's model spent on it (none offline).
    usage: Usage = field(default_factory=Usage)

    @property
    def word_count(self) -> int:
        """What optimization is billed on (1 credit per 200 words, DOMAIN.md)."""
        return self.after.word_count


OPTIMIZER_MODEL = "local-optimizer-1"
PARAGRAPH_SPLIT_WORDS = 150
PARAGRAPH_TARGET_WORDS = 100


def _fragment(html: str) -> LexborNode:
    body = LexborHTMLParser(html).body
    node = body.child if body is not None else None
    if node is None:
        raise ValueError(f"not an HTML element: {html[:60]!r}")
    return node


def _split_paragraph(text: str) -> list[str]:
    """Sentences regrouped into paragraphs of about 100 words, never cut mid-sentence."""
    groups: list[list[str]] = [[]]
    for sentence in split_sentences(text):
        if groups[-1] and count_words(" ".join([*groups[-1], sentence])) > PARAGRAPH_TARGET_WORDS:
            groups.append([])
        groups[-1].append(sentence)
    return [" ".join(g) for g in groups if g]


def optimize_local(content: ContentInput) -> OptimizedContent:
    """Fix what needs no new facts (see the module docstring); report each change."""
    before = analyze_content(content)
    status = {c.name: c.status for c in before.checks}
    kp = Keyphrase.of(content.keyphrase)
    tree = LexborHTMLParser(content.html or "")
    body = tree.body
    changes: list[str] = []
    if body is None:
        return OptimizedContent(content, before, before, (), OPTIMIZER_MODEL)
    h1s = body.css("h1")
    title = content.title or (h1s[0].text(deep=True).strip() if h1s else "") or content.meta_title
    if not h1s and title:
        first = body.child
        h1 = _fragment(f"<h1>{html_lib.escape(title, quote=False)}</h1>")
        if first is not None:
            first.insert_before(h1)
        else:
            body.insert_child(h1)
        changes.append("added an H1 from the title")
    for extra in h1s[1:]:
        extra.replace_with(_fragment(f"<h2>{extra.inner_html}</h2>"))
        changes.append("turned an extra H1 into an H2")
    h2 = [_text_of(n) for n in body.css("h2")][:3]
    first_p = body.css_first("p")
    if status["keyphrase_in_introduction"] != "good" and kp:
        topics = join_list([t[:1].lower() + t[1:] for t in h2 if t])
        sentence = (
            f"This article covers {content.keyphrase}: {topics}."
            if topics
            else f"This article is about {content.keyphrase}."
        )
        intro = _fragment(f"<p>{html_lib.escape(sentence, quote=False)}</p>")
        if first_p is not None:
            first_p.insert_before(intro)
        else:
            body.insert_child(intro)
        changes.append("opened the introduction with the keyphrase and what the article covers")
    for p in body.css("p"):
        text = _text_of(p)
        if count_words(text) > PARAGRAPH_SPLIT_WORDS and (
            p.inner_html or ""
        ).strip() == html_lib.escape(text, quote=False):
            parts = _split_paragraph(text)
            if len(parts) > 1:
                for part in parts:
                    p.insert_before(_fragment(f"<p>{html_lib.escape(part, quote=False)}</p>"))
                p.decompose()
                changes.append(f"split a paragraph of {count_words(text)} words at sentence ends")
    images = body.css("img")
    for img in images:
        if not (img.attrs.get("alt") or "").strip():
            img.attrs["alt"] = title or content.keyphrase
            changes.append("gave an image without alt text the article's title as alt text")
    if images and not any(kp.in_text(i.attrs.get("alt") or "") for i in images):
        alt = images[0].attrs.get("alt") or ""
        images[0].attrs["alt"] = f"{content.keyphrase}: {alt}" if alt else content.keyphrase
        changes.append("put the keyphrase in the first image's alt text")
    html = body.inner_html or ""
    meta_title, meta_description, slug = content.meta_title, content.meta_description, content.slug
    if status["keyphrase_in_seo_title"] != "good" or status["seo_title_width"] != "good":
        meta_title = fit_meta_title(content.keyphrase, title or content.keyphrase)
        if meta_title != content.meta_title:
            changes.append("rebuilt the SEO title: keyphrase first, 400-600 px")
    if (
        status["meta_description_length"] != "good"
        or status["keyphrase_in_meta_description"] != "good"
    ):
        prose = [s for b in parse_document(html).prose for s in split_sentences(b.text)]
        meta_description = fit_meta_description(prose, content.keyphrase)
        if meta_description != content.meta_description:
            changes.append("rebuilt the meta description from the article's own sentences")
    if status["keyphrase_in_slug"] != "good" or len(slug.split("-")) > SLUG_MAX_WORDS:
        slug = fit_slug(content.keyphrase)
        if slug != content.slug:
            changes.append("rebuilt the slug from the keyphrase")
    optimized = replace(
        content, html=html, meta_title=meta_title, meta_description=meta_description, slug=slug
    )
    return OptimizedContent(
        optimized, before, analyze_content(optimized), tuple(changes), OPTIMIZER_MODEL
    )


def _text_of(node: LexborNode) -> str:
    return " ".join((node.text(deep=True, separator="") or "").split())
