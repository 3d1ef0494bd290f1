"""Keyword clustering: the offline engine (default) and the OpenAI-compatible one.

Local engine, in four steps (see docs/decisions/0010-clustering.md for the measurements):

1. Features. Each keyword is normalised (lower case, punctuation out) and split into
   *topic words* (what it is about) and *modifiers* (best, cheap, for women, how to...).
   Its vector joins a WordLlama embedding of the topic words (meaning: "kibble" is near
   "dog food") with its *anchor*: the longest run of 2+ topic words that at least
   `anchor_min_count` keywords of the list share ("trail running shoe" vs "running
   shoe"); an anchor that extends another leans away from it. The parts are weighted so
   a dot product is `w_e * cos(embedding) + w_a * anchor(a, b)` (hashed topic words can
   be mixed in too; they did not help on the dev split, so their weight is 0).
2. Average-linkage agglomerative clustering with a similarity threshold. With unit
   vectors, the average pairwise cosine of two groups is the dot product of their mean
   vectors, so groups are represented by (mean, size) and merged exactly.
3. Above `direct_limit` keywords: bucketed two-stage. Spherical k-means splits the list
   into buckets of at most `direct_limit`; each bucket is agglomerated; then the groups'
   means are agglomerated again (recursively while there are too many) with the same
   threshold, so a topic split between buckets is joined back.
4. Existing clusters take part as frozen groups (their keywords' mean): new keywords that
   reach the threshold join them; two existing clusters are never merged.

Names come from the most representative keyword (highest cosine to its cluster's mean);
intent from rules (`intent.py`). Same input, same output: keywords are de-duplicated and
sorted before anything else, hashing is process-independent and k-means is seeded.
"""

from __future__ import annotations

import itertools
import math
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field, field_validator

from libs.common.ai.base import ChatMessage, TextGenerator, Usage
from libs.common.ai.local import EMBEDDING_MODEL, LocalEmbedder
from libs.common.ai.structured import complete_json
from services.planner.intent import Intent, classify_intent, dominant_intent

Matrix = npt.NDArray[np.float32]
Embed = Callable[[Sequence[str]], Matrix]

# --------------------------------------------------------------------------------------
# Domain types


@dataclass(frozen=True, slots=True)
class KeywordInput:
    """A keyword to cluster. `ref` is the caller's handle (e.g. its database id)."""

    text: str
    volume: int = 0
    ref: Any = None


@dataclass(frozen=True, slots=True)
class ExistingCluster:
    """A cluster already in the sector: new keywords may join it."""

    id: Any
    name: str
    keywords: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ClusteredKeyword:
    keyword: KeywordInput
    intent: Intent


@dataclass(frozen=True, slots=True)
class Cluster:
    name: str
    description: str
    keywords: tuple[ClusteredKeyword, ...]
    intent: Intent
    volume: int
    # The existing cluster these keywords joined, or None for a new cluster.
    existing_id: Any = None


@dataclass(frozen=True, slots=True)
class ClusteringResult:
    clusters: tuple[Cluster, ...]
    model: str
    # Keywords the engine could not place (only the openai engine leaves any).
    unassigned: tuple[KeywordInput, ...] = ()
    usage: Usage = field(default_factory=Usage)

    def cluster_of(self) -> dict[str, int]:
        """Normalised keyword text -> index of its cluster in `clusters`."""
        return {
            normalize_keyword(ck.keyword.text): n
            for n, c in enumerate(self.clusters)
            for ck in c.keywords
        }


