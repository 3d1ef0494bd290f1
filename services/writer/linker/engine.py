"""The internal linker's engine: pure, deterministic, no I/O.

    index = SiteIndex(targets, embedder=LocalEmbedder())   # a site's content
    links = index.suggest(source_id, html)                 # [Link(target, anchor, paragraph)]

**Candidates.** Every other content of the site, scored by the cosine similarity of
WordLlama embeddings of its title and keywords, plus `cluster_boost` inside the source's
cluster and `pillar_boost` for the source's cluster pillar. Those scoring at least
`min_score` are candidates, best first (ties by id).

**Anchors.** The targets' keyword variants (keyphrase first, then secondary keywords; at
least two words; question keywords left out) are looked for with a token Aho-Corasick
automaton over light stems (`match_stem`: plurals, and "-ing" so that "making matcha"
finds "make matcha"; articles "a", "an", "the" ignored), in body paragraphs only
(`html.py`): never in headings, lists, tables, captions or quotes, never in the article's
first sentence, never inside or beside an existing link (a paragraph with a link takes no
other), never overlapping the source's own keyphrase, and never a variant that *is* the
source's keyphrase.

**Rules.** No self links; one link per target (a target the source already links to is
skipped); at most one new link per paragraph; `per_1000` links per 1,000 words of the
source: at most max(1, ⌊5·words/1000⌋) counting links it already has to the site's
content, and when fewer than ⌊3·words/1000⌋ are found the candidates down to `fill_score`
are tried. The cluster's **pillar** (its `guide`/`landing_page` or `page`, else its longest
content; ties by lowest id) links every page of its cluster: for a pillar, the cluster's
pages are linked first and the budget grows to cover them; the other pages of the
cluster link up to their pillar first (hub and spokes), within their budget. Paragraphs
are shared out by matching (augmenting paths, best candidates first), so a later
candidate never takes a paragraph an earlier one needed. Same input, same output.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

import numpy as np
import numpy.typing as npt

from services.writer.linker.automaton import TokenAutomaton
from services.writer.linker.html import (
    TOKEN,
    Page,
    Paragraph,
    Placement,
    insert_links,
    read_page,
    token_spans,
)
from services.writer.text import FUNCTION_WORDS, WORD, stem

ARTICLES = frozenset({"a", "an", "the"})
PILLAR_STRUCTURES = frozenset({"guide", "landing_page"})
QUESTION_STARTS = frozenset({"how", "what", "why", "when", "where", "which", "who", "is",
                             "are", "can", "do", "does", "should", "will"})


class Embedder(Protocol):
    def embed_sync(self, texts: Sequence[str]) -> npt.NDArray[np.float32]: ...


@dataclass(frozen=True, slots=True)
class Target:
    """A content of the site as the linker knows it."""

    id: int
    title: str
    keyphrase: str
    keywords: tuple[str, ...] = ()
    cluster_id: int | None = None
    structure: str = "article"
    content_type: str = "post"
    word_count: int = 0
    href: str = ""


@dataclass(frozen=True, slots=True)
class Link:
    target_content_id: int
    anchor: str
    paragraph_index: int


@dataclass(frozen=True, slots=True)
class LinkerConfig:
    min_score: float = 0.55
    fill_score: float = 0.45
    cluster_boost: float = 0.15
    pillar_boost: float = 0.25
    per_1000_min: float = 3.0
    per_1000_max: float = 5.0
    min_variant_words: int = 2


def link_bounds(words: int, config: LinkerConfig = LinkerConfig()) -> tuple[int, int]:
    """(fewest, most) links a source of `words` words should carry."""
    low = math.floor(config.per_1000_min * words / 1000)
    high = max(1, math.floor(config.per_1000_max * words / 1000))
    return low, high


def phrase_tokens(phrase: str) -> tuple[str, ...]:
    """What a phrase is matched on: its words' light stems, articles left out."""
    return tuple(match_stem(w) for w in TOKEN.findall(phrase) if w.lower() not in ARTICLES)


