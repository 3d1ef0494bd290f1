"""Wording for the `local` engine (services/writer/drafting.py): headings as phrases
that read inside a sentence, topics without the keyphrase, and the sentence writer that
keeps a draft's sentences unique, varied and readable while steering keyphrase density,
transition words and long sentences."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from services.writer.readability import has_transition, is_passive
from services.writer.text import WORD, Keyphrase, count_words, first_word_key, stem

LONG_WORDS = 20
SPARSE_DENSITY = 0.9  # keyphrase %: under it, the writer prefers sentences that name it
STEP_PREFIX = re.compile(r"^(?:step\s*\d+\s*[:.)-]\s*|#\d+\s*|\d+[.)]\s*)", re.IGNORECASE)


def lower_words(text: str) -> str:
    """Lower-case a heading for use mid-sentence, keeping acronyms and brand capitals."""
    out = []
    for word in text.split():
        inner_caps = any(c.isupper() for c in word[1:])
        out.append(word if inner_caps or (word.isupper() and len(word) > 1) else word.lower())
    return " ".join(out)


_CLAUSE_START = frozenset(
    [
        "how",
        "what",
        "why",
        "when",
        "where",
        "which",
        "who",
        "whether",
        "should",
        "can",
        "do",
        "does",
        "is",
        "are",
        "will",
        "your",
        "our",
        "choose",
        "pick",
        "find",
        "get",
        "make",
        "use",
        "avoid",
        "decide",
        "set",
        "compare",
        "check",
        "start",
        "buy",
        "learn",
    ]
)


def topic_of(heading: str, keyphrase: str) -> str:
    """A heading as a phrase that reads inside a sentence ("Running Shoes: Buying Tips"
    → "buying tips"). A heading that reads as a clause ("How We Picked", "Step 2: Set a
    Budget") is quoted, so that a sentence refers to it rather than parsing it."""
    text = STEP_PREFIX.sub("", heading.strip()).rstrip("?:!. ")
    if text.lower().startswith(keyphrase.lower() + ":"):
        text = text[len(keyphrase) + 1 :].strip() or text
    topic = lower_words(text) or lower_words(keyphrase)
    first = topic.split(" ", 1)[0].lower()
    if first in _CLAUSE_START:
        return f"“{topic}”"
    return topic


def keyphrase_span(text: str, kp: Keyphrase) -> tuple[int, int] | None:
    """Where `text` names the keyphrase: the phrase itself, or else the shortest run of
    words that holds all its content words ("home insurance" in "best home insurance"
    for "home insurance at home"; the optimizer counts that as the keyphrase too)."""
    pattern = re.compile(r"\b" + re.escape(kp.text) + r"\b", re.IGNORECASE)
    m = pattern.search(text)
    if m:
        return m.start(), m.end()
    words = list(WORD.finditer(text))
    wanted = set(kp.stems)
    best: tuple[int, int] | None = None
    for i in range(len(words)):
        have: set[str] = set()
        for j in range(i, len(words)):
            have.add(stem(words[j].group()))
            if wanted <= have:
                if best is None or j - i < best[1] - best[0]:
                    best = (i, j)
                break
    if best is None:
        return None
    return words[best[0]].start(), words[best[1]].end()


def without_keyphrase(topic: str, kp: Keyphrase) -> str:
    """The topic without the keyphrase, for a draft whose keyphrase density runs high:
    "how coffee works" → "how it works", "best coffee" → "the best option", "coffee near me" →
    "options near me", "how to choose coffee" → "how to choose it"."""
    quoted = topic.startswith("“")
    text = topic.strip("“”")
    span = keyphrase_span(text, kp) if kp else None
    if span is None:
        return topic
    before, after = text[: span[0]].strip(), text[span[1] :].strip()
    last = before.split()[-1].lower() if before else ""
    if before and (last in _CLAUSE_START or last in _PREPOSITIONS):
        rest = f"{before} it {after}".strip()
    elif before and not after:  # "best coffee", "cheap coffee"
        rest = f"the {before} option"
    elif not before and after:
        first = after.split()[0].lower()
        rest = f"options {after}" if first in _PREPOSITIONS | {"vs", "near"} else f"the {after}"
    elif before:
        rest = f"{before} {after}".strip()
    else:
        rest = "this part"
    return f"“{rest}”" if quoted else rest


_PREPOSITIONS = frozenset(
    ["with", "for", "about", "on", "of", "to", "from", "into", "in", "at", "by"]
)


# --------------------------------------------------------------------------------------
# The writer: picks sentences that keep the draft unique, varied and readable


class Writer:
    """Keeps the sentences of one draft unique, never lets two in a row start alike,
    and steers keyphrase density, transition words and long sentences while choosing."""

    def __init__(self, kp: Keyphrase, target: int) -> None:
        self.kp = kp
        self.target = target
        self.used: set[str] = set()
        self.last_start = ""
        self.sentences = 0
        self.long = 0
        self.transitions = 0
        self.kp_hits = 0
        self.words = 0

    def _key(self, sentence: str) -> str:
        return " ".join(sentence.lower().split())

    def can_use(self, sentence: str) -> bool:
        return self._key(sentence) not in self.used and first_word_key(sentence) != self.last_start

    def note(self, sentence: str) -> str:
        n, _, transition, hits = features(sentence, self.kp)
        self.used.add(self._key(sentence))
        self.last_start = first_word_key(sentence)
        self.sentences += 1
        self.long += n > LONG_WORDS
        self.transitions += transition
        self.kp_hits += hits
        return sentence

    def note_heading(self, text: str) -> None:
        self.kp_hits += self.kp.occurrences(text)

    def density(self, extra_words: int = 0) -> float:
        return 100.0 * self.kp_hits / max(1, self.words + extra_words)

    def choose(self, candidates: Sequence[str]) -> str | None:
        """The best usable candidate: fit to the rules first, then the first in order."""
        best: tuple[int, int] | None = None
        chosen = None
        need_transition = self.transitions < 0.4 * (self.sentences + 1)
        density = self.density()
        for order, sentence in enumerate(candidates):
            if not self.can_use(sentence):
                continue
            n, passive, transition, hits = features(sentence, self.kp)
            if passive:
                continue
            penalty = 0
            if n > LONG_WORDS and self.long + 1 > 0.15 * (self.sentences + 1):
                penalty += 4
            if need_transition and not transition:
                penalty += 1
            if hits and density > 2.0:
                penalty += 3 * hits
            if not hits and density < SPARSE_DENSITY:
                penalty += 2
            if penalty == 0:
                return sentence
            rank = (penalty, order)
            if best is None or rank < best:
                best, chosen = rank, sentence
        return chosen


@lru_cache(maxsize=32768)
def features(sentence: str, kp: Keyphrase) -> tuple[int, bool, bool, int]:
    """Words, passive voice, transition word, keyphrase occurrences of a sentence."""
    return (
        count_words(sentence),
        is_passive(sentence),
        has_transition(sentence),
        kp.occurrences(sentence),
    )
