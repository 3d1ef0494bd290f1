"""Yoast's readability checks, for English prose, offline.

Thresholds (Yoast SEO's readability analysis, yoast.com/yoast-seo-readability-analysis/
and yoast.com/content-analysis-methodological-choices-explained/; boundaries as in the
`yoastseo` package, packages/yoastseo/src/scoring/assessments/readability/):

| check | good | ok | bad |
|---|---|---|---|
| subheading distribution | sections ≤ 300 words | one of 301-350 | one > 350 (*) |
| paragraph length | every paragraph ≤ 150 words | one of 151-200 | one > 200 |
| sentence length | ≤ 25 % of sentences over 20 words | 25-30 % | > 30 % |
| passive voice | ≤ 10 % of sentences | 10-15 % | > 15 % |
| transition words | ≥ 30 % of sentences | 20-30 % | < 20 % (**) |
| consecutive sentences | never 3 in a row starting alike | — | 3 or more in a row |
| Flesch reading ease | ≥ 60 | 50-60 | < 50 |

(*) or more than 300 words without any subheading. (**) texts under 200 words are
always good.

Flesch reading ease = 206.835 - 1.015 x words/sentence - 84.6 x syllables/word, with the
sentences split here (the same ones the other checks count) and syllables counted as
`textstat` 0.7.8 counts them, with its CMU dictionary and Pyphen (nothing downloaded),
cached per word.
Passive voice is a form of "be"/"get" followed, within two words, by a past participle
(regular "-ed" or from a list of irregular ones). The transition words are a list of
English connectives written for this module.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from services.writer.checks import Check, bad, good, ok
from services.writer.document import Document

if TYPE_CHECKING:
    from pyphen import Pyphen

from services.writer.text import count_words, first_word_key, split_sentences

SECTION_GOOD, SECTION_OK = 300, 350
PARAGRAPH_GOOD, PARAGRAPH_OK = 150, 200
LONG_SENTENCE_WORDS = 20
LONG_SENTENCES_GOOD, LONG_SENTENCES_OK = 25.0, 30.0
PASSIVE_GOOD, PASSIVE_OK = 10.0, 15.0
TRANSITIONS_GOOD, TRANSITIONS_OK = 30.0, 20.0
TRANSITIONS_MIN_WORDS = 200
SAME_START_LIMIT = 3
FLESCH_GOOD, FLESCH_OK = 60.0, 50.0

TRANSITION_PHRASES = (
    # sequence
    "first",
    "firstly",
    "second",
    "secondly",
    "third",
    "thirdly",
    "next",
    "then",
    "after",
    "afterwards",
    "later",
    "finally",
    "lastly",
    "last of all",
    "to begin with",
    "to start",
    "first of all",
    "at first",
    "at last",
    "meanwhile",
    "before",
    "until",
    "once",
    "now",
    "from now on",
    "in the end",
    "eventually",
    "subsequently",
    "following this",
    # addition
    "also",
    "besides",
    "furthermore",
    "moreover",
    "in addition",
    "additionally",
    "again",
    "as well",
    "too",
    "plus",
    "what is more",
    "equally",
    "not only",
    "along with",
    # contrast
    "but",
    "however",
    "yet",
    "still",
    "although",
    "though",
    "even so",
    "even though",
    "instead",
    "otherwise",
    "whereas",
    "while",
    "on the other hand",
    "in contrast",
    "by contrast",
    "nevertheless",
    "nonetheless",
    "rather",
    "unlike",
    "despite",
    "in spite of",
    "on the contrary",
    "all the same",
    "conversely",
    # cause and effect
    "because",
    "since",
    "so",
    "therefore",
    "thus",
    "hence",
    "as a result",
    "consequently",
    "for this reason",
    "that is why",
    "due to",
    "so that",
    "in order to",
    "if",
    "unless",
    "provided that",
    "as long as",
    "in that case",
    "given that",
    # example and emphasis
    "for example",
    "for instance",
    "such as",
    "namely",
    "in particular",
    "particularly",
    "especially",
    "specifically",
    "to illustrate",
    "in fact",
    "indeed",
    "above all",
    "of course",
    "clearly",
    "obviously",
    "notably",
    "importantly",
    "in other words",
    "that is",
    "to put it simply",
    "put simply",
    "in practice",
    "in general",
    "generally",
    "usually",
    "often",
    "typically",
    "as a rule",
    "similarly",
    "likewise",
    "in the same way",
    # summary
    "in short",
    "in brief",
    "in summary",
    "to sum up",
    "overall",
    "in conclusion",
    "all in all",
    "on the whole",
    "ultimately",
    "as you can see",
    "in any case",
)
_TRANSITION_RE = re.compile(
    r"\b(?:"
    + "|".join(re.escape(p) for p in sorted(TRANSITION_PHRASES, key=len, reverse=True))
    + r")\b"
)

_BE = "am|is|are|was|were|be|been|being|get|gets|got|gotten|getting|'s|\u2019s|'re|\u2019re"
_IRREGULAR_PARTICIPLES = (
    "arisen awoken beaten become begun bent bet bid bitten bled blown born borne bought "
    "bound bred broken brought built burnt burst cast caught chosen clung come cost crept "
    "cut dealt done drawn dreamt driven drunk dug dwelt eaten fallen fed felt fled flung "
    "flown forbidden forgotten forgiven frozen found given gone ground grown hung heard "
    "hidden hit held hurt kept knelt known laid led leant leapt learnt left lent let lain "
    "lit lost made meant met mistaken paid put quit read rid ridden rung risen run sawn "
    "said seen sought sold sent set sewn shaken shed shone shot shown shrunk shut sung "
    "sunk sat slain slept slid slung spoken sped spent spilt spun spat split spoilt spread "
    "sprung stood stolen stuck stung stunk struck strung sworn swept swollen swum swung "
    "taken taught torn told thought thrown thrust trodden understood undertaken upset "
    "woken worn woven wept won wound withdrawn written"
)
_NOT_PARTICIPLES = frozenset(
    [
        "bed",
        "red",
        "need",
        "feed",
        "seed",
        "speed",
        "shed",
        "indeed",
        "hundred",
        "bred",
        "deed",
        "weed",
        "breed",
        "greed",
        "proceed",
        "succeed",
        "exceed",
        "naked",
        "wicked",
        "sacred",
        "rugged",
        "ragged",
        "kindred",
        "wretched",
        "beloved",
        "embed",
        "sled",
        "fled",
        "wed",
        "led",
    ]
) - {"fled", "led", "bred", "shed"}
_PASSIVE_RE = re.compile(
    r"\b(?:" + _BE + r")\s+(?:(?:not|also|often|usually|always|never|rarely|still|being|"
    r"been|only|already|just|\w+ly)\s+){0,2}(\w+)\b",
    re.IGNORECASE,
)
_IRREGULAR = frozenset(_IRREGULAR_PARTICIPLES.split())


_GET_IDIOMS = frozenset({"started", "used", "involved", "dressed", "ready", "going"})


def is_passive(sentence: str) -> bool:
    for m in _PASSIVE_RE.finditer(sentence):
        word = m.group(1).lower()
        if m.group(0).lower().startswith(("get", "got")) and word in _GET_IDIOMS:
            continue
        if word in _IRREGULAR:
            return True
        if len(word) > 4 and word.endswith("ed") and word not in _NOT_PARTICIPLES:
            return True
    return False


def has_transition(sentence: str) -> bool:
    return _TRANSITION_RE.search(sentence.lower()) is not None


@dataclass(frozen=True, slots=True)
class SentenceStats:
    sentences: tuple[str, ...]
    long: int
    passive: int
    transitions: int
    longest_same_start: int
    same_start_word: str
    words: int
    syllables: int

    def share(self, n: int) -> float:
        return 100.0 * n / len(self.sentences) if self.sentences else 0.0

    @property
    def flesch(self) -> float:
        if not self.sentences or not self.words:
            return 100.0
        return (
            206.835 - 1.015 * self.words / len(self.sentences) - 84.6 * self.syllables / self.words
        )


@lru_cache(maxsize=1)
def _dictionaries() -> tuple[dict[str, list[list[str]]], Pyphen]:
    """textstat's own CMU dictionary and Pyphen hyphenator for English (loaded once)."""
    from textstat.backend.utils import get_cmudict, get_pyphen

    return get_cmudict("en_US") or {}, get_pyphen("en_US")