@dataclass(frozen=True, slots=True)
class ClusteringConfig:
    # Average cosine between two groups needed to merge them (tuned on the dev split of
    # bench/data/keywords_labelled.csv; see the decision record).
    threshold: float = 0.35
    # Shares of the similarity from the embedding and from the anchor; the rest (0 by
    # default: it did not help on the dev split) from hashed topic words.
    embedding_weight: float = 0.6
    # Largest list clustered in one agglomerative pass (memory ~ 4 * n^2 bytes).
    direct_limit: int = 2500
    # Target bucket size of the two-stage path.
    bucket_size: int = 1500
    lexical_dim: int = 1024
    anchor_weight: float = 0.4
    anchor_dim: int = 512
    anchor_min_count: int = 3
    anchor_min_share: float = 0.002
    anchor_min_words: int = 2
    anchor_contrast: float = 1.0
    # Clusters this small join their most similar larger cluster when the average
    # similarity reaches `absorb_threshold` (0 disables).
    absorb_max_size: int = 4
    absorb_threshold: float = 0.2
    kmeans_iterations: int = 8
    seed: int = 8


# --------------------------------------------------------------------------------------
# Text features

_NON_WORD = re.compile(r"[^0-9a-z]+")

MODIFIERS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "of",
        "for",
        "to",
        "in",
        "on",
        "at",
        "by",
        "with",
        "without",
        "from",
        "into",
        "near",
        "me",
        "my",
        "your",
        "our",
        "i",
        "you",
        "is",
        "are",
        "was",
        "be",
        "can",
        "do",
        "does",
        "did",
        "should",
        "how",
        "what",
        "why",
        "when",
        "where",
        "who",
        "which",
        "vs",
        "versus",
        "best",
        "top",
        "good",
        "great",
        "cheap",
        "cheapest",
        "affordable",
        "budget",
        "buy",
        "order",
        "purchase",
        "price",
        "prices",
        "cost",
        "costs",
        "sale",
        "deal",
        "deals",
        "discount",
        "online",
        "free",
        "review",
        "reviews",
        "rated",
        "compare",
        "comparison",
        "guide",
        "tutorial",
        "tips",
        "ideas",
        "examples",
        "example",
        "list",
        "new",
        "used",
        "vs",
        "2023",
        "2024",
        "2025",
        "2026",
        "near",
        "under",
        "over",
        "than",
        "more",
        "most",
        "much",
        "many",
        "long",
        "often",
        "get",
        "make",
        "use",
        "using",
        "need",
        "worth",
        "it",
        "women",
        "womens",
        "men",
        "mens",
        "kids",
        "beginners",
        "beginner",
        "easy",
        "simple",
        "quick",
        "fast",
    ]
)


def normalize_keyword(text: str) -> str:
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def group_by_text(keywords: Sequence[KeywordInput]) -> dict[str, list[KeywordInput]]:
    """Keywords by normalised text: spellings of the same keyword cluster as one."""
    by_text: dict[str, list[KeywordInput]] = {}
    for kw in keywords:
        norm = normalize_keyword(kw.text)
        if not norm:
            raise ValueError(f"keyword {kw.text!r} has no letters or digits")
        by_text.setdefault(norm, []).append(kw)
    return by_text


def _stem(word: str) -> str:
    if len(word) > 3 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def topic_words(normalized: str) -> list[str]:
    """The words that say what a keyword is about, stemmed; falls back to every word
    when a keyword is only modifiers ("best deals")."""
    words = normalized.split()
    core = [_stem(w) for w in words if w not in MODIFIERS]
    return core or [_stem(w) for w in words]


def _hash(token: str, dim: int) -> tuple[int, float]:
    h = zlib.crc32(token.encode("utf-8"))
    return h % dim, (1.0 if (h >> 31) & 1 else -1.0)


def _lexical_vectors(token_lists: Sequence[Sequence[str]], dim: int) -> Matrix:
    """IDF-weighted signed hashing of words and adjacent-word bigrams, L2-normalised."""
    features: list[list[str]] = []
    df: dict[str, int] = {}
    for words in token_lists:
        feats = list(dict.fromkeys([*words, *(f"{a}_{b}" for a, b in itertools.pairwise(words))]))
        features.append(feats)
        for f in feats:
            df[f] = df.get(f, 0) + 1
    n = max(1, len(token_lists))
    out = np.zeros((len(token_lists), dim), dtype=np.float32)
    cache: dict[str, tuple[int, float]] = {}
    for row, feats in enumerate(features):
        for f in feats:
            slot = cache.get(f)
            if slot is None:
                col, sign = _hash(f, dim)
                idf = math.log((1 + n) / (1 + df[f])) + 1.0
                slot = cache[f] = (col, sign * idf * (0.7 if "_" in f else 1.0))
            out[row, slot[0]] += slot[1]
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out /= norms
    return out


