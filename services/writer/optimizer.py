"""The optimizer: score an article 0-100 and fix what can be fixed without inventing.

    analyze(html, keyphrase=..., meta_title=..., meta_description=..., slug=...,
            secondary=(...), questions=(...), site_host=None) -> Analysis
    optimize_local(content) -> OptimizedContent            # offline, deterministic
    await optimize_openai(provider, content, prompt) -> OptimizedContent

`analyze` runs 23 checks: Yoast's 14 SEO checks (`seo_checks`), Yoast's 7 readability
checks (`readability`), answer-first and cluster coverage; each scores 9/6/3 (good/ok/
bad) and the score is the share of points won (`checks.score`). It is offline and
deterministic: same input, same answer. Every check that is not good names its fix.

`optimize_local` changes only what needs no new facts: SEO title, meta description and
slug rebuilt from the article's own words, the keyphrase put into the introduction and
into image alt texts, extra H1s demoted, missing H1 added from the title, long paragraphs
split at sentence ends. What it cannot do honestly (links, new sections, facts) stays in
the checks' fixes. `optimize_openai` asks the account's model to apply the fixes and
sanitises what comes back. Credits for optimization are per 200 words of the article
(`Analysis.word_count`); billing is the job layer's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from services.writer.checks import Check, score
from services.writer.document import Document, parse_document
from services.writer.readability import readability_checks
from services.writer.seo_checks import rate_answer_first, rate_coverage, seo_checks
from services.writer.text import Keyphrase, split_sentences


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


__all__ = ["Analysis", "ContentInput", "OptimizedContent", "analyze", "analyze_content", "replace"]
