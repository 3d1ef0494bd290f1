"""Search intent from rules: informational, navigational, commercial, transactional.

The rules look at whole words and short phrases of the normalised keyword. Precedence when
several match: navigational (the searcher wants one site) > transactional (ready to act) >
commercial (comparing before buying) > informational (the default: wants to know).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum


class Intent(StrEnum):
    INFORMATIONAL = "informational"
    NAVIGATIONAL = "navigational"
    COMMERCIAL = "commercial"
    TRANSACTIONAL = "transactional"


_NAVIGATIONAL = (
    "login",
    "log in",
    "sign in",
    "signin",
    "official site",
    "official website",
    "customer service",
    "phone number",
    "contact number",
    "store locator",
    "my account",
)
_TRANSACTIONAL = (
    "buy",
    "order",
    "purchase",
    "price",
    "prices",
    "pricing",
    "cost",
    "costs",
    "cheap",
    "cheapest",
    "deal",
    "deals",
    "discount",
    "coupon",
    "coupons",
    "promo code",
    "sale",
    "for sale",
    "shop",
    "shops",
    "store",
    "near me",
    "apply",
    "quote",
    "quotes",
    "hire",
    "book",
    "booking",
    "rent",
    "lease",
    "subscribe",
    "free trial",
    "download",
    "delivery",
    "demo",
    "sign up",
    "appointment",
    "installation",
)
_COMMERCIAL = (
    "best",
    "top",
    "review",
    "reviews",
    "vs",
    "versus",
    "compare",
    "comparison",
    "alternative",
    "alternatives",
    "rated",
    "top rated",
    "worth it",
    "brands",
    "pros and cons",
    "recommended",
    "under",
    "budget",
    "premium",
    "affordable",
    "rates",
)
# Words a question starts with: such keywords are informational (unless commercial), and
# they suggest FAQ-style ideas.
QUESTION_WORDS = frozenset({
    "how", "what", "why", "when", "where", "who", "which",
    "can", "does", "is", "are", "should", "do",
})

_INFORMATIONAL = (
    "how",
    "what",
    "why",
    "when",
    "where",
    "who",
    "which",
    "guide",
    "tutorial",
    "tips",
    "ideas",
    "examples",
    "example",
    "explained",
    "meaning",
    "definition",
    "learn",
    "benefits",
    "can",
    "does",
    "is",
    "are",
    "should",
    "course",
    "for beginners",
    "basics",
    "recipe",
    "recipes",
    "calculator",
)

_KNOWN_SITES = frozenset(
    {
        "amazon",
        "ebay",
        "walmart",
        "youtube",
        "facebook",
        "instagram",
        "reddit",
        "wikipedia",
        "netflix",
        "gmail",
        "linkedin",
        "twitter",
        "tiktok",
        "pinterest",
        "etsy",
        "craigslist",
    }
)
_DOMAIN = re.compile(r"\b[a-z0-9-]+\.(?:com|org|net|io|co|uk|de|app)\b")


def _phrase_pattern(phrases: Iterable[str]) -> re.Pattern[str]:
    ordered = sorted(set(phrases), key=lambda p: (-len(p), p))
    return re.compile(r"\b(?:" + "|".join(re.escape(p) for p in ordered) + r")\b")


_NAV_RE = _phrase_pattern(_NAVIGATIONAL)
_TRANS_RE = _phrase_pattern(_TRANSACTIONAL)
_COMM_RE = _phrase_pattern(_COMMERCIAL)
_INFO_RE = _phrase_pattern(_INFORMATIONAL)
_SPACES = re.compile(r"\s+")


def classify_intent(keyword: str) -> Intent:
    """The intent of one keyword. A bare known site name ("youtube") or a domain is
    navigational; "how to ..." is informational even when it mentions a price."""
    text = _SPACES.sub(" ", keyword.lower()).strip()
    words = text.split(" ")
    if _DOMAIN.search(text) or _NAV_RE.search(text):
        return Intent.NAVIGATIONAL
    if words and words[0] in _KNOWN_SITES and len(words) <= 2:
        return Intent.NAVIGATIONAL
    starts_as_question = bool(words) and words[0] in QUESTION_WORDS
    if starts_as_question and not _COMM_RE.match(text):
        return Intent.INFORMATIONAL
    if _TRANS_RE.search(text):
        return Intent.TRANSACTIONAL
    if _COMM_RE.search(text):
        return Intent.COMMERCIAL
    return Intent.INFORMATIONAL


def dominant_intent(intents: Iterable[tuple[Intent, int]]) -> Intent:
    """The intent carrying the most weight (e.g. search volume, at least 1 per keyword);
    ties go to the more specific intent (navigational, transactional, commercial)."""
    totals: dict[Intent, int] = {}
    for intent, weight in intents:
        totals[intent] = totals.get(intent, 0) + max(1, weight)
    if not totals:
        return Intent.INFORMATIONAL
    order = [Intent.NAVIGATIONAL, Intent.TRANSACTIONAL, Intent.COMMERCIAL, Intent.INFORMATIONAL]
    return max(order, key=lambda i: (totals.get(i, 0), -order.index(i)))