def _ngrams(words: Sequence[str], max_n: int) -> list[str]:
    return [
        " ".join(words[i : i + n]) for n in range(1, max_n + 1) for i in range(len(words) - n + 1)
    ]


def anchors(token_lists: Sequence[Sequence[str]], min_count: int, min_words: int = 1) -> list[str]:
    """Each keyword's anchor: its longest run of topic words shared by at least `min_count`
    keywords of the list (more shared wins a tie, then alphabetical). "best trail running
    shoes for women" anchors on "trail running shoe" when the list holds many trail running
    shoes, on "running shoe" when it does not. Empty when nothing qualifies."""
    grams = [list(dict.fromkeys(_ngrams(ws, 4))) for ws in token_lists]
    df: dict[str, int] = {}
    for gs in grams:
        for g in gs:
            df[g] = df.get(g, 0) + 1
    out = []
    for gs in grams:
        best = ""
        best_key: tuple[int, int, str] = (0, 0, "")
        for g in gs:
            count = df[g]
            n = g.count(" ") + 1
            if count < min_count or n < min_words:
                continue
            key = (n, count, g)
            if key[:2] > best_key[:2] or (key[:2] == best_key[:2] and g < best):
                best, best_key = g, key
        out.append(best)
    return out


def _anchor_table(anchor_list: Sequence[str], dim: int, contrast: float) -> dict[str, Matrix]:
    """One unit vector per distinct anchor (two hashed slots, so a collision costs half).

    An anchor that extends another anchor of the list ("trail running shoe" extends
    "running shoe") names a narrower topic: its vector leans away from the broader one by
    `contrast`, so the two groups need more meaning in common to be merged."""
    distinct = sorted({a for a in anchor_list if a})
    slots: dict[str, Matrix] = {}
    half = np.float32(math.sqrt(0.5))
    for a in distinct:
        v = np.zeros(dim, dtype=np.float32)
        for salt in ("#1", "#2"):
            col, sign = _hash(a + salt, dim)
            v[col] += sign * half
        slots[a] = v
    words_of = {a: a.split(" ") for a in distinct}
    table: dict[str, Matrix] = {}
    for a in distinct:
        v = slots[a].copy()
        if contrast > 0:
            padded = f" {a} "
            # Only anchors made of this anchor's words can be inside it.
            for b in {" ".join(g) for g in _ngrams_of(words_of[a])}:
                if b != a and b in slots and f" {b} " in padded:
                    v -= np.float32(contrast) * slots[b]
        norm = float(np.linalg.norm(v))
        table[a] = v / norm if norm else v
    return table


def _ngrams_of(words: Sequence[str]) -> list[list[str]]:
    return [list(words[i : i + n]) for n in range(1, len(words)) for i in range(len(words) - n + 1)]


def _normalize_in_place(m: Matrix) -> None:
    for start in range(0, m.shape[0], 8192):
        block = m[start : start + 8192]
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        block /= norms


