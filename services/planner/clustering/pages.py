"""The page level: inside one topic, which keywords one article targets.

Inside a topic its head words ("laminate flooring") are in almost every keyword and say
nothing about the page; what tells pages apart is the rest ("install", "cost", "vs
vinyl"). So a keyword's page vector weighs each of its words by how rare the word is in
its topic (the smooth inverse frequency weight a / (a + share)), modifiers included, and
adds character trigrams weighted the same way, so misspellings and spacing variants
("zuchini", "airfryer") meet their keyword. Pages are then average-linkage clusters at
`page_threshold`; existing clusters of the topic take part as frozen groups, so new
keywords join them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from services.planner.clustering.graph import (
    Labels,
    Matrix,
    average_linkage,
    spherical_kmeans,
    unit_rows,
)
from services.planner.clustering.vectors import Embed

# Smooth inverse frequency constant: a word in every keyword of the topic weighs
# 0.3 / 1.3 of a word in none.
SIF_A = 0.3
# Share of the page similarity from character trigrams (the rest from words).
TRIGRAM_SHARE = 0.5
# Topics above this many keywords are cut in chunks before their pages are made.
PAGE_CHUNK = 1500


class PageFeatures:
    """Word and trigram counts of every text of a run (sparse), and unit embeddings of
    its words: page vectors of any subset are then a few sparse products."""

    def __init__(self, embed: Embed, texts: Sequence[str]) -> None:
        index: dict[str, int] = {}
        rows, cols = [], []
        grams: dict[str, int] = {}
        trows, tcols = [], []
        for row, text in enumerate(texts):
            for w in text.split():
                rows.append(row)
                cols.append(index.setdefault(w, len(index)))
            padded = f" {text} "
            for i in range(len(padded) - 2):
                trows.append(row)
                tcols.append(grams.setdefault(padded[i : i + 3], len(grams)))
        n = len(texts)
        self.words = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, len(index))
        )
        self.trigrams = sp.csr_matrix(
            (np.ones(len(trows), dtype=np.float32), (trows, tcols)), shape=(n, len(grams))
        )
        vocab = sorted(index, key=index.__getitem__)
        self.word_vectors = (
            unit_rows(embed(vocab)) if vocab else np.zeros((0, 1), dtype=np.float32)
        )

    def vectors(self, rows: Sequence[int]) -> Matrix:
        """Page vectors of these texts, weighted by the shares of words and trigrams
        among them (the rows of one topic)."""
        sem = unit_rows(np.asarray(_weighted(self.words[rows]) @ self.word_vectors))
        tri = unit_rows(_weighted(self.trigrams[rows]).toarray())
        return unit_rows(
            np.hstack([sem * math.sqrt(1 - TRIGRAM_SHARE), tri * math.sqrt(TRIGRAM_SHARE)])
        )


def _weighted(counts: sp.csr_matrix) -> sp.csr_matrix:
    """Counts scaled per column by a / (a + share of rows holding the column)."""
    n = counts.shape[0]
    share = np.asarray((counts > 0).sum(axis=0)).ravel() / max(n, 1)
    return sp.csr_matrix(counts.multiply(SIF_A / (SIF_A + share)))


def _chunks(vectors: Matrix) -> list[Labels]:
    """The nodes of a large topic in chunks of similar ones (spherical k-means), each at
    most PAGE_CHUNK: average linkage is quadratic, and a page's keywords are close enough
    to land in one chunk."""
    n = vectors.shape[0]
    every = np.arange(n, dtype=np.int64)
    if n <= PAGE_CHUNK:
        return [every]
    k = math.ceil(n / (PAGE_CHUNK * 0.7))
    assign = spherical_kmeans(unit_rows(vectors), k, iterations=8, seed=11)
    out: list[Labels] = []
    for c in range(k):
        part = every[assign == c]
        out.extend(part[i : i + PAGE_CHUNK] for i in range(0, part.size, PAGE_CHUNK))
    return [p for p in out if p.size]


def topic_pages(
    rows: Sequence[int],
    existing: Sequence[Sequence[int]],
    features: PageFeatures,
    threshold: float,
    kinds: Sequence[int] | None = None,
) -> tuple[Labels, Labels, Matrix]:
    """Page labels of one topic's new keywords (`rows` of the features), which existing
    cluster (index into `existing`, whose items are rows too; -1 for none) each keyword's
    page joined, and the new keywords' page vectors."""
    all_rows = list(rows) + [r for group in existing for r in group]
    vectors = features.vectors(all_rows)
    n = len(rows)
    means = [vectors[:n]]
    sizes = [np.ones(n)]
    offset = n
    for group in existing:
        block = vectors[offset : offset + len(group)]
        offset += len(group)
        means.append(block.mean(axis=0, keepdims=True))
        sizes.append(np.array([float(len(group))]))
    node_means = np.ascontiguousarray(np.concatenate(means), dtype=np.float32)
    node_sizes = np.concatenate(sizes)
    frozen = np.zeros(node_means.shape[0], dtype=bool)
    frozen[n:] = True
    labels = np.arange(node_means.shape[0], dtype=np.int64)
    node_kinds = None
    if kinds is not None:
        node_kinds = np.concatenate([np.asarray(kinds, dtype=np.int64),
                                     np.full(len(existing), -1, dtype=np.int64)])
    for chunk in _chunks(node_means):
        local = average_linkage(node_means[chunk], node_sizes[chunk], threshold, frozen[chunk],
                                kind=None if node_kinds is None else node_kinds[chunk])
        labels[chunk] = chunk[local]
    joined = np.full(n, -1, dtype=np.int64)
    root_to_existing = {int(labels[n + e]): e for e in range(len(existing))}
    for i in range(n):
        joined[i] = root_to_existing.get(int(labels[i]), -1)
    _, dense = np.unique(labels[:n], return_inverse=True)
    return dense.astype(np.int64), joined, vectors[:n]
