"""Search intent from rules: informational, navigational, commercial, transactional.

The rules read whole words and short phrases of the lower-cased keyword, in this order
(the first that matches decides):

1. navigational: the searcher wants one site, app or account page (a domain, "login",
   "customer service", "<brand> app", "<carrier> tracking", "check in", "returns", a
   bare well-known site);
2. informational despite a buying word: "best time to ...", "best way to ...", "best
   things to do", "best exercises for ...", "best ... recipe", "how much ... do i need",
   "what is a good credit score", "is coffee good for you";
3. transactional cost questions: "how much does ... cost", "how much is a ...";
4. commercial comparisons: "x vs y", "x or y" (not inside a yes/no question: "is my
   budgie a boy or girl"), "is x better than y", "difference between", "alternatives",
   "competitors";
5. other questions ("how", "what", "can"...) are informational unless they weigh options
   ("worth it", "best");
6. guide words (how to, guide, tips, meaning...): informational;
7. choosing by a feature ("best", "top", "no annual fee") is commercial unless the
   searcher is ready to pay (buy, price, near me, coupon...);
8. transactional words (buy, price, cheap, near me, book, quote, flights, download...);
9. weaker informational words (symptoms, treatment, course, calculator...);
10. commercial words (review, for seniors, software, kinds of products such as cream or
   mattress, superlatives such as strongest);
11. hiring or subscribing words (service, repair, plumber, local, insurance...):
   transactional;
12. informational, the default.

Cue words also match their plural ("repairs", "plumbers"). Tuned on the intent sets and
keyword sets' intent columns of bench/data/B and (after its four evaluations) A; the
figures on the held-out set C are in docs/decisions/0020-two-level-clustering.md.
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
    "login", "log in", "logon", "sign in", "signin", "official site", "official website",
    "customer service", "customer support", "phone number",
    "contact number", "store locator", "store hours", "opening hours", "my account",
    "account login", "portal", "web player", "online banking", "check in", "checkin",
    "boarding pass", "return policy", "returns", "order tracking", "track my order",
    "track order", "support number", "help center", "help centre", "app login",
    "webmail", "sign on", "baggage policy", "baggage allowance",
)
# A word ending a short keyword that makes it about one brand's own service:
# "spotify app", "apple support", "costco hours", "allstate claims".
_NAV_TAILS = frozenset({"app", "support", "hours", "claims", "login", "account", "portal",
                        "site", "web", "website", "tracking", "airlines", "airline"})

# Words of a question: such keywords are informational (unless they weigh options), and
# they suggest FAQ-style ideas.
QUESTION_WORDS = frozenset({
    "how", "what", "why", "when", "where", "who", "which",
    "can", "does", "is", "are", "should", "do",
})

_TRANSACTIONAL = (
    "buy", "order", "purchase", "price", "prices", "pricing", "cost", "costs", "fee", "fees",
    "cheap", "cheapest", "cheep", "inexpensive", "affordable", "budget", "low cost", "deal",
    "deals", "discount", "discounts", "coupon", "coupons", "promo code", "sale", "for sale",
    "shop", "shops", "store", "near me", "apply", "quote", "quotes", "hire", "book",
    "booking", "rent", "rental", "lease", "subscribe", "free trial", "delivery", "demo",
    "sign up", "appointment", "installation", "rates", "rate", "flight", "flights",
    "hotel", "hotels", "tickets", "airfare", "open an account", "open a",
    # Doing the thing online rather than reading about it.
    "download", "sell", "renew", "renewal", "test kit",
)
# Hiring a service or buying a policy ("emergency plumber", "roof repair estimate",
# "pet insurance"): transactional unless the keyword weighs options ("best pet insurance").
_SOFT_TRANSACTIONAL = (
    "service", "services", "repair", "estimate", "estimates", "contractor", "contractors",
    "installer", "installers", "emergency", "consultation", "reservation", "reservations",
    "subscription", "adopt", "adoption", "insurance",
    # Trades and providers one hires: "plumbers in austin", "termite exterminator".
    "plumber", "electrician", "roofer", "roofing company", "exterminator", "extermination",
    "locksmith", "handyman", "mover", "movers", "landscaper", "cleaner", "cleaners",
    "cleaning company", "cleaning service", "pest control", "company", "companies",
    "local", "24 hour", "after hours", "same day", "professional", "clinic", "online",
)
_COMMERCIAL = (
    "best", "top", "review", "reviews", "compare", "comparison", "alternative",
    "alternatives", "rated", "top rated", "highest rated", "worth it", "worth the money",
    "brands", "pros and cons", "recommended", "most reliable", "most popular", "under",
    "premium", "for seniors", "for elderly", "for small business", "for business",
    # Choosing among products of a kind: "crm software", "budgeting apps".
    "software", "apps", "tools", "platforms", "providers", "solutions", "systems",
    # Kinds of products bought to solve a problem: "eczema cream", "cpap machine".
    "cream", "lotion", "shampoo", "medicine", "medication", "pills", "supplement",
    "supplements", "machine", "device", "devices", "mouthpiece", "mattress", "cage",
    "over the counter", "otc",
    # Superlatives that rank options: "strongest allergy medicine", "easiest corals".
    "strongest", "easiest", "hardiest", "quietest", "safest", "healthiest", "lightest",
    "most comfortable", "most effective",
)
_COMPARISON = re.compile(
    r"\b(?:vs|versus)\b|\bbetter than\b|\bwhich is better\b|\bdifference between\b"
    r"|\bcompared? to\b|\balternatives?\b|\bcompetitors?\b"
)
# "x or y" weighs options, except in a yes/no or wh- question ("is my budgie a boy or
# girl", "is it an allergy or intolerance"): there it asks what something is.
_EITHER = re.compile(r"\b\w+ or \w+")
# "best" that is not choosing a product: when, how, what to do, a recipe.
_INFO_BEST = re.compile(
    r"\b(?:best|top|cheapest) (?:times?(?: to| of| for| in| when|$)|way|ways|day|days"
    r"|month|months|season|age|place to"
    r"|places to|area|areas|neighborhood|neighborhoods|neighbourhood|neighbourhoods|part"
    r"|things|attractions|spots|thing|exercises?|stretch(?:es)?|practices?|beaches|foods"
    r"|positions?|habits?)\b"
    r"|\brecipes?\b|\bgood for (?:you|your|me|health)\b"
    r"|\b(?:is|a) good \w+(?: \w+)? (?:score|number|rate|age|level|weight|range)\b"
    r"|\bhow much \w+(?: \w+)? (?:do i need|can i afford|should i)\b"
)
_COST_QUESTION = re.compile(
    r"\bhow much (?:does|do|will|would|for)\b.*\b(?:cost|costs|charge|price)\b"
    r"|\bhow much (?:is|are|to)\b|\bwhat does \w+.* cost\b"
)
_INFO_WORDS = (
    "guide", "tutorial", "tips", "ideas", "examples", "example", "explained", "meaning",
    "definition", "learn", "basics", "step by step", "diy", "what to", "how to",
)
# Weaker: a price or "near me" beside them makes the keyword transactional ("termite
# treatment cost", "sat prep course price").
_SOFT_INFO_WORDS = (
    "benefits", "course", "calculator", "checklist",
    # Health and care questions without a question word: "migraine symptoms".
    "symptoms", "causes", "side effects", "signs", "treatment", "remedies", "dosage",
)

_KNOWN_SITES = frozenset(
    {
        "amazon", "ebay", "walmart", "youtube", "facebook", "instagram", "reddit",
        "wikipedia", "netflix", "gmail", "linkedin", "twitter", "tiktok", "pinterest",
        "etsy", "craigslist", "google", "yahoo", "bing", "outlook", "hotmail", "spotify",
        "whatsapp", "zoom", "canva", "chatgpt", "github", "indeed", "zillow", "paypal",
        "venmo", "target", "costco", "ikea", "airbnb", "uber", "doordash", "webmd",
        "imdb", "espn", "cnn", "bbc", "dropbox", "slack", "notion", "shopify", "hulu",
        "disney plus", "best buy", "home depot", "lowes", "kbb", "kelley blue book",
        "carmax", "autotrader", "duolingo", "quizlet", "coursera", "udemy", "khan academy",
        "credit karma", "turbotax", "expedia", "booking com", "tripadvisor", "yelp",
    }
)
_DOMAIN = re.compile(r"\b[a-z0-9-]+\.(?:com|org|net|io|co|uk|de|app|gov|edu)\b|\bwww\b")


class _Cues:
    """Cue words and phrases matched on whole words: single words by set lookup,
    phrases only when their first word is present (substring search in the padded
    text). A few microseconds per keyword: imports classify 100,000 rows at a time."""

    def __init__(self, cues: Iterable[str]) -> None:
        self.words = frozenset(c for c in cues if " " not in c)
        by_first: dict[str, list[str]] = {}
        for c in sorted(c for c in set(cues) if " " in c):
            by_first.setdefault(c.split(" ", 1)[0], []).append(f" {c} ")
        self.phrases = {w: tuple(ps) for w, ps in by_first.items()}
        self.firsts = frozenset(self.phrases)

    def search(self, padded: str, bag: set[str]) -> bool:
        if not self.words.isdisjoint(bag):
            return True
        return any(p in padded for w in self.firsts.intersection(bag) for p in self.phrases[w])


_CHOOSING = _Cues(("best", "top", "top rated", "highest rated", "most popular"))
_READY = _Cues(("buy", "order", "purchase", "price", "prices", "cost", "costs", "coupon",
                "promo code", "for sale", "near me", "deal", "deals", "discount", "cheapest",
                "quote", "book", "booking", "rent", "rental", "apply"))
_NO_FEE = re.compile(r"\b(?:no|without|zero)\b(?: \w+){0,3} fees?\b")
_NAV = _Cues(_NAVIGATIONAL)
_TRANS = _Cues(_TRANSACTIONAL)
_SOFT_TRANS = _Cues(_SOFT_TRANSACTIONAL)
_COMM = _Cues(_COMMERCIAL)
_INFO = _Cues(_INFO_WORDS)
_SOFT_INFO = _Cues(_SOFT_INFO_WORDS)
_OPTIONS = _Cues(("best", "top", "worth it", "worth", "review", "reviews", "better", "good"))
# Words without which the structural patterns below cannot match (skips their regex).
_COMPARISON_WORDS = frozenset({"vs", "versus", "better", "compare", "compared",
                               "alternative", "alternatives", "competitor", "competitors",
                               "difference"})
# Questions that weigh options even with "or": "should i visit lisbon or porto".
_CHOOSING_STARTS = frozenset({"should", "which", "do"})
_INFO_BEST_WORDS = frozenset({"best", "top", "cheapest", "recipe", "recipes", "much", "good"})
_COST_WORDS = frozenset({"much", "cost"})
_SITE_FIRSTS = frozenset(s.split(" ", 1)[0] for s in _KNOWN_SITES)
# Lower-case letters, digits, dots and hyphens stay; everything else is a space.
_KEEP = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")
_CLEAN_TABLE = {c: " " for c in range(128) if chr(c) not in _KEEP}


def _site_of(words: list[str]) -> tuple[str, list[str]] | None:
    """The well-known site or brand a keyword starts with, and the words after it."""
    if words[0] not in _SITE_FIRSTS:
        return None
    for n in (3, 2, 1):
        head = " ".join(words[:n])
        if len(words) >= n and head in _KNOWN_SITES:
            return head, words[n:]
    return None


def _singular(word: str) -> str:
    """Plural to singular, the cheap way: cue words match "repairs" and "plumbers"."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _cue_text(text: str) -> tuple[str, set[str]]:
    padded = f" {text} "
    bag = set(padded.split())
    bag.update([_singular(w) for w in bag])
    return padded, bag