def keyword_vectors(texts: Sequence[str], embed: Embed, config: ClusteringConfig) -> Matrix:
    """Unit vectors whose dot product is the engine's keyword similarity:
    `w_e * cos(embedding) + w_a * anchor(a, b) + w_l * cos(topic words)`."""
    token_lists = [topic_words(t) for t in texts]
    emb = embed([" ".join(ws) for ws in token_lists])
    we, wa = config.embedding_weight, config.anchor_weight
    wl = max(0.0, 1.0 - we - wa)
    d_e = emb.shape[1]
    d_a = config.anchor_dim if wa > 0 else 0
    d_l = config.lexical_dim if wl > 0 else 0
    out = np.zeros((len(texts), d_e + d_a + d_l), dtype=np.float32)
    np.multiply(emb, np.float32(math.sqrt(we)), out=out[:, :d_e])
    del emb
    if d_a:
        min_count = max(config.anchor_min_count, math.ceil(config.anchor_min_share * len(texts)))
        anchor_list = anchors(token_lists, min_count, config.anchor_min_words)
        table = _anchor_table(anchor_list, d_a, config.anchor_contrast)
        scale = np.float32(math.sqrt(wa))
        scaled = {a: v * scale for a, v in table.items()}
        block = out[:, d_e : d_e + d_a]
        for row, a in enumerate(anchor_list):
            if a:
                block[row] = scaled[a]
    if d_l:
        lex = _lexical_vectors(token_lists, d_l)
        np.multiply(lex, np.float32(math.sqrt(wl)), out=out[:, d_e + d_a :])
    _normalize_in_place(out)
    return out


# --------------------------------------------------------------------------------------
# Agglomeration


def average_linkage(
    means: Matrix,
    sizes: npt.NDArray[np.float64],
    threshold: float,
    frozen: npt.NDArray[np.bool_] | None = None,
) -> npt.NDArray[np.int64]:
    """Average-linkage clustering of groups given by their mean unit vector and size.

    Merges the most similar pair while its similarity (mean . mean) reaches `threshold`;
    two frozen groups are never merged. Returns a label per group (the index of the
    group's surviving representative). Ties break on the lowest index: deterministic.
    """
    n = means.shape[0]
    labels = np.arange(n, dtype=np.int64)
    if n < 2:
        return labels
    neg = np.float32(-np.inf)
    sim = means @ means.T
    np.fill_diagonal(sim, neg)
    frz = np.zeros(n, dtype=bool) if frozen is None else frozen.copy()
    if frz.any():
        sim[np.ix_(frz, frz)] = neg
    size = sizes.astype(np.float64).copy()
    row_arg = sim.argmax(axis=1)
    row_max = sim[np.arange(n), row_arg]
    parent = np.arange(n, dtype=np.int64)
    thr = np.float32(threshold)
    while True:
        i = int(row_max.argmax())
        if not row_max[i] >= thr:
            break
        j = int(row_arg[i])
        a, b = (i, j) if i < j else (j, i)
        wa, wb = size[a], size[b]
        new = ((sim[a] * wa + sim[b] * wb) / (wa + wb)).astype(np.float32)
        size[a] = wa + wb
        parent[b] = a
        if frz[b]:
            frz[a] = True
        if frz[a]:
            new[frz] = neg
        new[a] = neg
        new[b] = neg
        sim[b, :] = neg
        sim[:, b] = neg
        sim[a, :] = new
        sim[:, a] = new
        row_max[b] = neg
        row_arg[a] = int(new.argmax())
        row_max[a] = new[row_arg[a]]
        stale = np.flatnonzero((row_arg == a) | (row_arg == b))
        stale = stale[stale != a]
        if stale.size:
            sub = sim[stale]
            row_arg[stale] = sub.argmax(axis=1)
            row_max[stale] = sub[np.arange(stale.size), row_arg[stale]]
        better = new > row_max
        better[a] = False
        if better.any():
            row_max[better] = new[better]
            row_arg[better] = a
    for k in range(n):
        r = k
        while parent[r] != r:
            r = parent[r]
        labels[k] = r
    return labels


