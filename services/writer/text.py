"""Words, sentences and keyphrase matching, shared by the engines and the optimizer.

One definition of each, so that a draft's word count is the optimizer's word count and
"the keyphrase appears here" means the same thing to the engine that places it and to the
check that looks for it.

Keyphrase matching follows Yoast's free analysis: the keyphrase matches a sentence when
all of its content words (function words such as "how", "to", "the" ignored) occur in
that sentence, in any order; words match on a light English stem (plural "-s"/"-es"/
"-ies" and possessive "'s" ignored), so "running shoe" matches "running shoes".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

WORD = re.compile(r"[^\W_](?:[\w'\u2019-]*[^\W_])?")

FUNCTION_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "nor",
        "so",
        "yet",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "from",
        "with",
        "without",
        "into",
        "onto",
        "over",
        "under",
        "about",
        "above",
        "below",
        "up",
        "down",
        "out",
        "off",
        "than",
        "then",
        "as",
        "if",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "do",
        "does",
        "did",
        "doing",
        "have",
        "has",
        "had",
        "having",
        "can",
        "could",
        "should",
        "would",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "how",
        "what",
        "why",
        "when",
        "where",
        "who",
        "whom",
        "whose",
        "which",
        "that",
        "this",
        "these",
        "those",
        "it",
        "its",
        "i",
        "me",
        "my",
        "we",
        "us",
        "our",
        "you",
        "your",
        "he",
        "him",
        "his",
        "she",
        "her",
        "they",
        "them",
        "their",
        "there",
        "here",
        "not",
        "no",
        "yes",
        "very",
        "too",
        "also",
        "just",
        "only",
        "all",
        "any",
        "some",
        "each",
        "every",
        "both",
        "either",
        "neither",
        "such",
        "own",
        "same",
        "other",
        "more",
        "most",
        "much",
        "many",
        "few",
        "less",
        "least",
    ]
)

_ABBREVIATIONS = frozenset(
    [
        "e.g",
        "i.e",
        "etc",
        "vs",
        "mr",
        "mrs",
        "ms",
        "dr",
        "st",
        "no",
        "fig",
        "approx",
        "inc",
        "ltd",
        "jr",
        "sr",
        "prof",
        "co",
        "dept",
        "est",
        "min",
        "max",
    ]
)
# A candidate sentence end: . ! or ? (then closing quotes/brackets), whitespace, and a
# character that can start a sentence.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”\u2019)\]]*\s+(?=[\"'“\u2018(\[]?[\w\[])")


def words(text: str) -> list[str]:
    return WORD.findall(text)


def count_words(text: str) -> int:
    return len(WORD.findall(text))


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A light English stem: lower case, no possessive, no plural ending."""
    w = word.lower().replace("\u2019", "'")
    if w.endswith("'s"):
        w = w[:-2]
    w = w.strip("'")
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("sses", "shes", "ches", "xes", "zes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def stems(text: str) -> list[str]:
    return [stem(w) for w in WORD.findall(text)]


def content_stems(phrase: str) -> tuple[str, ...]:
    """The stems of a phrase's content words, in order, without repeats. A phrase made
    only of function words ("how to") keeps all its words."""
    all_words = WORD.findall(phrase)
    content = [w for w in all_words if w.lower() not in FUNCTION_WORDS] or all_words
    return tuple(dict.fromkeys(stem(w) for w in content))


@lru_cache(maxsize=16384)
def _split_sentences(text: str) -> tuple[str, ...]:
    return tuple(_split(text))


def split_sentences(text: str) -> list[str]:
    """Sentences of one block of prose (cached: blocks are split by several checks)."""
    return list(_split_sentences(text))


def _split(text: str) -> list[str]:
    """Sentences of one block of prose. Ends at . ! ? followed by a capital, digit, quote
    or bracket; not after common abbreviations ("e.g.", "Dr.") or single initials."""
    text = " ".join(text.split())
    if not text:
        return []
    out: list[str] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        before = text[start : m.start()].rsplit(" ", 1)[-1].lower().rstrip(".")
        if text[m.start()] == "." and (before in _ABBREVIATIONS or len(before) == 1):
            continue
        out.append(text[start : m.end()].strip())
        start = m.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out


@dataclass(frozen=True, slots=True)
class Keyphrase:
    """A keyphrase ready to be looked for: its text and its content stems."""

    text: str
    stems: tuple[str, ...]

    @classmethod
    def of(cls, text: str) -> Keyphrase:
        return cls(" ".join(text.split()), content_stems(text))

    def __bool__(self) -> bool:
        return bool(self.stems)

    def occurrences(self, sentence: str) -> int:
        """How often the keyphrase occurs in one sentence: the count of its rarest
        content word (0 when any is missing)."""
        if not self.stems:
            return 0
        counts = Counter(stems(sentence))
        return min(counts[s] for s in self.stems)

    def in_text(self, text: str) -> bool:
        """All content words somewhere in `text` (one sentence, a heading, a slug)."""
        if not self.stems:
            return False
        have = set(stems(text))
        return all(s in have for s in self.stems)

    def share_in(self, text: str) -> float:
        """The share of the keyphrase's content words present in `text` (0..1)."""
        if not self.stems:
            return 0.0
        have = set(stems(text))
        return sum(1 for s in self.stems if s in have) / len(self.stems)

    def exact_at_start(self, text: str) -> bool:
        """The keyphrase's words, in order, open `text` (case and punctuation aside)."""
        wanted = [stem(w) for w in WORD.findall(self.text)]
        got = [stem(w) for w in WORD.findall(text)[: len(wanted)]]
        return bool(wanted) and got == wanted

    def exact_in(self, text: str) -> bool:
        """The keyphrase's words, in order and adjacent, somewhere in `text`."""
        wanted = [stem(w) for w in WORD.findall(self.text)]
        got = [stem(w) for w in WORD.findall(text)]
        n = len(wanted)
        return bool(wanted) and any(got[i : i + n] == wanted for i in range(len(got) - n + 1))


def slugify(text: str, max_words: int = 5) -> str:
    """Lower-case ASCII-ish words joined by hyphens, at most `max_words` words."""
    parts = [w.lower().replace("'", "").replace("\u2019", "") for w in WORD.findall(text)]
    parts = [re.sub(r"[^\w-]", "", p).strip("-_") for p in parts]
    return "-".join([p for p in parts if p][:max_words])


def slug_for(keyphrase: str, max_words: int = 5) -> str:
    """A slug of at most `max_words` words made of the keyphrase's content words (the
    function words go first when the keyphrase is too long)."""
    all_words = WORD.findall(keyphrase)
    content = [w for w in all_words if w.lower() not in FUNCTION_WORDS] or all_words
    chosen = all_words if len(all_words) <= max_words else content
    return slugify(" ".join(chosen), max_words)


def first_word_key(sentence: str) -> str:
    """How a sentence begins, for the "consecutive sentences" check: its first word,
    with the next one when the first is an article or a number word."""
    ws = [w.lower() for w in WORD.findall(sentence)[:2]]
    if not ws:
        return ""
    if len(ws) > 1 and ws[0] in {
        "the",
        "a",
        "an",
        "this",
        "that",
        "these",
        "those",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
    }:
        return f"{ws[0]} {ws[1]}"
    return ws[0]


# Words a heading leaves in lower case after its first word (Chicago-style short words).
TITLE_SMALL_WORDS = frozenset({
    "a", "an", "the", "and", "or", "but", "of", "to", "in", "on", "at", "by", "for", "with",
    "vs", "from", "as"
})


def title_case(text: str) -> str:
    """Capitalise words for a heading, leaving short function words and words that
    already carry capitals (brands, acronyms) alone."""
    out: list[str] = []
    for i, word in enumerate(text.split()):
        if any(c.isupper() for c in word) or (i and word.lower() in TITLE_SMALL_WORDS):
            out.append(word)
        else:
            out.append(word[:1].upper() + word[1:])
    return " ".join(out)


def sentence_case(text: str) -> str:
    text = " ".join(text.split())
    return text[:1].upper() + text[1:]


def join_list(items: Sequence[str], conjunction: str = "and") -> str:
    """ "a", "a and b", "a, b and c"."""
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def unique(items: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        key = item.lower()
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out