@lru_cache(maxsize=65536)
def match_stem(word: str) -> str:
    """`text.stem` (lower case, no plural or possessive), then "-ing" and a final "e"
    dropped and a doubled final consonant undone: "making" and "make" → "mak",
    "running" and "run" → "run". Only ever compared with another word's match stem."""
    s = stem(word)
    if len(s) > 5 and s.endswith("ing"):
        s = s[:-3]
        if len(s) > 2 and s[-1] == s[-2] and s[-1] not in "aeiouls":
            s = s[:-1]
    if len(s) > 3 and s.endswith("e"):
        s = s[:-1]
    return s


def is_question(phrase: str) -> bool:
    words = WORD.findall(phrase)
    return phrase.strip().endswith("?") or bool(words and words[0].lower() in QUESTION_STARTS)


# Leading words a keyword may carry that an anchor in running prose does not: "how to
# descale a kettle" is linked where the text says "descale a kettle".
_LEAD = re.compile(r"^\s*(?:how\s+to|what\s+(?:is|are))\s+", re.IGNORECASE)


def variants(target: Target, min_words: int = 2) -> list[str]:
    """The target's anchor phrases, best first: keyphrase, then secondary keywords; a
    leading "how to", "what is" or "what are" dropped; other questions left out."""
    out: list[str] = []
    seen: set[tuple[str, ...]] = set()
    for keyword in (target.keyphrase, *target.keywords):
        phrase = _LEAD.sub("", keyword).strip().rstrip("?").strip()
        words = TOKEN.findall(phrase)
        tokens = phrase_tokens(phrase)
        if (len(words) < min_words or not tokens or tokens in seen or is_question(phrase)
                or all(w.lower() in FUNCTION_WORDS for w in words)):
            continue
        seen.add(tokens)
        out.append(phrase)
    return out


def normalise_href(href: str) -> str:
    return href.strip().rstrip("/").lower()


def embedding_text(target: Target) -> str:
    return ". ".join(p for p in (target.title, target.keyphrase, ", ".join(target.keywords))
                     if p)


def choose_pillars(targets: Iterable[Target]) -> dict[int, int]:
    """cluster id → its pillar's id, for clusters of two pages or more."""
    by_cluster: dict[int, list[Target]] = defaultdict(list)
    for t in targets:
        if t.cluster_id is not None:
            by_cluster[t.cluster_id].append(t)
    return {
        cluster: max(pages, key=lambda t: (
            t.structure in PILLAR_STRUCTURES or t.content_type == "page", t.word_count,
            -t.id)).id
        for cluster, pages in by_cluster.items() if len(pages) > 1}


@dataclass(frozen=True, slots=True)
class Occurrence:
    rank: int  # 0 for the keyphrase, then the secondary keywords in order
    paragraph_index: int
    segment_index: int
    start: int
    end: int
    anchor: str


@dataclass(frozen=True, slots=True)
class Planned:
    link: Link
    placement: Placement
    score: float


@dataclass
class _Candidate:
    target: Target
    score: float
    by_paragraph: dict[int, Occurrence] = field(default_factory=dict)