def absorb_small(
    labels: npt.NDArray[np.int64],
    means: Matrix,
    sizes: npt.NDArray[np.float64],
    frozen: npt.NDArray[np.bool_],
    config: ClusteringConfig,
) -> npt.NDArray[np.int64]:
    """Fold clusters of at most `absorb_max_size` into their most similar larger cluster
    when the average similarity reaches `absorb_threshold`. Clusters holding an existing
    cluster are never folded away."""
    if config.absorb_max_size <= 0:
        return labels
    roots, inverse = np.unique(labels, return_inverse=True)
    k = roots.size
    sums = np.zeros((k, means.shape[1]), dtype=np.float64)
    for start in range(0, labels.size, 4096):
        part = slice(start, start + 4096)
        np.add.at(sums, inverse[part], means[part] * sizes[part, None])
    weight = np.zeros(k, dtype=np.float64)
    np.add.at(weight, inverse, sizes)
    has_frozen = np.zeros(k, dtype=bool)
    np.logical_or.at(has_frozen, inverse, frozen)
    centres = (sums / weight[:, None]).astype(np.float32)
    small = np.flatnonzero((weight <= config.absorb_max_size) & ~has_frozen)
    large = np.flatnonzero((weight > config.absorb_max_size) | has_frozen)
    if small.size == 0 or large.size == 0:
        return labels
    target = np.arange(k)
    for start in range(0, small.size, 4096):
        chunk = small[start : start + 4096]
        sim = centres[chunk] @ centres[large].T
        best = sim.argmax(axis=1)
        ok = sim[np.arange(chunk.size), best] >= config.absorb_threshold
        target[chunk[ok]] = large[best[ok]]
    return roots[target][inverse]


def spherical_kmeans(x: Matrix, k: int, *, iterations: int, seed: int) -> npt.NDArray[np.int64]:
    """Deterministic spherical k-means (k-means++ seeding from a fixed seed)."""
    n = x.shape[0]
    if k <= 1 or n <= k:
        return np.zeros(n, dtype=np.int64) if k <= 1 else np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    centers = np.empty((k, x.shape[1]), dtype=np.float32)
    first = int(rng.integers(n))
    centers[0] = x[first]
    dist = 1.0 - x @ centers[0]
    for c in range(1, k):
        p = np.clip(dist, 0, None).astype(np.float64)
        total = p.sum()
        pick = int(rng.choice(n, p=p / total)) if total > 0 else int(rng.integers(n))
        centers[c] = x[pick]
        dist = np.minimum(dist, 1.0 - x @ centers[c])
    assign = np.zeros(n, dtype=np.int64)
    for _ in range(iterations):
        assign = (x @ centers.T).argmax(axis=1)
        sums = np.zeros_like(centers)
        np.add.at(sums, assign, x)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        empty = norms[:, 0] == 0
        norms[empty] = 1.0
        new_centers = sums / norms
        new_centers[empty] = centers[empty]
        centers = new_centers.astype(np.float32)
    return assign


def _buckets(
    x: Matrix, indices: npt.NDArray[np.int64], config: ClusteringConfig, depth: int = 0
) -> list[npt.NDArray[np.int64]]:
    """Split `indices` into buckets of at most `direct_limit` similar rows."""
    if indices.size <= config.direct_limit:
        return [indices]
    k = max(2, math.ceil(indices.size / config.bucket_size))
    unit = x[indices]
    norms = np.linalg.norm(unit, axis=1, keepdims=True)
    if not np.allclose(norms, 1.0, atol=1e-3):
        unit = unit / np.maximum(norms, 1e-12)
    assign = spherical_kmeans(
        np.ascontiguousarray(unit, dtype=np.float32),
        k,
        iterations=config.kmeans_iterations,
        seed=config.seed + depth,
    )
    parts = [indices[assign == c] for c in range(k)]
    parts = [p for p in parts if p.size]
    if len(parts) == 1 or depth > 8:
        # k-means could not split it: fall back to contiguous chunks (input is sorted).
        step = config.bucket_size
        return [indices[s : s + step] for s in range(0, indices.size, step)]
    out: list[npt.NDArray[np.int64]] = []
    for part in parts:
        out.extend(_buckets(x, part, config, depth + 1))
    return out


