"""Yoast's SEO checks at their published thresholds, plus answer-first and cluster
coverage.

Sources: Yoast SEO's help pages for each assessment (yoast.com/wordpress/plugins/seo/
keyphrase-density-check/ for density 0.5-3 %; the other assessments are described under
yoast.com/wordpress/plugins/seo/ and in "SEO analysis: what does Yoast SEO check?") and,
for exact boundaries and points, the open-source `yoastseo` package
(packages/yoastseo/src/scoring/assessments/seo/: KeywordDensityAssessment,
SubHeadingsKeywordAssessment 0.3/0.75, PageTitleWidthAssessment 400/600 px,
MetaDescriptionLengthAssessment 120/156, TextLengthAssessment 300/250/200,
IntroductionKeywordAssessment, KeyphraseInSEOTitleAssessment, SlugKeywordAssessment,
MetaDescriptionKeywordAssessment, SingleH1Assessment, ImageCount/KeyphraseInImageText,
InternalLinks/OutboundLinks, TextCompetingLinksAssessment).

The 14 SEO checks: keyphrase in introduction, SEO title, slug and meta description;
keyphrase in subheadings; keyphrase density; text length; single H1; images (an image,
and the keyphrase in an alt text); internal links; outbound links; competing links;
meta description length; SEO title width. Two more are ours: answer-first (the keyphrase
and a direct answer in the first two sentences, the way featured snippets and AI answers
quote a page) and cluster coverage (secondary and question keywords as H2/H3 or answered
in the FAQ).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from services.writer.checks import Check, bad, good, ok
from services.writer.document import Document, link_kind
from services.writer.serp import (
    META_DESCRIPTION_MAX,
    META_DESCRIPTION_MIN,
    SLUG_MAX_WORDS,
    TITLE_MAX_PX,
    TITLE_MIN_PX,
    keyphrase_occurrences,
    title_width_px,
)
from services.writer.text import Keyphrase, split_sentences, stems

DENSITY_MIN, DENSITY_MAX, DENSITY_WAY_OVER = 0.5, 3.0, 4.0
DENSITY_MIN_WORDS = 100
SUBHEADINGS_LOW, SUBHEADINGS_HIGH = 0.3, 0.75
TEXT_GOOD, TEXT_OK, TEXT_BAD = 300, 250, 200
ALT_SHARE_LOW, ALT_SHARE_HIGH, ALT_MANY_IMAGES = 0.3, 0.7, 5
COVERAGE_GOOD, COVERAGE_OK = 0.8, 0.5

# Openings that talk about the article instead of answering ("In this article...").
_THROAT_CLEARING = re.compile(
    r"^(?:in this (?:article|post|guide|blog)|this (?:article|post|guide|blog) (?:will|is going)|"
    r"welcome|have you ever|are you|do you|did you|if you(?:'re| are) (?:looking|wondering)|"
    r"in today's|when it comes to|let's|let us|we will|we'll|today we|ever wondered|"
    r"imagine|whether you)",
    re.IGNORECASE,
)


def _kp_name(kp: Keyphrase) -> str:
    return f"“{kp.text}”"


def rate_introduction(kp: Keyphrase, first_paragraph: str) -> Check:
    name = "keyphrase_in_introduction"
    if any(kp.in_text(s) for s in split_sentences(first_paragraph)):
        return good(name, "seo", f"The introduction contains {_kp_name(kp)} in one sentence.")
    fix = f"Use {_kp_name(kp)} in the first paragraph, ideally in its first sentence."
    if first_paragraph and kp.in_text(first_paragraph):
        return ok(
            name,
            "seo",
            "The keyphrase's words are in the introduction, but not in one sentence.",
            fix,
        )
    return bad(name, "seo", "The introduction does not contain the keyphrase.", fix)


def rate_seo_title(kp: Keyphrase, meta_title: str) -> Check:
    name = "keyphrase_in_seo_title"
    if not meta_title.strip():
        return bad(
            name,
            "seo",
            "There is no SEO title.",
            f"Write an SEO title that starts with {_kp_name(kp)}.",
        )
    if kp.exact_at_start(meta_title):
        return good(name, "seo", "The SEO title starts with the exact keyphrase.")
    fix = f"Move {_kp_name(kp)}, word for word, to the start of the SEO title."
    if kp.exact_in(meta_title) or kp.in_text(meta_title):
        return ok(
            name, "seo", "The SEO title contains the keyphrase, but does not start with it.", fix
        )
    return bad(name, "seo", "The SEO title does not contain the keyphrase.", fix)


def rate_slug(kp: Keyphrase, slug: str) -> Check:
    name = "keyphrase_in_slug"
    text = slug.replace("-", " ").replace("_", " ")
    share = kp.share_in(text)
    fix = f"Use the words of {_kp_name(kp)} in the slug (at most {SLUG_MAX_WORDS} words)."
    if share >= 1.0:
        return good(name, "seo", "The slug contains the keyphrase.")
    if share > 0.5:
        return ok(name, "seo", "The slug contains more than half of the keyphrase's words.", fix)
    return bad(name, "seo", "The slug does not contain the keyphrase.", fix)


def rate_meta_description_keyphrase(kp: Keyphrase, meta_description: str) -> Check:
    name = "keyphrase_in_meta_description"
    n = keyphrase_occurrences(kp, meta_description)
    if 1 <= n <= 2:
        return good(name, "seo", "The meta description contains the keyphrase.")
    if n == 0:
        return bad(
            name,
            "seo",
            "The meta description does not contain the keyphrase.",
            f"Use {_kp_name(kp)} once in the meta description.",
        )
    return bad(
        name,
        "seo",
        f"The meta description contains the keyphrase {n} times.",
        "Use the keyphrase at most twice in the meta description.",
    )


def subheadings_matching(kp: Keyphrase, headings: Sequence[str]) -> int:
    """H2/H3 subheadings that reflect the topic: more than half of the keyphrase's
    content words appear in them."""
    return sum(1 for h in headings if kp.share_in(h) > 0.5)


def rate_subheadings(kp: Keyphrase, headings: Sequence[str]) -> Check:
    name = "keyphrase_in_subheadings"
    count = len(headings)
    matches = subheadings_matching(kp, headings)
    if count == 0:
        return bad(
            name,
            "seo",
            "The text has no H2 or H3 subheadings.",
            f"Add H2/H3 subheadings, 30-75 % of them using {_kp_name(kp)}.",
        )
    low, high = math.ceil(count * SUBHEADINGS_LOW), math.floor(count * SUBHEADINGS_HIGH)
    msg = f"{matches} of {count} H2/H3 subheadings use the keyphrase"
    if count == 1 and matches == 1:
        return good(name, "seo", msg + ".")
    if count > 1 and matches > high:
        return bad(
            name,
            "seo",
            msg + " (more than 75 %).",
            f"Rephrase {matches - high} subheading(s) without the keyphrase; "
            "over-optimised headings read badly.",
        )
    if matches and low <= matches <= high:
        return good(name, "seo", msg + " (30-75 %).")
    return bad(
        name,
        "seo",
        msg + " (fewer than 30 %).",
        f"Use {_kp_name(kp)} or its words in {max(1, low - matches)} more H2/H3 subheading(s).",
    )


def keyphrase_count(kp: Keyphrase, doc: Document) -> int:
    """Keyphrase occurrences in the text: per sentence (each block split into
    sentences), the count of the keyphrase's rarest content word."""
    return sum(kp.occurrences(s) for b in doc.blocks for s in split_sentences(b.text))


