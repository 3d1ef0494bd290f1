"""Keyword text: normalisation, topic words, phrases and display names.

*Topic words* are what a keyword is about ("best trail running shoes for women" ->
trail, running, shoe): modifiers (best, cheap, how to, for women, 2025...) are dropped
and plurals stemmed, so that "best dog food" and "best cat food" do not meet on "best".
*Phrases* are runs of 1-3 topic words; the frequent ones are a list's anchor phrases
("massage chair", "standing desk") and name its topics.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar

_NON_WORD = re.compile(r"[^0-9a-z]+")

_MODIFIER_WORDS = """
    a an the and or of for to in on at by with without from into near me my your our i you
    is are was be can do does did should how what why when where who which vs versus
    best top good great cheap cheapest affordable budget buy order purchase price prices
    cost costs sale deal deals discount online free review reviews rated compare
    comparison guide tutorial tips ideas examples example list new used 2023 2024 2025
    2026 under over than more most much many long often get make use using need worth it
    women womens men mens kids beginners beginner easy simple quick fast
"""
MODIFIERS = frozenset(_MODIFIER_WORDS.split())

_SMALL_WORD_LIST = "a an and as at by for in of on or the to vs with from"
_SMALL_WORDS = frozenset(_SMALL_WORD_LIST.split())

MAX_PHRASE_WORDS = 3


def normalize_keyword(text: str) -> str:
    """Lower case, punctuation out, single spaces: the identity of a keyword."""
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


class _HasText(Protocol):
    @property
    def text(self) -> str: ...


T = TypeVar("T", bound=_HasText)


def group_by_text(keywords: Sequence[T]) -> dict[str, list[T]]:
    """Keywords by normalised text: spellings of the same keyword cluster as one."""
    by_text: dict[str, list[T]] = {}
    for kw in keywords:
        norm = normalize_keyword(kw.text)
        if not norm:
            raise ValueError(f"keyword {kw.text!r} has no letters or digits")
        by_text.setdefault(norm, []).append(kw)
    return by_text


def stem(word: str) -> str:
    """Plural to singular, the cheap way (enough to join "chairs" and "chair")."""
    if len(word) > 3 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def topic_words(normalized: str) -> list[str]:
    """The words that say what a keyword is about, stemmed; falls back to every word
    when a keyword is only modifiers ("best deals")."""
    words = normalized.split()
    core = [stem(w) for w in words if w not in MODIFIERS]
    return core or [stem(w) for w in words]


def phrases(words: Sequence[str], max_words: int = MAX_PHRASE_WORDS) -> list[str]:
    """Every run of 1..max_words consecutive words, each once, shortest first."""
    out: dict[str, None] = {}
    for n in range(1, max_words + 1):
        for i in range(len(words) - n + 1):
            out[" ".join(words[i : i + n])] = None
    return list(out)


def surface_form(phrase: str, texts: Iterable[str]) -> str:
    """How the keywords spell a stemmed phrase most often ("massage chair" may be
    written "massage chairs"); the phrase itself when no keyword spells it."""
    target = phrase.split()
    n = len(target)
    seen: Counter[str] = Counter()
    for text in texts:
        words = [w for w in text.split() if w not in MODIFIERS]
        for i in range(len(words) - n + 1):
            run = words[i : i + n]
            if [stem(w) for w in run] == target:
                seen[" ".join(run)] += 1
    if not seen:
        return phrase
    return min(seen, key=lambda s: (-seen[s], s))


def display_name(keyword: str) -> str:
    """Title case for a name, leaving small words and mixed-case words alone."""
    words = " ".join(keyword.split()).split(" ")
    out = []
    for n, w in enumerate(words):
        if w.islower() and (n == 0 or w not in _SMALL_WORDS):
            out.append(w[:1].upper() + w[1:])
        else:
            out.append(w)
    return " ".join(out)


def unique_name(name: str, taken: set[str]) -> str:
    """`name`, or `name 2`, `name 3`... whichever is not in `taken` (lower case); the
    chosen name is added to `taken`."""
    candidate, n = name, 2
    while candidate.lower() in taken:
        candidate = f"{name} {n}"
        n += 1
    taken.add(candidate.lower())
    return candidate