class SiteIndex:
    """A site's content, embedded and with its anchors' automaton, ready to link."""

    def __init__(self, targets: Sequence[Target], *, embedder: Embedder,
                 config: LinkerConfig = LinkerConfig()) -> None:
        self.config = config
        self.targets = sorted(targets, key=lambda t: t.id)
        self.position = {t.id: i for i, t in enumerate(self.targets)}
        if len(self.position) != len(self.targets):
            raise ValueError("two targets share an id")
        vectors = embedder.embed_sync([embedding_text(t) for t in self.targets])
        self.vectors = np.asarray(vectors, dtype=np.float32).reshape(len(self.targets), -1)
        self.pillars = choose_pillars(self.targets)
        self.members: dict[int, list[int]] = defaultdict(list)
        for t in self.targets:
            if t.cluster_id is not None:
                self.members[t.cluster_id].append(t.id)
        self.by_href = {normalise_href(t.href): t.id for t in self.targets if t.href}
        self.automaton: TokenAutomaton[tuple[int, int]] = TokenAutomaton()
        self.variant_tokens: dict[int, list[tuple[str, ...]]] = {}
        for t in self.targets:
            phrases = [phrase_tokens(v) for v in variants(t, config.min_variant_words)]
            self.variant_tokens[t.id] = phrases
            for rank, tokens in enumerate(phrases):
                self.automaton.add(tokens, (t.id, rank))
        self.automaton.build()

    def __len__(self) -> int:
        return len(self.targets)

    def target(self, target_id: int) -> Target:
        return self.targets[self.position[target_id]]

    def is_pillar(self, target_id: int) -> bool:
        t = self.target(target_id)
        return t.cluster_id is not None and self.pillars.get(t.cluster_id) == t.id

    def scores(self, source_id: int, ids: Iterable[int] | None = None) -> dict[int, float]:
        """Other targets' scores for `source_id` (all, or those of `ids`), rounded so that
        the same input gives the same order."""
        source = self.target(source_id)
        wanted = [t for t in (self.targets if ids is None else map(self.target, ids))
                  if t.id != source_id]
        if not wanted:
            return {}
        rows = np.fromiter((self.position[t.id] for t in wanted), dtype=np.int64,
                           count=len(wanted))
        sims = self.vectors[rows] @ self.vectors[self.position[source_id]]
        pillar = self.pillars.get(source.cluster_id) if source.cluster_id is not None else None
        out: dict[int, float] = {}
        for t, sim in zip(wanted, sims.tolist(), strict=True):
            score = float(sim)
            if source.cluster_id is not None and t.cluster_id == source.cluster_id:
                score += self.config.cluster_boost
                if t.id == pillar:
                    score += self.config.pillar_boost
            out[t.id] = round(score, 6)
        return out

    def occurrences(self, source: Target, page: Page, exclude: set[int]
                    ) -> dict[int, list[Occurrence]]:
        """Where each target's variants occur in the source's eligible text."""
        own = phrase_tokens(source.keyphrase)
        own_automaton = _own_automaton(own)
        found: dict[int, list[Occurrence]] = defaultdict(list)
        for paragraph in page.paragraphs:
            if not paragraph.body or paragraph.linked:
                continue
            for s_index, segment in enumerate(paragraph.segments):
                if segment.linked:
                    continue
                words = _Words(segment.text, segment.first_words, own_automaton)
                for start, end, (tid, rank) in self.automaton.find(words.tokens):
                    if tid == source.id or tid in exclude:
                        continue
                    if own and self.variant_tokens[tid][rank] == own:
                        continue
                    span = words.span(start, end)
                    if span is None:
                        continue
                    a, b = span
                    found[tid].append(Occurrence(rank, paragraph.index, s_index, a, b,
                                                 segment.text[a:b]))
        return found

    def place(self, source_id: int, html: str, links: Sequence[Link]) -> list[Placement]:
        """Where given links go, each checked against the rules (`LinkRefused` names the
        link and the field that breaks one). An anchor is found as written (case aside)
        in its paragraph, at the first place the rules allow."""
        source = self.target(source_id)
        page = read_page(html)
        linked = self._linked(page, source_id)
        own_automaton = _own_automaton(phrase_tokens(source.keyphrase))
        placements: list[Placement] = []
        targets: set[int] = set()
        paragraphs: set[int] = set()
        for i, link in enumerate(links):
            tid, index = link.target_content_id, link.paragraph_index
            if tid not in self.position:
                raise LinkRefused(i, "target_content_id",
                                  f"Content {tid} is not content of this site.")
            if tid == source_id:
                raise LinkRefused(i, "target_content_id", "A content cannot link to itself.")
            if tid in linked or tid in targets:
                raise LinkRefused(i, "target_content_id",
                                  f"This content links to content {tid} already.")
            if index >= len(page.paragraphs) or not page.paragraphs[index].body:
                raise LinkRefused(i, "paragraph_index",
                                  f"Paragraph {index} is not a body paragraph.")
            if index in paragraphs or page.paragraphs[index].linked:
                raise LinkRefused(i, "paragraph_index", f"Paragraph {index} has a link already.")
            wanted = [w.lower() for w in TOKEN.findall(link.anchor)]
            spot = _find_anchor(page.paragraphs[index], wanted, own_automaton)
            if spot is None:
                raise LinkRefused(i, "anchor", (
                    f"{link.anchor!r} is not in paragraph {index} outside the first sentence, "
                    "existing links and the content's own keyphrase."))
            segment, a, b = spot
            targets.add(tid)
            paragraphs.add(index)
            placements.append(Placement(index, segment, a, b, self.target(tid).href))
        allowed = self._budget(source_id, page.word_count, linked)
        if len(links) > allowed:
            raise LinkRefused(None, "links", (
                f"At most {allowed} more links for {page.word_count} words "
                f"(5 per 1,000 words, {len(linked)} there already)."))
        return placements

    def _linked(self, page: Page, source_id: int) -> set[int]:
        """The site's contents the page links to already."""
        linked = {self.by_href[h] for h in map(normalise_href, page.hrefs) if h in self.by_href}
        linked.discard(source_id)
        return linked

    def _mandatory(self, source_id: int, linked: set[int]) -> list[int]:
        """A pillar's cluster pages it does not link yet (none for other pages)."""
        source = self.target(source_id)
        if not self.is_pillar(source_id) or source.cluster_id is None:
            return []
        return [m for m in self.members[source.cluster_id]
                if m != source_id and m not in linked]

    def _budget(self, source_id: int, words: int, linked: set[int]) -> int:
        """How many more links the source may take."""
        high = link_bounds(words, self.config)[1]
        return max(high - len(linked), len(self._mandatory(source_id, linked)), 0)

    def plan(self, source_id: int, html: str) -> list[Planned]:
        """The links to add to `source_id`'s `html`, in paragraph order."""
        source = self.target(source_id)
        page = read_page(html)
        linked = self._linked(page, source_id)
        low = link_bounds(page.word_count, self.config)[0]
        mandatory = self._mandatory(source_id, linked)
        budget = self._budget(source_id, page.word_count, linked)
        if budget <= 0:
            return []
        found = self.occurrences(source, page, linked | {source_id})
        scores = self.scores(source_id, sorted(found))
        candidates: dict[int, _Candidate] = {}
        for tid, occs in found.items():
            c = _Candidate(self.target(tid), scores[tid])
            for o in sorted(occs, key=lambda o: (o.rank, o.paragraph_index, o.start)):
                c.by_paragraph.setdefault(o.paragraph_index, o)
            candidates[tid] = c

        def ordered(ids: Iterable[int]) -> list[_Candidate]:
            return sorted((candidates[i] for i in ids if i in candidates),
                          key=lambda c: (-c.score, c.target.id))

        # A pillar links its cluster first; a page of a cluster links up to its pillar
        # first (when it has an anchor for it), whatever their similarity.
        up = [self.pillars[source.cluster_id]] if (
            source.cluster_id in self.pillars and not self.is_pillar(source_id)) else []
        first = ordered(mandatory) + ordered(up)
        rest = ordered(i for i in candidates if i not in {*mandatory, *up})
        queue = first + [c for c in rest if c.score >= self.config.min_score]
        assigned = _match(queue, budget)
        if len(assigned) + len(linked) < low:
            more = [c for c in rest if self.config.fill_score <= c.score < self.config.min_score]
            assigned = _match(queue + more, min(budget, low - len(linked)), keep=assigned)
        planned = []
        for tid, paragraph in assigned.items():
            c = candidates[tid]
            o = c.by_paragraph[paragraph]
            href = c.target.href
            planned.append(Planned(
                Link(tid, o.anchor, o.paragraph_index),
                Placement(o.paragraph_index, o.segment_index, o.start, o.end, href), c.score))
        return sorted(planned, key=lambda p: p.link.paragraph_index)

    def suggest(self, source_id: int, html: str) -> list[Link]:
        return [p.link for p in self.plan(source_id, html)]

    def apply(self, source_id: int, html: str) -> tuple[str, list[Link]]:
        planned = self.plan(source_id, html)
        return insert_links(html, [p.placement for p in planned]), [p.link for p in planned]