def rate_density(density: float, occurrences: int, words: int) -> Check:
    name = "keyphrase_density"
    msg = f"The keyphrase occurs {occurrences} times in {words} words ({density:.2f} %)"
    low_count = math.ceil(DENSITY_MIN * words / 100)
    high_count = math.floor(DENSITY_MAX * words / 100)
    if words < DENSITY_MIN_WORDS:
        return bad(
            name,
            "seo",
            f"{words} words are too few to judge keyphrase density.",
            "Write at least 100 words first.",
        )
    if occurrences == 0:
        return bad(
            name,
            "seo",
            msg + ".",
            f"Use the keyphrase at least {low_count} times for a text of this length.",
        )
    if density < DENSITY_MIN:
        return bad(
            name,
            "seo",
            msg + " (under 0.5 %).",
            f"Use the keyphrase {low_count - occurrences} more time(s).",
        )
    if density <= DENSITY_MAX:
        return good(name, "seo", msg + " (0.5-3 %).")
    fix = f"Use the keyphrase at most {high_count} times: replace some with synonyms."
    return bad(name, "seo", msg + " (over 3 %).", fix, severe=density > DENSITY_WAY_OVER)


def rate_text_length(words: int) -> Check:
    name = "text_length"
    msg = f"The text has {words} words"
    if words >= TEXT_GOOD:
        return good(name, "seo", msg + " (300 or more).")
    fix = f"Add {TEXT_GOOD - words} words or more of useful content (300 at least)."
    if words >= TEXT_OK:
        return ok(name, "seo", msg + ".", fix)
    return bad(name, "seo", msg + ".", fix, severe=words < TEXT_BAD)