def cluster_groups(
    means: Matrix,
    sizes: npt.NDArray[np.float64],
    frozen: npt.NDArray[np.bool_],
    config: ClusteringConfig,
) -> npt.NDArray[np.int64]:
    """Cluster groups (means + sizes); a label per group. Direct when small enough,
    otherwise bucketed agglomeration followed by agglomeration of the resulting groups."""
    n = means.shape[0]
    if n <= config.direct_limit:
        return average_linkage(means, sizes, config.threshold, frozen)
    labels = np.empty(n, dtype=np.int64)
    next_label = 0
    group_means: list[Matrix] = []
    group_sizes: list[float] = []
    group_frozen: list[bool] = []
    for bucket in _buckets(means, np.arange(n, dtype=np.int64), config):
        local = average_linkage(means[bucket], sizes[bucket], config.threshold, frozen[bucket])
        for root in np.unique(local):
            members = bucket[local == root]
            w = sizes[members]
            labels[members] = next_label
            next_label += 1
            group_sizes.append(float(w.sum()))
            group_means.append((means[members] * w[:, None]).sum(axis=0) / w.sum())
            group_frozen.append(bool(frozen[members].any()))
    if next_label >= n * 0.9 and next_label > config.direct_limit:
        # Buckets no longer shrink the problem: stop here rather than loop.
        return labels
    second = cluster_groups(
        np.asarray(group_means, dtype=np.float32),
        np.asarray(group_sizes, dtype=np.float64),
        np.asarray(group_frozen, dtype=bool),
        config,
    )
    return second[labels]


# --------------------------------------------------------------------------------------
# Naming

_SMALL_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "as",
        "at",
        "by",
        "for",
        "in",
        "of",
        "on",
        "or",
        "the",
        "to",
        "vs",
        "with",
        "from",
    ]
)


def display_name(keyword: str) -> str:
    """Title case for a cluster name, leaving small words and mixed-case words alone."""
    words = " ".join(keyword.split()).split(" ")
    out = []
    for n, w in enumerate(words):
        if w.islower() and (n == 0 or w not in _SMALL_WORDS):
            out.append(w[:1].upper() + w[1:])
        else:
            out.append(w)
    return " ".join(out)


