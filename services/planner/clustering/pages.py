"""The page level: inside one topic, which keywords one article targets.

Inside a topic its head words ("laminate flooring") are in almost every keyword and say
nothing about the page; what tells pages apart is the rest ("install", "cost", "vs
vinyl"). So a keyword's page vector weighs each of its words by how rare the word is in
its topic (the smooth inverse frequency weight a / (a + share)), modifiers included, and
adds character trigrams so misspellings and spacing variants ("zuchini", "airfryer")
meet their keyword. Pages are then average-linkage clusters at `page_threshold`;
existing clusters of the topic take part as frozen groups, so new keywords join them.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Sequence

import numpy as np

from services.planner.clustering.graph import Labels, Matrix, average_linkage, unit_rows
from services.planner.clustering.vectors import Embed

# Smooth inverse frequency constant: a word in every keyword of the topic weighs
# 0.3 / 1.3 of a word in none.
SIF_A = 0.3
# Share of the page similarity from character trigrams (the rest from words).
TRIGRAM_SHARE = 0.5
TRIGRAM_DIM = 2048


class WordVectors:
    """Unit embeddings of single words, computed once per run."""

    def __init__(self, embed: Embed, texts: Sequence[str]) -> None:
        vocab = sorted({w for t in texts for w in t.split()})
        self.index = {w: i for i, w in enumerate(vocab)}
        self.vectors = unit_rows(embed(vocab)) if vocab else np.zeros((0, 1), np.float32)


def _weighted_rows(items: Sequence[Sequence[str]]) -> tuple[list[dict[str, float]], int]:
    """Per row, each distinct item weighted a / (a + share of rows holding it)."""
    n = len(items)
    share = Counter(x for row in items for x in set(row))
    rows = []
    for row in items:
        counts = Counter(row)
        rows.append({x: c * SIF_A / (SIF_A + share[x] / n) for x, c in counts.items()})
    return rows, n


def trigram_vectors(texts: Sequence[str]) -> Matrix:
    """Hashed character trigrams of " text ", each weighted by how rare it is among
    `texts` (a suffix on every keyword weighs little), unit rows."""
    grams = []
    for text in texts:
        padded = f" {text} "
        grams.append([padded[i : i + 3] for i in range(len(padded) - 2)])
    weighted, _ = _weighted_rows(grams)
    out = np.zeros((len(texts), TRIGRAM_DIM), dtype=np.float32)
    cache: dict[str, int] = {}
    for row, weights in enumerate(weighted):
        for gram, w in weights.items():
            col = cache.get(gram)
            if col is None:
                col = cache[gram] = zlib.crc32(gram.encode("utf-8")) % TRIGRAM_DIM
            out[row, col] += w
    return unit_rows(out)


def page_vectors(texts: Sequence[str], words: WordVectors) -> Matrix:
    """Page vectors of the keywords of one topic (normalised texts)."""
    weighted, n = _weighted_rows([t.split() for t in texts])
    dim = words.vectors.shape[1]
    sem = np.zeros((n, dim), dtype=np.float32)
    for row, weights in enumerate(weighted):
        for w, weight in weights.items():
            sem[row] += words.vectors[words.index[w]] * weight
    sem = unit_rows(sem)
    tri = trigram_vectors(texts)
    return unit_rows(
        np.hstack([sem * math.sqrt(1 - TRIGRAM_SHARE), tri * math.sqrt(TRIGRAM_SHARE)])
    )


def topic_pages(
    texts: Sequence[str],
    existing: Sequence[Sequence[str]],
    words: WordVectors,
    threshold: float,
) -> tuple[Labels, Labels, Matrix]:
    """Page labels of one topic's new keywords (`texts`), which existing cluster (index
    into `existing`, -1 for none) each keyword's page joined, and the page vectors."""
    all_texts = list(texts) + [t for group in existing for t in group]
    vectors = page_vectors(all_texts, words)
    n = len(texts)
    means = [vectors[:n]]
    sizes = [np.ones(n)]
    offset = n
    for group in existing:
        block = vectors[offset : offset + len(group)]
        offset += len(group)
        means.append(block.mean(axis=0, keepdims=True))
        sizes.append(np.array([float(len(group))]))
    node_means = np.ascontiguousarray(np.concatenate(means), dtype=np.float32)
    frozen = np.zeros(node_means.shape[0], dtype=bool)
    frozen[n:] = True
    labels = average_linkage(node_means, np.concatenate(sizes), threshold, frozen)
    joined = np.full(n, -1, dtype=np.int64)
    root_to_existing = {int(labels[n + e]): e for e in range(len(existing))}
    for i in range(n):
        joined[i] = root_to_existing.get(int(labels[i]), -1)
    _, dense = np.unique(labels[:n], return_inverse=True)
    return dense.astype(np.int64), joined, vectors[:n]