def rate_single_h1(h1_count: int) -> Check:
    name = "single_h1"
    if h1_count == 1:
        return good(name, "seo", "The text has exactly one H1.")
    if h1_count == 0:
        return bad(name, "seo", "The text has no H1.", "Start the text with one H1 title.")
    return bad(
        name,
        "seo",
        f"The text has {h1_count} H1 headings.",
        "Keep one H1 and turn the others into H2.",
    )


def rate_images(kp: Keyphrase, alts: Sequence[str]) -> Check:
    name = "images"
    if not alts:
        return bad(
            name,
            "seo",
            "The text has no image.",
            f"Add an image with an alt text that uses {_kp_name(kp)}.",
        )
    with_kp = sum(1 for a in alts if kp.in_text(a))
    fix = f"Describe the images in alt texts that use {_kp_name(kp)} where it is apt."
    if len(alts) < ALT_MANY_IMAGES:
        if with_kp:
            return good(name, "seo", f"{with_kp} of {len(alts)} image alt texts use the keyphrase.")
        return ok(name, "seo", "No image alt text uses the keyphrase.", fix)
    share = with_kp / len(alts)
    if ALT_SHARE_LOW <= share <= ALT_SHARE_HIGH:
        return good(name, "seo", f"{with_kp} of {len(alts)} image alt texts use the keyphrase.")
    if share > ALT_SHARE_HIGH:
        return ok(
            name,
            "seo",
            f"{with_kp} of {len(alts)} alt texts use the keyphrase (over 70 %).",
            "Describe some images without the keyphrase.",
        )
    return ok(
        name, "seo", f"{with_kp} of {len(alts)} alt texts use the keyphrase (under 30 %).", fix
    )


def rate_internal_links(followed: int, nofollowed: int) -> Check:
    name = "internal_links"
    if followed:
        return good(name, "seo", f"The text links to {followed} page(s) of this site.")
    fix = "Link to one or more related pages of this site."
    if nofollowed:
        return ok(
            name, "seo", "Every internal link is nofollow.", "Make an internal link followed."
        )
    return bad(name, "seo", "The text has no internal link.", fix)


def rate_outbound_links(followed: int, nofollowed: int) -> Check:
    name = "outbound_links"
    if followed:
        return good(name, "seo", f"The text links to {followed} outside source(s).")
    if nofollowed:
        return ok(
            name,
            "seo",
            "Every outbound link is nofollow.",
            "Make a link to a trustworthy source followed.",
        )
    return bad(
        name,
        "seo",
        "The text has no outbound link.",
        "Link to the sources of your facts (studies, official pages, makers).",
    )


def rate_competing_links(kp: Keyphrase, anchors: Sequence[str]) -> Check:
    name = "competing_links"
    competing = [a for a in anchors if a and kp.in_text(a)]
    if not competing:
        return good(name, "seo", "No link uses the keyphrase as its anchor text.")
    return bad(
        name,
        "seo",
        f"{len(competing)} link(s) use the keyphrase as anchor text, which tells search "
        "engines another page is about this topic.",
        "Reword those anchors so they describe the linked page, not this keyphrase.",
    )


def rate_meta_description_length(length: int) -> Check:
    name = "meta_description_length"
    if length == 0:
        return bad(
            name,
            "seo",
            "There is no meta description.",
            "Write a meta description of 120-156 characters.",
            severe=True,
        )
    msg = f"The meta description has {length} characters"
    if length < META_DESCRIPTION_MIN:
        return ok(
            name,
            "seo",
            msg + " (under 120).",
            f"Lengthen it by {META_DESCRIPTION_MIN - length}+ characters (120-156).",
        )
    if length <= META_DESCRIPTION_MAX:
        return good(name, "seo", msg + " (120-156).")
    return ok(
        name,
        "seo",
        msg + " (over 156: search engines cut it).",
        f"Shorten it by {length - META_DESCRIPTION_MAX}+ characters (120-156).",
    )