def _unique_name(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate.lower() in taken:
        candidate = f"{name} {n}"
        n += 1
    taken.add(candidate.lower())
    return candidate


def describe(name: str, members: Sequence[ClusteredKeyword], intent: Intent) -> str:
    top = ", ".join(m.keyword.text for m in members[:3])
    noun = "keyword" if len(members) == 1 else "keywords"
    return f"{len(members)} {noun} about {name.lower()}, mostly {intent.value} intent. Top: {top}."


# --------------------------------------------------------------------------------------
# The local engine


class LocalClusteringEngine:
    """The default engine: offline, deterministic, ~10^4 keywords a second."""

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
        progress: Callable[[int, int], None] | None = None,
    ) -> ClusteringResult:
        """Cluster `keywords`; those close enough to an `existing` cluster join it.

        `progress(done, total)` is called between phases (total = 4)."""
        by_text = group_by_text(keywords)
        texts = sorted(by_text)
        existing_sorted = sorted(existing, key=lambda c: (str(c.name).lower(), str(c.id)))
        existing_texts = [
            sorted({normalize_keyword(k) for k in c.keywords if normalize_keyword(k)})
            for c in existing_sorted
        ]
        if progress:
            progress(0, 4)
        if not texts:
            return ClusteringResult(clusters=(), model=self.model)

        all_texts = texts + [t for group in existing_texts for t in group]
        vectors = keyword_vectors(all_texts, self._embed, self.config)
        if progress:
            progress(1, 4)

        n_new = len(texts)
        means = [vectors[:n_new]]
        sizes = [np.ones(n_new)]
        frozen = [np.zeros(n_new, dtype=bool)]
        offset = n_new
        existing_node: list[int] = []
        for group in existing_texts:
            if not group:
                existing_node.append(-1)
                continue
            block = vectors[offset : offset + len(group)]
            offset += len(group)
            existing_node.append(n_new + len(existing_node) - existing_node.count(-1))
            means.append(block.mean(axis=0, keepdims=True))
            sizes.append(np.array([float(len(group))]))
            frozen.append(np.array([True]))
        node_means = np.ascontiguousarray(np.concatenate(means), dtype=np.float32)
        node_sizes = np.concatenate(sizes)
        node_frozen = np.concatenate(frozen)
        labels = cluster_groups(node_means, node_sizes, node_frozen, self.config)
        labels = absorb_small(labels, node_means, node_sizes, node_frozen, self.config)
        if progress:
            progress(2, 4)

        node_to_existing = {
            node: c for node, c in zip(existing_node, existing_sorted, strict=True) if node >= 0
        }
        existing_of_label: dict[int, ExistingCluster] = {
            int(labels[node]): c for node, c in node_to_existing.items()
        }
        groups: dict[int, list[int]] = {}
        for idx in range(n_new):
            groups.setdefault(int(labels[idx]), []).append(idx)

        taken = {c.name.lower() for c in existing_sorted}
        drafts: list[tuple[int, int, str, Cluster]] = []
        for label, members in groups.items():
            rows = vectors[members]
            joined = existing_of_label.get(label)
            if joined is not None:
                node = next(n for n, c in node_to_existing.items() if c is joined)
                centre = (rows.sum(axis=0) + node_means[node] * node_sizes[node]) / (
                    len(members) + node_sizes[node]
                )
            else:
                centre = rows.mean(axis=0)
            score = rows @ centre
            members_kw = [
                ClusteredKeyword(kw, classify_intent(kw.text))
                for idx in members
                for kw in by_text[texts[idx]]
            ]
            members_kw.sort(key=lambda m: (-m.keyword.volume, normalize_keyword(m.keyword.text)))
            volume = sum(max(0, m.keyword.volume) for m in members_kw)
            intent = dominant_intent((m.intent, m.keyword.volume) for m in members_kw)
            best = max(
                range(len(members)),
                key=lambda r: (
                    round(float(score[r]), 3),
                    max(k.volume for k in by_text[texts[members[r]]]),
                    -len(texts[members[r]]),
                ),
            )
            rep = by_text[texts[members[best]]][0].text
            drafts.append(
                (
                    -volume,
                    -len(members_kw),
                    normalize_keyword(rep),
                    Cluster(
                        name=joined.name if joined is not None else display_name(rep.strip()),
                        description="",
                        keywords=tuple(members_kw),
                        intent=intent,
                        volume=volume,
                        existing_id=joined.id if joined is not None else None,
                    ),
                )
            )
        drafts.sort(key=lambda d: d[:3])
        clusters: list[Cluster] = []
        for _, _, _, c in drafts:
            name = c.name if c.existing_id is not None else _unique_name(c.name, taken)
            clusters.append(
                Cluster(
                    name=name,
                    description=describe(name, c.keywords, c.intent),
                    keywords=c.keywords,
                    intent=c.intent,
                    volume=c.volume,
                    existing_id=c.existing_id,
                )
            )
        if progress:
            progress(4, 4)
        return ClusteringResult(clusters=tuple(clusters), model=self.model)


# --------------------------------------------------------------------------------------
# The OpenAI-compatible engine: the original IGNY8 JSON contract

KEYWORDS_PLACEHOLDER = "[IGNY8_KEYWORDS]"

DEFAULT_CLUSTERING_PROMPT = (
    "Group these search keywords into topic clusters; each cluster becomes one pillar page. "
    "Use every keyword exactly once, spelled as given. Answer with a JSON object "
    '{"clusters": [{"name": "...", "description": "...", "keywords": ["..."]}]}.\n\n'
    "Keywords:\n" + KEYWORDS_PLACEHOLDER
)


