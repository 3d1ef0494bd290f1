"""The local engine's contract, over many generated briefs (issue #10's evidence).

Every draft: one H1 (the idea's title); 6-10 H2; an introduction of at most 120 words
whose first sentence holds the keyphrase and answers; meta title ≤ 60 characters, starting
with the keyphrase, ≤ 600 px; meta description 120-156 characters; slug ≤ 5 words; word
count within ±5 % of the target; no sentence twice; an FAQ exactly when there are
question keywords; a comparison table for commercial intent; placeholders instead of
facts; at least 12 of the 14 SEO checks good and an optimizer score ≥ 80; same brief,
same bytes.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, example, given, seed, settings
from hypothesis import strategies as st

from services.writer.brief import Brief, Link
from services.writer.document import html_word_count, parse_document
from services.writer.drafting import draft_local
from services.writer.optimizer import analyze
from services.writer.serp import title_width_px
from services.writer.text import Keyphrase, count_words, split_sentences

NOUNS = [
    "coffee",
    "running shoes",
    "garden",
    "kettle",
    "laptop",
    "yoga",
    "mortgage",
    "dog food",
    "solar panels",
    "email marketing",
    "sourdough bread",
    "protein powder",
    "electric bike",
    "home insurance",
    "python",
    "wedding dress",
    "air fryer",
    "standing desk",
    "credit card",
    "hiking boots",
    "SEO audit",
    "tax return",
]
MODIFIERS = [
    "",
    "",
    "best",
    "cheap",
    "how to choose",
    "for beginners",
    "near me",
    "guide",
    "review",
    "price",
    "vs",
    "tips",
    "ideas",
    "at home",
    "for small business",
]
QUESTIONS = [
    "how to {n}",
    "what is {n}",
    "is {n} worth it",
    "can you {n} at home",
    "why does {n} cost so much",
    "which {n} is best",
    "how long does {n} last",
    "should i buy {n}",
    "what are the benefits of {n}",
]
HEADINGS = [
    "What to Know First",
    "How {N} Works",
    "Costs and Time Involved",
    "Step 1: Set a Goal",
    "Common {N} Mistakes",
    "Where to Learn More",
    "Pros and Cons",
    "Our Top Picks",
    "How We Tested",
    "Getting Started with {N}",
    "Is {N} Right for You?",
    "Safety Tips",
    "Tools You Need",
    "FAQ",
    "The Verdict",
    "{N} Compared",
]

TITLE_FRAMES = [
    "{K}: The Complete Guide",
    "The Best {K} for Everyone",
    "How to Pick {K}",
    "{K}",
    "Everything About {K} in 2025",
    "A Short Guide to {K} for Busy People Who Want Results",
]
STRUCTURES = ["article", "guide", "listicle", "how_to", "comparison", "review", "landing_page"]


def _keyphrase(noun: str, modifier: str) -> str:
    if not modifier:
        return noun
    if modifier in ("best", "cheap", "how to choose"):
        return f"{modifier} {noun}"
    if modifier == "vs":
        return f"{noun} vs rental"
    return f"{noun} {modifier}"


@st.composite
def briefs(draw: st.DrawFn) -> Brief:
    noun = draw(st.sampled_from(NOUNS))
    kp = _keyphrase(noun, draw(st.sampled_from(MODIFIERS)))
    others = draw(st.lists(st.sampled_from(NOUNS), max_size=3, unique=True))
    secondary = draw(
        st.lists(
            st.sampled_from([_keyphrase(n, m) for n in [noun, *others] for m in MODIFIERS[2:8]]),
            max_size=8,
            unique=True,
        )
    )
    questions = draw(
        st.lists(st.sampled_from([q.format(n=noun) for q in QUESTIONS]), max_size=6, unique=True)
    )
    outline = draw(st.lists(st.sampled_from(HEADINGS), max_size=12, unique=True))
    title_frame = draw(st.sampled_from(TITLE_FRAMES))
    internal = draw(
        st.lists(
            st.sampled_from(
                [
                    Link(title=f"More about {noun}", url=f"/blog/{noun.replace(' ', '-')}"),
                    Link(title="Our buying guide", url="/guides/buying"),
                    Link(title=kp.title(), url="/same-topic"),
                ]
            ),
            max_size=2,
            unique=True,
        )
    )
    outbound = draw(
        st.lists(
            st.sampled_from([Link(title="An official source", url="https://example.org/source")]),
            max_size=1,
        )
    )
    return Brief(
        title=title_frame.replace("{K}", kp.title()),
        outline=tuple(h.replace("{N}", noun.title()) for h in outline),
        primary_keyword=kp,
        secondary_keywords=tuple(secondary),
        question_keywords=tuple(questions),
        intent=draw(
            st.sampled_from(["informational", "navigational", "commercial", "transactional"])
        ),
        content_structure=draw(st.sampled_from(STRUCTURES)),
        target_word_count=draw(st.integers(500, 5000)),
        cluster_name=noun.title(),
        internal_links=tuple(internal),
        outbound_links=tuple(outbound),
        in_article_images=draw(st.integers(1, 4)),
    )


def _sentences(html: str) -> list[str]:
    doc = parse_document(html)
    return [" ".join(s.lower().split()) for b in doc.prose for s in split_sentences(b.text)]


# Briefs the engine once failed on (found with 2,000+ examples over several seeds, some
# shrunk); all at short targets, where the fixed parts (intro, FAQ, subsections) are most
# of the words.
REGRESSIONS = [
    # 534 words for 500: the filler of early sections left no room for the fixed
    # parts of later ones, and every section got at least 40 words.
    Brief(
        title="Best Solar Panels: The Complete Guide",
        outline=(
            "What to Know First",
            "How Solar Panels Works",
            "Getting Started with Solar Panels",
        ),
        primary_keyword="best solar panels",
        secondary_keywords=(
            "cheap solar panels",
            "how to choose solar panels",
            "solar panels near me",
        ),
        question_keywords=(
            "how to solar panels",
            "what is solar panels",
            "is solar panels worth it",
            "can you solar panels at home",
            "why does solar panels cost so much",
            "how long does solar panels last",
        ),
        intent="informational",
        content_structure="article",
        target_word_count=500,
        cluster_name="Solar Panels",
        in_article_images=1,
    ),
    # Six FAQ entries of ~25 words each and five subsections: over 5 % even at its
    # leanest, until the FAQ's pointers got shorter.
    Brief(
        title="Everything About Tax Return Price in 2025",
        outline=(
            "FAQ",
            "The Verdict",
            "Is Tax Return Right for You?",
            "Getting Started with Tax Return",
        ),
        primary_keyword="tax return price",
        secondary_keywords=(
            "how to choose wedding dress",
            "tax return for beginners",
            "how to choose sourdough bread",
            "cheap tax return",
            "tax return guide",
            "cheap sourdough bread",
            "best sourdough bread",
            "wedding dress for beginners",
        ),
        question_keywords=(
            "can you tax return at home",
            "how long does tax return last",
            "which tax return is best",
            "what is tax return",
            "why does tax return cost so much",
            "is tax return worth it",
        ),
        intent="navigational",
        content_structure="listicle",
        target_word_count=500,
        cluster_name="Tax Return",
        in_article_images=1,
        internal_links=(
            Link(title="More about tax return", url="/blog/tax-return"),
            Link(title="Tax Return Price", url="/same-topic"),
        ),
        outbound_links=(Link(title="An official source", url="https://example.org/source"),),
    ),
    # Keyphrase density 3.02 %: a one-word keyphrase in every secondary keyword (so in
    # every section's topic), named four times in the intro's first sentence.
    Brief(
        title="Coffee: The Complete Guide",
        primary_keyword="coffee",
        secondary_keywords=(
            "coffee near me",
            "coffee for beginners",
            "coffee guide",
            "how to choose coffee",
        ),
        question_keywords=(
            "what is coffee",
            "how to coffee",
            "can you coffee at home",
            "what are the benefits of coffee",
            "should i buy coffee",
        ),
        intent="informational",
        content_structure="article",
        target_word_count=500,
        cluster_name="Coffee",
        in_article_images=1,
    ),
    # Keyphrase density 3.03 % (shrunk): six FAQ questions and the H1 hold "coffee".
    Brief(
        title="Coffee: The Complete Guide",
        primary_keyword="coffee",
        secondary_keywords=("best coffee",),
        question_keywords=(
            "how long does coffee last",
            "how to coffee",
            "what is coffee",
            "is coffee worth it",
            "can you coffee at home",
            "why does coffee cost so much",
        ),
        intent="informational",
        content_structure="article",
        target_word_count=500,
        cluster_name="Coffee",
        in_article_images=1,
    ),
    # Keyphrase density 3.98 % (shrunk): "home insurance at home" counts wherever "home"
    # and "insurance" meet, so in every secondary keyword, each a section; the topics
    # were stripped of the keyphrase only where it stood word for word.
    Brief(
        title="Home Insurance At Home: The Complete Guide",
        primary_keyword="home insurance at home",
        secondary_keywords=(
            "best home insurance",
            "cheap home insurance",
            "how to choose home insurance",
        ),
        intent="informational",
        content_structure="article",
        target_word_count=500,
        cluster_name="Home Insurance",
        in_article_images=1,
    ),
    # SEO title 367 px (under 400, so "ok", and 11 good checks without links): a short
    # keyphrase after "How to Pick", and every title extra too short (test_drafting_meta).
    Brief(
        title="How to Pick Air Fryer",
        primary_keyword="air fryer",
        intent="informational",
        content_structure="article",
        target_word_count=500,
        cluster_name="Air Fryer",
        in_article_images=1,
    ),
    # Keyphrase density 3.02 % (shrunk, 15 in 497 words): a one-word keyphrase in the H1,
    # all six secondary keywords (H2/H3, for coverage) and all six questions (FAQ H3s),
    # and the intro's placeholder named it too.
    Brief(
        title="Coffee: The Complete Guide",
        primary_keyword="coffee",
        secondary_keywords=(
            "cheap coffee",
            "best coffee",
            "how to choose coffee",
            "coffee for beginners",
            "coffee near me",
            "coffee guide",
        ),
        question_keywords=(
            "how to coffee",
            "what is coffee",
            "is coffee worth it",
            "can you coffee at home",
            "why does coffee cost so much",
            "which coffee is best",
        ),
        intent="informational",
        content_structure="article",
        target_word_count=500,
        cluster_name="Coffee",
        in_article_images=1,
    ),
    # 4,234 words for 4,598 (-8 %): the last section's filler ran out of sentences (all
    # used with its one topic) and stopped at 247 of its ~620 words.
    Brief(
        title="Coffee: The Complete Guide",
        primary_keyword="coffee",
        secondary_keywords=(
            "best coffee",
            "cheap coffee",
            "how to choose coffee",
            "coffee for beginners",
        ),
        question_keywords=("how to coffee",),
        intent="commercial",
        content_structure="listicle",
        target_word_count=4598,
        cluster_name="Coffee",
    ),
    # Keyphrase density 3.38 %: table rows and keyword sentences repeating "air fryer".
    Brief(
        title="Air Fryer: The Complete Guide",
        outline=("FAQ", "Air Fryer Compared"),
        primary_keyword="air fryer",
        secondary_keywords=(
            "how to choose air fryer",
            "air fryer guide",
            "cheap air fryer",
            "best air fryer",
            "air fryer near me",
            "air fryer for beginners",
        ),
        question_keywords=("how long does air fryer last", "can you air fryer at home"),
        intent="informational",
        content_structure="comparison",
        target_word_count=584,
        cluster_name="Air Fryer",
        in_article_images=2,
    ),
    # Keyphrase density 0.4998 % (24 in 4,802 words; seed 5, 2,000 examples): a long draft
    # with no keyword or question to name the keyphrase in headings used up the sentences
    # that name it, and the filler ran on without it.
    Brief(
        title="How to Pick Best Running Shoes",
        outline=(
            "What to Know First",
            "How Running Shoes Works",
            "Getting Started with Running Shoes",
        ),
        primary_keyword="best running shoes",
        intent="commercial",
        content_structure="comparison",
        target_word_count=4796,
        cluster_name="Running Shoes",
        in_article_images=1,
    ),
    # Meta description 117 characters (seed 19, 2,000 examples): every section's topic
    # held "coffee", so none was named, and there was no table or FAQ to mention.
    Brief(
        title="Coffee: The Complete Guide",
        primary_keyword="coffee",
        secondary_keywords=("best coffee", "cheap coffee", "how to choose coffee"),
        intent="navigational",
        content_structure="article",
        target_word_count=500,
        cluster_name="Coffee",
        in_article_images=1,
    ),
]

# 531 words for 500 (found with seed 13 and 2,000 examples): the largest brief the
# strategy makes (12 outline headings, 8 secondary keywords, 6 questions, a comparison
# table) was over the ±5 % bound even at the engine's then leanest level, until a leaner
# one folded each section's keyword subsections into one (the other keywords named in
# its only sentence).
TOO_LONG_AT_500_WORDS = Brief(
    title="Tax Return Tips: The Complete Guide",
    description="",
    outline=(
        "Is Tax Return Right for You?",
        "Costs and Time Involved",
        "Getting Started with Tax Return",
        "What to Know First",
        "How Tax Return Works",
        "Step 1: Set a Goal",
        "Common Tax Return Mistakes",
        "Where to Learn More",
        "Pros and Cons",
        "Our Top Picks",
        "How We Tested",
        "Safety Tips",
    ),
    primary_keyword="tax return tips",
    secondary_keywords=(
        "cheap standing desk",
        "tax return for beginners",
        "best standing desk",
        "tax return near me",
        "best tax return",
        "cheap tax return",
        "how to choose tax return",
        "tax return guide",
    ),
    question_keywords=(
        "is tax return worth it",
        "how to tax return",
        "what is tax return",
        "should i buy tax return",
        "can you tax return at home",
        "how long does tax return last",
    ),
    intent="informational",
    content_type="post",
    content_structure="comparison",
    target_word_count=500,
    cluster_name="Tax Return",
    author=None,
    prompt_override=None,
    internal_links=(
        Link(title="More about tax return", url="/blog/tax-return"),
        Link(title="Our buying guide", url="/guides/buying"),
    ),
    outbound_links=(Link(title="An official source", url="https://example.org/source"),),
    in_article_images=3,
)


# The examples come from a fixed seed, not from the test's source: with
# `derandomize=True` they were seeded by a hash of this function's text, so renaming a
# variable picked other briefs (and once, failing ones). No example database either:
# every run checks the same briefs.
@example(brief=REGRESSIONS[0])
@example(brief=REGRESSIONS[1])
@example(brief=REGRESSIONS[2])
@example(brief=REGRESSIONS[3])
@example(brief=REGRESSIONS[4])
@example(brief=REGRESSIONS[5])
@example(brief=REGRESSIONS[6])
@example(brief=REGRESSIONS[7])
@example(brief=REGRESSIONS[8])
@example(brief=REGRESSIONS[9])
@example(brief=REGRESSIONS[10])
@example(brief=TOO_LONG_AT_500_WORDS)
@seed(20261203)
@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(brief=briefs())
def test_every_local_draft_meets_the_contract(brief: Brief) -> None:
    draft = draft_local(brief)
    html = draft.html
    doc = parse_document(html)
    kp = Keyphrase.of(brief.primary_keyword)

    assert draft.model.startswith("local-")
    assert doc.h1 == (brief.title,)
    h2 = [h.text for h in doc.subheadings if h.level == 2]
    assert 6 <= len(h2) <= 10, h2
    intro = doc.first_paragraph
    assert count_words(intro) <= 120
    first = split_sentences(intro)[0]
    assert kp.in_text(first)
    assert not first.startswith("[")

    assert len(draft.meta_title) <= 60
    assert kp.exact_at_start(draft.meta_title)
    assert title_width_px(draft.meta_title) <= 600
    assert 120 <= len(draft.meta_description) <= 156, draft.meta_description
    assert 1 <= len(draft.slug.split("-")) <= 5
    assert draft.word_count == html_word_count(html)
    assert abs(draft.word_count - brief.target_word_count) <= 0.05 * brief.target_word_count

    sentences = _sentences(html)
    assert len(sentences) == len(set(sentences)), "a sentence is repeated"
    has_faq = any(re.search(r"frequently asked questions", h, re.I) for h in h2)
    assert has_faq == bool(brief.question_keywords)
    if brief.intent == "commercial":
        assert "<table>" in html
    assert "[Add a fact:" in html or "[Add a detail:" in html

    analysis = analyze(
        html,
        keyphrase=brief.primary_keyword,
        meta_title=draft.meta_title,
        meta_description=draft.meta_description,
        slug=draft.slug,
        secondary=brief.secondary_keywords,
        questions=brief.question_keywords,
    )
    seo_good = analysis.good("seo")
    failing = [c for c in analysis.checks if c.status != "good"]
    assert len(seo_good) >= 12, failing
    assert analysis.score >= 80, failing
    assert draft_local(brief).html == html  # same input, same bytes