def rate_title_width(width_px: int) -> Check:
    name = "seo_title_width"
    if width_px <= 0:
        return bad(
            name, "seo", "There is no SEO title.", "Write an SEO title of 400-600 px.", severe=True
        )
    msg = f"The SEO title is {width_px} px wide"
    if width_px < TITLE_MIN_PX:
        return ok(
            name,
            "seo",
            msg + " (under 400 px).",
            "Use the space: add a keyphrase variation or a reason to click (400-600 px).",
        )
    if width_px <= TITLE_MAX_PX:
        return good(name, "seo", msg + " (400-600 px).")
    return bad(
        name,
        "seo",
        msg + " (over 600 px: it will be cut).",
        f"Shorten the SEO title by about {width_px - TITLE_MAX_PX} px "
        "(roughly one character per 10 px).",
    )


def is_direct_answer(sentence: str) -> bool:
    """A declarative sentence of 5+ words that does not talk about the article itself."""
    s = sentence.strip()
    return (
        len(s.split()) >= 5
        and not s.endswith("?")
        and not s.startswith("[")
        and _THROAT_CLEARING.match(s) is None
    )


def rate_answer_first(kp: Keyphrase, first_sentences: Sequence[str]) -> Check:
    name = "answer_first"
    two = list(first_sentences[:2])
    has_kp = any(kp.in_text(s) for s in two)
    answers = any(is_direct_answer(s) for s in two)
    if has_kp and answers:
        return good(
            name,
            "answer",
            "The first two sentences use the keyphrase and answer the query directly.",
        )
    fix = (
        f"Open with one plain sentence that uses {_kp_name(kp)} and answers the "
        "searcher's question; keep the scene-setting for later."
    )
    if has_kp or answers:
        missing = "a direct answer" if has_kp else "the keyphrase"
        return ok(name, "answer", f"The first two sentences lack {missing}.", fix)
    return bad(
        name,
        "answer",
        "The first two sentences neither use the keyphrase nor answer the query.",
        fix,
    )


def rate_coverage(keywords: Sequence[str], headings: Sequence[str], faq_text: str) -> Check:
    name = "cluster_coverage"
    if not keywords:
        return good(name, "coverage", "No secondary or question keywords to cover.")
    heading_stems = [set(stems(h)) for h in headings]
    faq_stems = set(stems(faq_text))
    missing = []
    for keyword in keywords:
        kp = Keyphrase.of(keyword)
        in_heading = any(all(s in hs for s in kp.stems) for hs in heading_stems)
        if not (in_heading or (kp.stems and all(s in faq_stems for s in kp.stems))):
            missing.append(keyword)
    share = 1 - len(missing) / len(keywords)
    msg = f"{len(keywords) - len(missing)} of {len(keywords)} cluster keywords are covered"
    if share >= COVERAGE_GOOD:
        return good(name, "coverage", msg + " as H2/H3 or in the FAQ.")
    fix = (
        "Cover "
        + ", ".join(f"“{k}”" for k in missing[:5])
        + (" and more" if len(missing) > 5 else "")
        + " with an H2/H3 or a FAQ answer."
    )
    if share >= COVERAGE_OK:
        return ok(name, "coverage", msg + ".", fix)
    return bad(name, "coverage", msg + ".", fix)


def seo_checks(
    doc: Document,
    kp: Keyphrase,
    *,
    meta_title: str,
    meta_description: str,
    slug: str,
    site_host: str | None,
) -> list[Check]:
    occurrences = keyphrase_count(kp, doc)
    density = 100.0 * occurrences / doc.word_count if doc.word_count else 0.0
    kinds = [(link_kind(a.href, site_host), a.nofollow) for a in doc.links]
    return [
        rate_introduction(kp, doc.first_paragraph),
        rate_seo_title(kp, meta_title),
        rate_slug(kp, slug),
        rate_meta_description_keyphrase(kp, meta_description),
        rate_subheadings(kp, doc.h2_h3()),
        rate_density(density, occurrences, doc.word_count),
        rate_text_length(doc.word_count),
        rate_single_h1(len(doc.h1)),
        rate_images(kp, doc.image_alts),
        rate_internal_links(
            sum(1 for k, nf in kinds if k == "internal" and not nf),
            sum(1 for k, nf in kinds if k == "internal" and nf),
        ),
        rate_outbound_links(
            sum(1 for k, nf in kinds if k == "outbound" and not nf),
            sum(1 for k, nf in kinds if k == "outbound" and nf),
        ),
        rate_competing_links(kp, [a.text for a in doc.links]),
        rate_meta_description_length(len(" ".join(meta_description.split()))),
        rate_title_width(title_width_px(meta_title) if meta_title.strip() else 0),
    ]
