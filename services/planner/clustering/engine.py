"""The local engine: offline, deterministic, two levels (topics, then pages).

1. Vectors (vectors.py): topic vectors from the keyword's topic words and the whole
   keyword (WordLlama, offline).
2. Topics: anchored ones first (anchors.py: the user's topics, the sector's existing
   clusters, the seed library's sectors), then spectral clustering of the rest with the
   number of topics from the eigengap (topics.py). A topic is named after its anchor or
   after the phrase that best marks its keywords ("Massage Chairs").
3. Pages (pages.py): inside each topic, average linkage of page vectors; the topic's
   existing clusters take part as frozen groups and absorb close new keywords.

Same input, same output: keywords are de-duplicated and sorted first, the graph and
eigen-solvers start from fixed vectors, k-means is seeded, ties go to the lowest index.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from libs.common.ai.local import EMBEDDING_MODEL, LocalEmbedder
from services.planner.clustering.anchors import AnchorSeeds, assign_to_anchors
from services.planner.clustering.config import ClusteringConfig
from services.planner.clustering.graph import Labels
from services.planner.clustering.model import (
    Cluster,
    ClusteredKeyword,
    ClusteringResult,
    ExistingCluster,
    KeywordInput,
    TopicAnchor,
)
from services.planner.clustering.pages import PageFeatures, topic_pages
from services.planner.clustering.text import (
    display_name,
    group_by_text,
    normalize_keyword,
    phrases,
    surface_form,
    unique_name,
)
from services.planner.clustering.topics import bucketed_topics
from services.planner.clustering.vectors import Embed, keyword_vectors
from services.planner.intent import Intent, classify_intent, dominant_intent

PHASES = 4
_INTENT_ORDER = list(Intent)


@dataclass
class _Anchor:
    name: str
    texts: list[str]
    exclusive: bool
    existing: list[int]  # indices into the sorted existing clusters
    # Seeds that are keywords of the list stay with the anchor (not for sector hints).
    clamp: bool = True


def describe(name: str, members: Sequence[ClusteredKeyword], intent: Intent) -> str:
    """The description a new cluster is saved with. No count: the cluster's
    `keywords_count` follows its keywords, the saved text does not ("3 keywords about
    ..." beside a count of 4 once a later clustering added one)."""
    top = ", ".join(m.keyword.text for m in members[:3])
    return f"Keywords about {name.lower()}, mostly {intent.value} intent. Top: {top}."


def topic_phrase(members: Sequence[int], grams: Sequence[set[str]],
                 count: Counter[str], context: frozenset[str]) -> str:
    """The phrase that best marks a topic's keywords: the most of them contain it and
    the fewest other keywords do (coverage x precision); longer phrases win ties.
    Phrases with a `context` word (one in most keywords of the list, e.g. a suffix
    appended to every keyword) only count when nothing else does."""
    inside: Counter[str] = Counter()
    for i in members:
        inside.update(grams[i])
    plain = {p: c for p, c in inside.items() if not context.intersection(p.split())}
    candidates = plain or inside
    best, best_key = "", (-1.0, 0, "")
    size = len(members)
    for p, c in candidates.items():
        key = (round(c / size * c / count[p], 6), p.count(" "), p)
        if (key[0], key[1]) > (best_key[0], best_key[1]) or (
            (key[0], key[1]) == (best_key[0], best_key[1]) and p < best_key[2]
        ):
            best, best_key = p, key
    return best


class LocalClusteringEngine:
    """The default engine: offline, deterministic, thousands of keywords a second."""

    name = "local"

    def __init__(self, embed: Embed | None = None, config: ClusteringConfig | None = None) -> None:
        self._embed: Embed = embed or LocalEmbedder().embed_sync
        self.config = config or ClusteringConfig()
        self.model = EMBEDDING_MODEL if embed is None else "local-custom-embedding"

    def cluster(
        self,
        keywords: Sequence[KeywordInput],
        existing: Sequence[ExistingCluster] = (),
        *,
        anchors: Sequence[TopicAnchor] = (),
        progress: Callable[[int, int], None] | None = None,
    ) -> ClusteringResult:
        """Cluster `keywords` into pages grouped by topics.

        `existing` clusters of the sector anchor their topics and absorb close new
        keywords; `anchors` are the user's topics. `progress(done, total)` is called
        between phases (total = 4). Linear algebra runs on `config.blas_threads` threads:
        on a machine shared with other services more threads were slower, not faster."""
        with threadpool_limits(limits=self.config.blas_threads, user_api="blas"):
            return self._cluster(keywords, existing, anchors, progress)

    def _cluster(
        self,
        keywords: Sequence[KeywordInput],
        existing: Sequence[ExistingCluster],
        anchors: Sequence[TopicAnchor],
        progress: Callable[[int, int], None] | None,
    ) -> ClusteringResult:
        by_text = group_by_text(keywords)
        texts = sorted(by_text)
        existing_sorted = sorted(existing, key=lambda c: (str(c.name).lower(), str(c.id)))
        existing_texts = [
            sorted({t for t in (normalize_keyword(k) for k in c.keywords) if t})
            for c in existing_sorted
        ]
        if progress:
            progress(0, PHASES)
        if not texts:
            return ClusteringResult(clusters=(), model=self.model)

        anchor_list = self._anchors(by_text, texts, anchors, existing_sorted, existing_texts)
        n = len(texts)
        row_of = {t: i for i, t in enumerate(texts)}
        extra: list[str] = []
        seeds: list[AnchorSeeds] = []
        for a in anchor_list:
            rows = []
            for t in a.texts:
                if t not in row_of:
                    row_of[t] = n + len(extra)
                    extra.append(t)
                rows.append(row_of[t])
            seeds.append(AnchorSeeds(a.name, tuple(sorted(set(rows))), a.exclusive, a.clamp))
        vectors = keyword_vectors(texts + extra, self._embed, self.config.about_share)
        if progress:
            progress(1, PHASES)

        topic_of = assign_to_anchors(vectors.topic, vectors.words, n, seeds, self.config)
        free = np.flatnonzero(topic_of < 0)
        if free.size:
            about = [" ".join(vectors.words[int(i)]) for i in free]
            same = np.unique(np.array(about, dtype=object), return_inverse=True)[1]
            free_labels = bucketed_topics(vectors.topic[free], self.config, same)
            topic_of[free] = free_labels + len(anchor_list)
        topic_names = self._topic_names(topic_of, anchor_list, vectors.words[:n], texts)
        if progress:
            progress(2, PHASES)

        clusters = self._pages(by_text, texts, topic_of, topic_names, anchor_list,
                               existing_sorted, existing_texts)
        if progress:
            progress(4, PHASES)
        return ClusteringResult(clusters=tuple(clusters), model=self.model)

    # ----------------------------------------------------------------------------------

    def _anchors(
        self,
        by_text: dict[str, list[KeywordInput]],
        texts: Sequence[str],
        user: Sequence[TopicAnchor],
        existing: Sequence[ExistingCluster],
        existing_texts: Sequence[Sequence[str]],
    ) -> list[_Anchor]:
        """User anchors (exclusive), then platform anchors: the existing clusters grouped
        by topic and the seed-library sectors of keywords; same names are one anchor."""
        out: list[_Anchor] = []
        by_name: dict[str, _Anchor] = {}

        def add(name: str, seed_texts: Sequence[str], exclusive: bool) -> _Anchor:
            clean = " ".join(name.split())
            key = clean.lower()
            anchor = by_name.get(key)
            if anchor is None:
                anchor = _Anchor(clean, [], exclusive, [], True)
                by_name[key] = anchor
                out.append(anchor)
            anchor.exclusive = anchor.exclusive or exclusive
            for t in seed_texts:
                if t and t not in anchor.texts:
                    anchor.texts.append(t)
            return anchor

        for a in user:
            if not normalize_keyword(a.name) and not a.keywords:
                raise ValueError("a topic anchor needs a name or seed keywords")
            seeds = [normalize_keyword(k) for k in a.keywords] or [normalize_keyword(a.name)]
            add(a.name.strip() or display_name(seeds[0]), seeds, True)
        for i, (c, group) in enumerate(zip(existing, existing_texts, strict=True)):
            if group:
                add(c.topic.strip() or c.name, group, False).existing.append(i)
        hints: dict[str, list[str]] = {}
        for t in texts:
            for kw in by_text[t]:
                if kw.topic_hint.strip():
                    hints.setdefault(kw.topic_hint.strip(), []).append(t)
                    break
        # One sector behind every keyword says nothing about their topics.
        if not (len(hints) == 1 and len(next(iter(hints.values()))) == len(texts)):
            for name in sorted(hints, key=str.lower):
                add(name, hints[name], False).clamp = False
        return [a for a in out if a.texts]

    def _topic_names(self, topic_of: Labels, anchors: Sequence[_Anchor],
                     words: Sequence[Sequence[str]], texts: Sequence[str]) -> dict[int, str]:
        grams = [set(phrases(ws)) for ws in words]
        count: Counter[str] = Counter()
        word_count: Counter[str] = Counter()
        for ws, gs in zip(words, grams, strict=True):
            count.update(gs)
            word_count.update(set(ws))
        # Words in 80 % of the keywords or more are the list's context, not a topic.
        context = frozenset(w for w, c in word_count.items() if c >= 0.8 * len(words))
        names: dict[int, str] = {}
        taken: set[str] = set()
        for a, anchor in enumerate(anchors):
            names[a] = unique_name(anchor.name, taken)
        members: dict[int, list[int]] = {}
        for i, t in enumerate(topic_of):
            members.setdefault(int(t), []).append(i)
        for t in sorted(members):
            if t in names:
                continue
            phrase = topic_phrase(members[t], grams, count, context)
            shown = surface_form(phrase, (texts[i] for i in members[t]), context)
            names[t] = unique_name(display_name(shown), taken)
        return names

    def _pages(
        self,
        by_text: dict[str, list[KeywordInput]],
        texts: Sequence[str],
        topic_of: Labels,
        topic_names: dict[int, str],
        anchors: Sequence[_Anchor],
        existing: Sequence[ExistingCluster],
        existing_texts: Sequence[Sequence[str]],
    ) -> list[Cluster]:
        existing_rows: list[list[int]] = []
        all_texts = list(texts)
        for group in existing_texts:
            existing_rows.append(list(range(len(all_texts), len(all_texts) + len(group))))
            all_texts.extend(group)
        features = PageFeatures(self._embed, all_texts)
        taken = {c.name.lower() for c in existing}
        drafts: list[tuple[int, int, str, Cluster]] = []
        for t in sorted({int(x) for x in topic_of}):
            idx = np.flatnonzero(topic_of == t)
            topic_texts = [texts[int(i)] for i in idx]
            own = anchors[t].existing if t < len(anchors) else []
            kinds = None
            if self.config.page_per_intent:
                kinds = [_INTENT_ORDER.index(
                    dominant_intent((kw.intent or classify_intent(kw.text), kw.volume)
                                    for kw in by_text[texts[int(i)]])) for i in idx]
            labels, joined, vectors = topic_pages(
                [int(i) for i in idx], [existing_rows[e] for e in own], features,
                self.config.page_threshold, kinds,
            )
            for page in range(int(labels.max()) + 1):
                rows = np.flatnonzero(labels == page)
                centre = vectors[rows].mean(axis=0)
                score = vectors[rows] @ centre
                members = [ClusteredKeyword(kw, kw.intent or classify_intent(kw.text))
                           for r in rows for kw in by_text[topic_texts[r]]]
                members.sort(key=lambda m: (-m.keyword.volume, normalize_keyword(m.keyword.text)))
                volume = sum(max(0, m.keyword.volume) for m in members)
                intent = dominant_intent((m.intent, m.keyword.volume) for m in members)
                best = max(range(rows.size), key=lambda r: (
                    round(float(score[r]), 3),
                    max(k.volume for k in by_text[topic_texts[rows[r]]]),
                    -len(topic_texts[rows[r]]),
                ))
                rep = by_text[topic_texts[int(rows[best])]][0].text
                target = int(joined[rows[0]])
                joined_cluster = existing[own[target]] if target >= 0 else None
                drafts.append((
                    -volume,
                    -len(members),
                    normalize_keyword(rep),
                    Cluster(
                        name=joined_cluster.name if joined_cluster else display_name(rep.strip()),
                        description="",
                        keywords=tuple(members),
                        intent=intent,
                        volume=volume,
                        existing_id=joined_cluster.id if joined_cluster else None,
                        topic=topic_names[t],
                    ),
                ))
        drafts.sort(key=lambda d: d[:3])
        clusters: list[Cluster] = []
        for _, _, _, c in drafts:
            name = c.name if c.existing_id is not None else unique_name(c.name, taken)
            clusters.append(Cluster(
                name=name,
                description=describe(name, c.keywords, c.intent),
                keywords=c.keywords,
                intent=c.intent,
                volume=c.volume,
                existing_id=c.existing_id,
                topic=c.topic,
            ))
        return clusters