def classify_intent(keyword: str) -> Intent:
    """The intent of one keyword (see the module docstring for the order of the rules)."""
    lowered = keyword.lower().replace("'", "")
    text = " ".join(lowered.translate(_CLEAN_TABLE).split())
    if not text.isascii():
        text = " ".join("".join(c if c.isalnum() or c in ".-" else " " for c in text).split())
    words = text.split(" ") if text else []
    if not words:
        return Intent.INFORMATIONAL
    # Hyphens join words ("check-in", "carry-on"): cues see them apart.
    padded, bag = _cue_text(text.replace("-", " "))
    if _NAV.search(padded, bag) or (("." in text or "www" in bag) and _DOMAIN.search(text)):
        return Intent.NAVIGATIONAL
    site = _site_of(words)
    if site is not None:
        rest = site[1]
        rest_padded, rest_bag = _cue_text(" ".join(rest))
        # "best buy", "home depot near me", "youtube music"; not "slack alternatives".
        if not rest or rest == ["near", "me"] or (
            len(rest) == 1
            and not (_TRANS.search(rest_padded, rest_bag) or _COMM.search(rest_padded, rest_bag))
        ):
            return Intent.NAVIGATIONAL
    comm = _COMM.search(padded, bag)
    if 2 <= len(words) <= 3 and words[-1] in _NAV_TAILS and not comm:
        return Intent.NAVIGATIONAL
    if not _INFO_BEST_WORDS.isdisjoint(bag) and _INFO_BEST.search(text):
        return Intent.INFORMATIONAL
    if not _COST_WORDS.isdisjoint(bag) and _COST_QUESTION.search(text):
        return Intent.TRANSACTIONAL
    info = _INFO.search(padded, bag)
    if not info and (
        (not _COMPARISON_WORDS.isdisjoint(bag) and _COMPARISON.search(text))
        or ("or" in bag and (words[0] not in QUESTION_WORDS or words[0] in _CHOOSING_STARTS)
            and _EITHER.search(text))
    ):
        return Intent.COMMERCIAL
    if words[0] in QUESTION_WORDS:
        return Intent.COMMERCIAL if _OPTIONS.search(padded, bag) else Intent.INFORMATIONAL
    if info:
        return Intent.INFORMATIONAL
    # Choosing a product by a feature ("best budget smartphones", "best hotels in paris",
    # "credit card with no foreign transaction fee") is commercial, unless the searcher
    # is ready to pay ("best price", "buy", "near me", a coupon).
    if (_CHOOSING.search(padded, bag) or _NO_FEE.search(text)) and not _READY.search(padded, bag):
        return Intent.COMMERCIAL
    if _TRANS.search(padded, bag):
        return Intent.TRANSACTIONAL
    if _SOFT_INFO.search(padded, bag):
        return Intent.INFORMATIONAL
    if comm:
        return Intent.COMMERCIAL
    if _SOFT_TRANS.search(padded, bag):
        return Intent.TRANSACTIONAL
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
