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


def surface_form(phrase: str, texts: Iterable[str], avoid: frozenset[str] = frozenset()) -> str:
    """How the keywords write a stemmed phrase most often, with the words most of them
    put around it ("carry" is written "carry on" when most keywords say "carry on"; a
    phrase whose words stand apart keeps what stands between: "carry on luggage"). The
    span never grows into a word of `avoid` (the list's context words)."""
    target = phrase.split()
    spans: list[tuple[list[str], int, int]] = []
    for text in texts:
        words = text.split()
        stems = [stem(w) for w in words]
        for i in range(len(words)):
            j, t = i, 0
            while j < len(words) and t < len(target):
                if stems[j] == target[t]:
                    t += 1
                elif t == 0 or words[j] not in MODIFIERS:
                    break
                j += 1
            if t == len(target):
                spans.append((words, i, j))
                break
    if not spans:
        return phrase
    # Grow the span while a neighbouring word (or a small word and the word after it:
    # "paint a room") is shared by most occurrences.
    for _ in range(3):
        grown = False
        for side in (1, -1):
            step = _common_step(spans, side)
            if step and not avoid.intersection(stem(w) for w in step):
                spans = [_grow(w, i, j, side, len(step)) for w, i, j in spans
                         if _next(w, i, j, side, len(step)) == step]
                grown = True
        if not grown:
            break
    seen = Counter(" ".join(w[i:j]) for w, i, j in spans)
    return min(seen, key=lambda s: (-seen[s], s))


def _next(words: list[str], i: int, j: int, side: int, n: int) -> list[str]:
    return words[j : j + n] if side == 1 else words[max(i - n, 0) : i][::-1]


def _grow(words: list[str], i: int, j: int, side: int, n: int) -> tuple[list[str], int, int]:
    return (words, i, j + n) if side == 1 else (words, i - n, j)


def _common_step(spans: Sequence[tuple[list[str], int, int]], side: int) -> list[str]:
    """The word(s) next to the spans on one side shared by 60 % of them or more: one
    content word, or a modifier and the content word after it; [] when none."""
    for n in (1, 2):
        seen = Counter(" ".join(_next(w, i, j, side, n)) for w, i, j in spans)
        best, count = min(seen.items(), key=lambda wc: (-wc[1], wc[0]))
        step = best.split()
        if count < 0.6 * len(spans) or len(step) < n:
            continue
        if n == 1 and step[0] not in MODIFIERS:
            return step
        if n == 2 and step[0] in MODIFIERS and step[1] not in MODIFIERS:
            return step
    return []


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