@lru_cache(maxsize=65536)
def syllables(word: str) -> int:
    """textstat 0.7.8's syllable count for one word (CMU dictionary, then Pyphen),
    cached per word: the article-wide call re-counts every word on every analysis."""
    cmu, pyphen = _dictionaries()
    phones = cmu.get(word)
    if phones:
        return sum(1 for p in phones[0] if p[-1].isdigit())
    return len(pyphen.positions(word)) + 1


def count_syllables(text: str) -> int:
    from textstat.backend.selections import list_words

    return sum(syllables(w) for w in list_words(text, lowercase=True))


def sentence_stats(prose: Sequence[str]) -> SentenceStats:
    sentences: list[str] = []
    for block in prose:
        sentences.extend(split_sentences(block))
    long_count = passive = transitions = 0
    run, best, best_word, previous = 0, 0, "", None
    word_total = 0
    for sentence in sentences:
        n = count_words(sentence)
        word_total += n
        long_count += n > LONG_SENTENCE_WORDS
        passive += is_passive(sentence)
        transitions += has_transition(sentence)
        key = first_word_key(sentence)
        run = run + 1 if key and key == previous else 1
        previous = key
        if run > best:
            best, best_word = run, key
    syllable_total = count_syllables(" ".join(sentences)) if sentences else 0
    return SentenceStats(
        tuple(sentences), long_count, passive, transitions, best, best_word, word_total,
        syllable_total,
    )


