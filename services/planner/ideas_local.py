"""Content ideas for a cluster: the offline generator and the OpenAI-compatible one.

The local generator is deterministic: the same cluster gives the same ideas. It picks
3-7 content formats from the cluster's intent mix (volume-weighted), titles each around
the cluster's main keyword, builds an H2 outline from the cluster's own keywords and
estimates a word count per format. The OpenAI path sends a prompt (passed in) and holds
the answer to the same contract, with one repair retry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from libs.common.ai.base import ChatMessage, TextGenerator, Usage
from libs.common.ai.structured import complete_json
from libs.common.fields import ShortText
from services.planner.clustering import display_name, normalize_keyword
from services.planner.intent import QUESTION_WORDS, Intent, classify_intent
from services.planner.models import ContentStructure, ContentType

LOCAL_IDEAS_MODEL = "local-ideas-1"
MIN_IDEAS = 3
MAX_IDEAS = 7


@dataclass(frozen=True, slots=True)
class IdeaKeyword:
    text: str
    volume: int = 0
    intent: Intent | None = None

    @property
    def resolved_intent(self) -> Intent:
        return self.intent or classify_intent(self.text)


@dataclass(frozen=True, slots=True)
class IdeaCluster:
    name: str
    keywords: tuple[IdeaKeyword, ...]
    description: str = ""

    def main_keyword(self) -> str:
        """The highest-volume keyword (shorter, then alphabetical, on ties); the
        cluster name when it has no keywords."""
        if not self.keywords:
            return self.name
        best = min(self.keywords, key=lambda k: (-k.volume, len(k.text), k.text.lower()))
        return " ".join(best.text.split())


@dataclass(frozen=True, slots=True)
class ContentIdeaDraft:
    title: str
    description: str
    outline: tuple[str, ...]
    content_type: ContentType
    content_structure: ContentStructure
    estimated_word_count: int
    keywords: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IdeasResult:
    ideas: tuple[ContentIdeaDraft, ...]
    model: str
    usage: Usage = field(default_factory=Usage)


_BASE_WORDS = {
    ContentStructure.GUIDE: 2200,
    ContentStructure.HOW_TO: 1500,
    ContentStructure.LISTICLE: 1800,
    ContentStructure.COMPARISON: 1600,
    ContentStructure.REVIEW: 1400,
    ContentStructure.ARTICLE: 1200,
    ContentStructure.LANDING_PAGE: 800,
}


def _word_count(structure: ContentStructure, sections: int) -> int:
    words = _BASE_WORDS[structure] + 150 * max(0, sections - 5)
    return int(round(words, -2))


def _outline_description(title: str, outline: Sequence[str]) -> str:
    return title + "\n" + "\n".join(f"H2: {h}" for h in outline)


def _pick(
    keywords: Sequence[IdeaKeyword], main: str, pred: str | tuple[str, ...], n: int
) -> list[str]:
    """Up to n keyword texts (other than the main one) containing any of `pred`."""
    preds = (pred,) if isinstance(pred, str) else pred
    out = []
    for k in keywords:
        text = " ".join(k.text.split())
        norm = f" {normalize_keyword(text)} "
        if normalize_keyword(text) == normalize_keyword(main):
            continue
        if any(f" {p} " in norm for p in preds):
            out.append(text)
        if len(out) == n:
            break
    return out


def _secondary(keywords: Sequence[IdeaKeyword], main: str, n: int) -> list[str]:
    return [
        " ".join(k.text.split())
        for k in keywords
        if normalize_keyword(k.text) != normalize_keyword(main)
    ][:n]


def _candidates(cluster: IdeaCluster) -> list[tuple[float, ContentIdeaDraft]]:
    """Every format this cluster could support, each with a score from the intent mix."""
    kws = sorted(cluster.keywords, key=lambda k: (-k.volume, k.text.lower()))
    main = cluster.main_keyword()
    m = display_name(main)
    ml = main.lower()
    weights = {i: 0.0 for i in Intent}
    for k in kws:
        weights[k.resolved_intent] += max(1, k.volume)
    total = sum(weights.values()) or 1.0
    share = {i: w / total for i, w in weights.items()}
    info, comm, trans = (
        share[Intent.INFORMATIONAL],
        share[Intent.COMMERCIAL],
        share[Intent.TRANSACTIONAL],
    )
    questions = [
        " ".join(k.text.split())
        for k in kws
        if normalize_keyword(k.text).split(" ", 1)[0] in QUESTION_WORDS
        and normalize_keyword(k.text) != normalize_keyword(main)
    ]
    versus = _pick(kws, main, ("vs", "versus", "or"), 3)
    reviews = _pick(kws, main, ("review", "reviews"), 3)
    buying = _pick(
        kws, main, ("buy", "price", "cost", "cheap", "sale", "deal", "deals", "near me"), 3
    )
    second = _secondary(kws, main, 6)
    covered_all = tuple([main, *second])

    def cap(items: Sequence[str]) -> list[str]:
        return [display_name(i) for i in items]

    out: list[tuple[float, ContentIdeaDraft]] = []

    def add(
        score: float,
        title: str,
        outline: list[str],
        ctype: ContentType,
        structure: ContentStructure,
        covered: Sequence[str],
    ) -> None:
        outline = list(dict.fromkeys(h for h in outline if h))
        out.append(
            (
                score,
                ContentIdeaDraft(
                    title=title,
                    description=_outline_description(title, outline),
                    outline=tuple(outline),
                    content_type=ctype,
                    content_structure=structure,
                    estimated_word_count=_word_count(structure, len(outline)),
                    keywords=tuple(dict.fromkeys([main, *covered])),
                ),
            )
        )

    add(
        0.5 + info,
        f"{m}: The Complete Guide",
        [
            f"{m}: What to Know First",
            *cap(second[:3]),
            f"How to Get Started with {m}",
            f"Common {m} Mistakes to Avoid",
            f"{m} FAQ",
        ],
        ContentType.POST,
        ContentStructure.GUIDE,
        covered_all,
    )
    add(
        0.3 + info + (0.3 if questions else 0.0),
        f"{m}: {max(3, min(10, len(questions) or 5))} Questions Answered",
        [*cap(questions[:6]), f"What Experts Say About {m}", "Key Takeaways"]
        if questions
        else [
            f"Why {m} Matters",
            f"How {m} Works",
            f"Costs and Time Involved with {m}",
            f"Where to Learn More About {m}",
            "Key Takeaways",
        ],
        ContentType.POST,
        ContentStructure.ARTICLE,
        questions[:6] or second[:3],
    )
    add(
        0.2 + info + 0.5 * comm,
        f"How to Choose {m}: A Step-by-Step Checklist"
        if comm + trans > info
        else f"How to Get Started with {m}, Step by Step",
        [
            f"Step 1: Decide What You Need From {m}",
            f"Step 2: Set a Budget for {m}",
            f"Step 3: Compare Your {m} Options",
            "Step 4: Check Reviews and Red Flags",
            "Step 5: Decide and Follow Up",
            *cap(_pick(kws, main, "how", 2)),
        ],
        ContentType.POST,
        ContentStructure.HOW_TO,
        _pick(kws, main, "how", 3),
    )
    n_best = max(5, min(10, len(kws)))
    add(
        0.2 + comm + 0.5 * trans,
        f"{n_best} Best {m} Options Compared",
        [
            f"How We Picked the Best {m}",
            *[f"#{i} Pick for {c}" for i, c in enumerate(cap(second[:3]), 1)],
            f"What to Look For in {m}",
            f"{m} Buying Tips",
        ],
        ContentType.POST,
        ContentStructure.LISTICLE,
        second[:4],
    )
    if versus:
        add(
            0.3 + comm,
            f"{m} Compared: {display_name(versus[0])}",
            [
                *cap(versus),
                f"Side-by-Side {m} Comparison Table",
                f"Which {m} Option Is Right for You?",
                "Verdict",
            ],
            ContentType.POST,
            ContentStructure.COMPARISON,
            versus,
        )
    else:
        add(
            0.1 + comm,
            f"{m} Compared: How the Main Options Stack Up",
            [
                f"The Main Types of {m}",
                f"{m} Compared on Price",
                f"{m} Compared on Quality",
                f"Which {m} Option Is Right for You?",
                "Verdict",
            ],
            ContentType.POST,
            ContentStructure.COMPARISON,
            second[:2],
        )
    add(
        0.1 + comm + (0.3 if reviews else 0.0),
        f"{m} Review: What Works and What Doesn't",
        [
            f"{m} at a Glance",
            "What We Tested",
            *cap(reviews),
            "Pros and Cons",
            f"Who Should Choose {m}",
            "Final Score",
        ],
        ContentType.POST,
        ContentStructure.REVIEW,
        reviews,
    )
    add(
        0.1 + 1.2 * trans + (0.2 if buying else 0.0),
        f"Buy {m}: Prices, Options and Where to Order",
        [
            f"{m} Prices",
            *cap(buying),
            f"{m} Options We Offer",
            "How Ordering Works",
            "Frequently Asked Questions",
        ],
        ContentType.PRODUCT
        if buying and any(w in ml.split() for w in ("buy", "price"))
        else ContentType.PAGE,
        ContentStructure.LANDING_PAGE,
        buying,
    )
    if len(kws) >= 8:
        add(
            0.15 + 0.02 * min(len(kws), 30),
            f"{m}: All Topics and Resources",
            [f"{m} Basics", *cap(second[:4]), f"More About {m}"],
            ContentType.TAXONOMY,
            ContentStructure.GUIDE,
            covered_all,
        )
    return out


def idea_count(cluster: IdeaCluster) -> int:
    """3 for tiny clusters, one more per 5 keywords, at most 7."""
    return max(MIN_IDEAS, min(MAX_IDEAS, 2 + math.ceil(len(cluster.keywords) / 5)))


def generate_ideas_local(cluster: IdeaCluster, count: int | None = None) -> IdeasResult:
    """3-7 distinct ideas (distinct titles and formats), best-suited formats first."""
    wanted = max(MIN_IDEAS, min(MAX_IDEAS, count if count is not None else idea_count(cluster)))
    ranked = sorted(
        enumerate(_candidates(cluster)), key=lambda item: (-round(item[1][0], 6), item[0])
    )
    ideas: list[ContentIdeaDraft] = []
    titles: set[str] = set()
    for _, (_, idea) in ranked:
        key = idea.title.lower()
        if key in titles:
            continue
        titles.add(key)
        ideas.append(idea)
        if len(ideas) == wanted:
            break
    return IdeasResult(ideas=tuple(ideas), model=LOCAL_IDEAS_MODEL)


# --------------------------------------------------------------------------------------
# OpenAI-compatible path

CLUSTER_PLACEHOLDER = "[IGNY8_CLUSTER]"
KEYWORDS_PLACEHOLDER = "[IGNY8_CLUSTER_KEYWORDS]"

DEFAULT_IDEAS_PROMPT = (
    "Propose 3 to 7 distinct content ideas for the topic cluster " + CLUSTER_PLACEHOLDER + ". "
    "Its keywords:\n" + KEYWORDS_PLACEHOLDER + "\n"
    'Answer with a JSON object {"ideas": [{"title": "...", "description": "...", '
    '"outline": ["H2 ..."], "content_type": "post|page|product|taxonomy", '
    '"content_structure": "article|guide|listicle|how_to|comparison|review|landing_page", '
    '"estimated_word_count": 1500, "covered_keywords": ["..."]}]}.'
)


class AIIdeaSpec(BaseModel):
    title: ShortText
    description: str = ""
    outline: list[str] = Field(default_factory=list)
    content_type: Literal["post", "page", "product", "taxonomy"] = "post"
    content_structure: Literal[
        "article", "guide", "listicle", "how_to", "comparison", "review", "landing_page"
    ] = "article"
    estimated_word_count: int = Field(default=1200, ge=100, le=20000)
    covered_keywords: list[str] = Field(default_factory=list)

    @field_validator("title")
    @classmethod
    def _title(cls, v: str) -> str:
        v = " ".join(v.split())
        if not v:
            raise ValueError("title must not be blank")
        return v


class AIIdeasAnswer(BaseModel):
    ideas: list[AIIdeaSpec] = Field(min_length=1, max_length=MAX_IDEAS)


def render_ideas_prompt(template: str, cluster: IdeaCluster) -> str:
    listing = "\n".join(f"- {k.text} (volume {k.volume})" for k in cluster.keywords)
    text = template.replace(CLUSTER_PLACEHOLDER, cluster.name)
    if KEYWORDS_PLACEHOLDER in text:
        return text.replace(KEYWORDS_PLACEHOLDER, listing)
    return f"{text.rstrip()}\n\nKeywords:\n{listing}"


async def generate_ideas_openai(
    provider: TextGenerator,
    cluster: IdeaCluster,
    prompt: str = DEFAULT_IDEAS_PROMPT,
    *,
    model: str | None = None,
) -> IdeasResult:
    """Ideas from a chat model, validated (types, structures, distinct titles); one repair
    retry, then `AIResponseInvalid`."""

    def check(answer: AIIdeasAnswer) -> None:
        titles = [i.title.lower() for i in answer.ideas]
        if len(set(titles)) != len(titles):
            raise ValueError("two ideas have the same title")

    answer = await complete_json(
        provider,
        [ChatMessage("user", render_ideas_prompt(prompt, cluster))],
        AIIdeasAnswer,
        check=check,
        model=model,
    )
    ideas = []
    for spec in answer.value.ideas:
        outline = tuple(" ".join(h.split()) for h in spec.outline if h.strip())
        description = spec.description.strip() or _outline_description(spec.title, outline)
        ideas.append(
            ContentIdeaDraft(
                title=spec.title,
                description=description,
                outline=outline,
                content_type=ContentType(spec.content_type),
                content_structure=ContentStructure(spec.content_structure),
                estimated_word_count=spec.estimated_word_count,
                keywords=tuple(
                    dict.fromkeys(" ".join(k.split()) for k in spec.covered_keywords if k.strip())
                ),
            )
        )
    return IdeasResult(ideas=tuple(ideas), model=answer.model, usage=answer.usage)