class LinkRefused(ValueError):
    """A given link that breaks a rule: which link (None: the list) and which field."""

    def __init__(self, index: int | None, field: str, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.field = field
        self.message = message


def _own_automaton(own: tuple[str, ...]) -> TokenAutomaton[int]:
    automaton: TokenAutomaton[int] = TokenAutomaton()
    if own:
        automaton.add(own, 0)
    return automaton.build()


class _Words:
    """One segment's words as the automaton reads them (articles left out), with what
    the rules forbid: the first sentence's words and the source's own keyphrase."""

    def __init__(self, text: str, first_words: int, own: TokenAutomaton[int]) -> None:
        self.spans = token_spans(text)
        self.kept = [i for i, (_, _, w) in enumerate(self.spans) if w.lower() not in ARTICLES]
        self.tokens = [match_stem(self.spans[i][2]) for i in self.kept]
        self.first_words = first_words
        self.blocked: set[int] = set()
        for start, end, _ in own.find(self.tokens):
            self.blocked.update(range(self.kept[start], self.kept[end - 1] + 1))

    def allowed(self, first: int, last: int) -> bool:
        """Words `first..last` (positions in `spans`) may carry a link."""
        return first >= self.first_words and not self.blocked.intersection(
            range(first, last + 1))

    def span(self, start: int, end: int) -> tuple[int, int] | None:
        """The characters of kept tokens `start:end`, when the rules allow them."""
        first, last = self.kept[start], self.kept[end - 1]
        if not self.allowed(first, last):
            return None
        return self.spans[first][0], self.spans[last][1]


def _find_anchor(paragraph: Paragraph, wanted: list[str], own: TokenAutomaton[int]
                 ) -> tuple[int, int, int] | None:
    """The first allowed place of the words `wanted` (lower case) in the paragraph's
    unlinked text: (segment, start, end)."""
    n = len(wanted)
    if not n:
        return None
    for s_index, segment in enumerate(paragraph.segments):
        if segment.linked:
            continue
        words = _Words(segment.text, segment.first_words, own)
        lower = [w.lower() for _, _, w in words.spans]
        for i in range(len(lower) - n + 1):
            if lower[i:i + n] == wanted and words.allowed(i, i + n - 1):
                return s_index, words.spans[i][0], words.spans[i + n - 1][1]
    return None


def _match(queue: list[_Candidate], budget: int,
           keep: dict[int, int] | None = None) -> dict[int, int]:
    """Candidates → paragraphs, one each and one per paragraph, best candidates first: a
    candidate is taken when some augmenting path frees a paragraph for it (so taking it
    never drops an earlier one). A paragraph fewer other candidates want is tried first."""
    owner: dict[int, int] = {}  # paragraph → target id
    assigned: dict[int, int] = {}  # target id → paragraph
    by_id = {c.target.id: c for c in queue}
    demand: dict[int, int] = defaultdict(int)
    for c in queue:
        for p in c.by_paragraph:
            demand[p] += 1

    def preference(c: _Candidate) -> list[int]:
        return sorted(c.by_paragraph, key=lambda p: (c.by_paragraph[p].rank, demand[p], p))

    def augment(tid: int, seen: set[int]) -> bool:
        for p in preference(by_id[tid]):
            if p in seen:
                continue
            seen.add(p)
            if p not in owner or augment(owner[p], seen):
                owner[p] = tid
                assigned[tid] = p
                return True
        return False

    for tid, p in (keep or {}).items():
        owner[p], assigned[tid] = tid, p
    for c in queue:
        if len(assigned) >= budget:
            break
        if c.target.id in assigned:
            continue
        augment(c.target.id, set())
    return assigned