class AIClusterSpec(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    description: str = ""
    keywords: list[str] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _strip(cls, v: str) -> str:
        v = " ".join(v.split())
        if not v:
            raise ValueError("name must not be blank")
        return v


class AIClusteringAnswer(BaseModel):
    clusters: list[AIClusterSpec] = Field(min_length=1)


def render_prompt(template: str, keywords: Sequence[str]) -> str:
    listing = "\n".join(f"- {k}" for k in keywords)
    if KEYWORDS_PLACEHOLDER in template:
        return template.replace(KEYWORDS_PLACEHOLDER, listing)
    return f"{template.rstrip()}\n\nKeywords:\n{listing}"


class OpenAIClusteringEngine:
    """Clusters through a chat model. The answer must follow the contract and name only
    keywords from the input; one repair retry, then `AIResponseInvalid` (full refund)."""

    name = "openai"

    def __init__(
        self,
        provider: TextGenerator,
        prompt: str = DEFAULT_CLUSTERING_PROMPT,
        *,
        model: str | None = None,
    ) -> None:
        self.provider = provider
        self.prompt = prompt
        self.model = model

    async def cluster(
        self, keywords: Sequence[KeywordInput], existing: Sequence[ExistingCluster] = ()
    ) -> ClusteringResult:
        by_text = group_by_text(keywords)
        if not by_text:
            return ClusteringResult(clusters=(), model=self.model or "openai")
        shown = [by_text[t][0].text.strip() for t in sorted(by_text)]
        prompt = render_prompt(self.prompt, shown)
        if existing:
            prompt += (
                "\n\nExisting clusters (reuse a name exactly to add keywords to it):\n"
                + "\n".join(f"- {c.name}" for c in existing)
            )

        def check(answer: AIClusteringAnswer) -> None:
            unknown = [
                k
                for c in answer.clusters
                for k in c.keywords
                if normalize_keyword(k) not in by_text
            ]
            if unknown:
                raise ValueError(
                    "these keywords are not in the input: "
                    + ", ".join(repr(k) for k in unknown[:10])
                )

        answer = await complete_json(
            self.provider,
            [ChatMessage("user", prompt)],
            AIClusteringAnswer,
            check=check,
            model=self.model,
        )
        existing_by_name = {c.name.lower(): c for c in existing}
        placed: set[str] = set()
        merged: dict[str, tuple[AIClusterSpec, list[KeywordInput]]] = {}
        for spec in answer.value.clusters:
            members: list[KeywordInput] = []
            for k in spec.keywords:
                norm = normalize_keyword(k)
                if norm in placed:
                    continue  # a keyword named twice stays in its first cluster
                placed.add(norm)
                members.extend(by_text[norm])
            if not members:
                continue
            key = spec.name.lower()
            if key in merged:
                merged[key][1].extend(members)
            else:
                merged[key] = (spec, members)
        taken = {c.name.lower() for c in existing}
        clusters: list[Cluster] = []
        for key, (spec, members) in merged.items():
            joined = existing_by_name.get(key)
            ck = [ClusteredKeyword(m, classify_intent(m.text)) for m in members]
            ck.sort(key=lambda m: (-m.keyword.volume, normalize_keyword(m.keyword.text)))
            name = joined.name if joined else _unique_name(spec.name[:255], taken)
            clusters.append(
                Cluster(
                    name=name,
                    description=spec.description.strip(),
                    keywords=tuple(ck),
                    intent=dominant_intent((m.intent, m.keyword.volume) for m in ck),
                    volume=sum(max(0, m.keyword.volume) for m in ck),
                    existing_id=joined.id if joined else None,
                )
            )
        unassigned = tuple(kw for t in sorted(by_text) if t not in placed for kw in by_text[t])
        return ClusteringResult(
            clusters=tuple(clusters), model=answer.model, unassigned=unassigned, usage=answer.usage
        )