# -- the checks, each a pure function of its measure (tested at every boundary) --------


def rate_subheading_distribution(
    section_words: Sequence[int], has_subheadings: bool, total_words: int
) -> Check:
    name = "subheading_distribution"
    if not has_subheadings:
        if total_words <= SECTION_GOOD:
            return good(name, "readability", "The text is short enough to need no subheadings.")
        return bad(
            name,
            "readability",
            f"{total_words} words without a single subheading.",
            "Break the text up with H2/H3 subheadings, one at least every 300 words.",
        )
    longest = max(section_words, default=0)
    if longest <= SECTION_GOOD:
        return good(name, "readability", "Every section is at most 300 words long.")
    fix = (
        f"Add a subheading inside the section of {longest} words so that no section "
        "runs past 300 words."
    )
    if longest <= SECTION_OK:
        return ok(name, "readability", f"One section has {longest} words (over 300).", fix)
    return bad(name, "readability", f"One section has {longest} words (over 350).", fix)


def rate_paragraph_length(paragraph_words: Sequence[int]) -> Check:
    name = "paragraph_length"
    longest = max(paragraph_words, default=0)
    if longest <= PARAGRAPH_GOOD:
        return good(name, "readability", "No paragraph is longer than 150 words.")
    fix = f"Split the paragraph of {longest} words into paragraphs of at most 150 words."
    if longest <= PARAGRAPH_OK:
        return ok(name, "readability", f"A paragraph has {longest} words.", fix)
    return bad(name, "readability", f"A paragraph has {longest} words.", fix)


def rate_sentence_length(long_share: float) -> Check:
    name = "sentence_length"
    msg = f"{long_share:.1f} % of the sentences have more than 20 words"
    if long_share <= LONG_SENTENCES_GOOD:
        return good(name, "readability", msg + " (at most 25 % is good).")
    fix = "Split sentences of more than 20 words until at most 25 % of them are that long."
    if long_share <= LONG_SENTENCES_OK:
        return ok(name, "readability", msg + ".", fix)
    return bad(name, "readability", msg + ".", fix)


def rate_passive_voice(passive_share: float) -> Check:
    name = "passive_voice"
    msg = f"{passive_share:.1f} % of the sentences are in the passive voice"
    if passive_share <= PASSIVE_GOOD:
        return good(name, "readability", msg + " (at most 10 % is good).")
    fix = "Rewrite passive sentences with an active subject until at most 10 % remain."
    if passive_share <= PASSIVE_OK:
        return ok(name, "readability", msg + ".", fix)
    return bad(name, "readability", msg + ".", fix)


def rate_transition_words(transition_share: float, total_words: int) -> Check:
    name = "transition_words"
    if total_words < TRANSITIONS_MIN_WORDS:
        return good(name, "readability", "The text is short enough not to need transition words.")
    msg = f"{transition_share:.1f} % of the sentences contain a transition word"
    if transition_share >= TRANSITIONS_GOOD:
        return good(name, "readability", msg + " (30 % or more is good).")
    fix = (
        "Link sentences with transition words (for example, however, because, next, "
        "as a result) until 30 % of them have one."
    )
    if transition_share >= TRANSITIONS_OK:
        return ok(name, "readability", msg + ".", fix)
    return bad(name, "readability", msg + ".", fix)


def rate_consecutive_sentences(longest_run: int, word: str) -> Check:
    name = "consecutive_sentences"
    if longest_run < SAME_START_LIMIT:
        return good(name, "readability", "No three sentences in a row start with the same word.")
    return bad(
        name,
        "readability",
        f"{longest_run} sentences in a row start with “{word}”.",
        f"Vary how those sentences begin: start no more than two in a row with “{word}”.",
    )


def rate_flesch(flesch: float) -> Check:
    name = "flesch_reading_ease"
    value = max(0.0, min(100.0, flesch))
    msg = f"Flesch reading ease is {value:.1f}"
    if value >= FLESCH_GOOD:
        return good(name, "readability", msg + " (60 or more reads easily).")
    fix = "Use shorter sentences and shorter, common words to bring the score to 60 or more."
    if value >= FLESCH_OK:
        return ok(name, "readability", msg + " (fairly difficult).", fix)
    return bad(name, "readability", msg + " (difficult).", fix)


def readability_checks(doc: Document) -> list[Check]:
    stats = sentence_stats([b.text for b in doc.prose])
    paragraph_words = [count_words(p) for p in doc.paragraphs]
    return [
        rate_subheading_distribution(doc.section_words, bool(doc.subheadings), doc.word_count),
        rate_paragraph_length(paragraph_words),
        rate_sentence_length(stats.share(stats.long)),
        rate_passive_voice(stats.share(stats.passive)),
        rate_transition_words(stats.share(stats.transitions), doc.word_count),
        rate_consecutive_sentences(stats.longest_same_start, stats.same_start_word),
        rate_flesch(stats.flesch),
    ]
