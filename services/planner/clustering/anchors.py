"""Anchored topics: topics named in advance by the user or by the platform.

An anchor is a topic name with seed texts: the user's seed keywords (or the name itself),
the keywords of the sector's existing clusters of that topic, or keywords added from the
seed library under one industry/sector. A keyword's affinity to an anchor adds up three
signals, each measured on the tuning set (see the decision record):

- the cosine between the keyword and the mean of the anchor's seeds (topic vectors);
- label spreading from the seeds over the keywords' nearest-neighbour graph (a keyword
  whose neighbours lean to an anchor leans too);
- words of the anchor's seeds that no other anchor's seeds have ("massage" for "massage
  chairs" when the other anchors are "office chairs" and "standing desks").

User anchors are exclusive: the user gets exactly those topics, every keyword goes to
its best anchor unless it is unrelated to all of them (then it gets topics of its own).
Platform anchors only take the keywords that are close to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from services.planner.clustering.config import ClusteringConfig
from services.planner.clustering.graph import Labels, Matrix, knn_graph, nearest, unit_rows
from services.planner.clustering.topics import neighbours_for

# Label spreading: share of a keyword's score taken from its neighbours, and rounds.
SPREAD_ALPHA = 0.5
SPREAD_ROUNDS = 30


@dataclass(frozen=True, slots=True)
class AnchorSeeds:
    """One anchor as the topic step sees it: seed rows of the vector matrix."""

    name: str
    rows: tuple[int, ...]
    exclusive: bool
    clamp: bool = True


def distinctive_votes(words: Sequence[Sequence[str]], n: int,
                      anchors: Sequence[AnchorSeeds]) -> Matrix:
    """votes[i, a]: how many of keyword i's topic words occur in the seeds of anchor a
    and of no other anchor."""
    owner: dict[str, set[int]] = {}
    for a, anchor in enumerate(anchors):
        for row in anchor.rows:
            for w in words[row]:
                owner.setdefault(w, set()).add(a)
    votes = np.zeros((n, len(anchors)), dtype=np.float32)
    for i in range(n):
        for w in set(words[i]):
            o = owner.get(w)
            if o is not None and len(o) == 1:
                votes[i, next(iter(o))] += 1.0
    return votes


def spread(graph: sp.csr_matrix, seeds: Matrix) -> Matrix:
    """Label spreading (Zhou et al. 2004): F <- alpha S F + (1 - alpha) Y."""
    deg = np.asarray(graph.sum(axis=1)).ravel()
    dm = 1.0 / np.sqrt(np.maximum(deg, 1e-12))
    s = sp.diags(dm) @ graph @ sp.diags(dm)
    f = seeds.copy()
    for _ in range(SPREAD_ROUNDS):
        f = SPREAD_ALPHA * (s @ f) + (1 - SPREAD_ALPHA) * seeds
    return np.asarray(f, dtype=np.float32)


def anchor_scores(x: Matrix, words: Sequence[Sequence[str]], n: int,
                  anchors: Sequence[AnchorSeeds], config: ClusteringConfig
                  ) -> tuple[Matrix, Matrix, Matrix]:
    """(total score, centroid cosine, distinctive votes) of the first `n` rows (the list's
    keywords) for each anchor. Rows after `n` are seed texts that are not in the list."""
    k = len(anchors)
    cent = np.zeros((k, x.shape[1]), dtype=np.float32)
    for a, anchor in enumerate(anchors):
        cent[a] = x[list(anchor.rows)].mean(axis=0)
    cent = unit_rows(cent)
    cos = x[:n] @ cent.T
    total = x.shape[0]
    y = np.zeros((total, k), dtype=np.float32)
    for a, anchor in enumerate(anchors):
        y[list(anchor.rows), a] = 1.0
    degree = neighbours_for(total, config.neighbours)
    idx, sims = nearest(x, degree)
    f = spread(knn_graph(idx, sims, degree), y)[:n]
    f /= np.maximum(f.sum(axis=1, keepdims=True), 1e-12)
    votes = distinctive_votes(words, n, anchors)
    score = cos + f + config.anchor_vote_weight * votes
    return score, cos, votes


def assign_to_anchors(x: Matrix, words: Sequence[Sequence[str]], n: int,
                      anchors: Sequence[AnchorSeeds], config: ClusteringConfig) -> Labels:
    """The anchor of each of the first `n` rows, or -1 when the keyword is left to the
    unsupervised topics. A list keyword that is an anchor's seed stays with it (unless
    the anchor does not clamp: seed-library sectors are a hint, not a verdict)."""
    out = np.full(n, -1, dtype=np.int64)
    if not anchors or n == 0:
        return out
    score, cos, votes = anchor_scores(x, words, n, anchors, config)
    best = score.argmax(axis=1)
    rows = np.arange(n)
    best_cos = cos[rows, best]
    voted = votes[rows, best] > 0
    exclusive = np.array([a.exclusive for a in anchors])[best]
    take = np.where(
        exclusive,
        voted | (best_cos >= config.anchor_floor),
        (best_cos >= config.anchor_join) | (voted & (best_cos >= config.anchor_floor)),
    )
    out[take] = best[take]
    for a, anchor in enumerate(anchors):
        if anchor.clamp:
            for row in anchor.rows:
                if row < n:
                    out[row] = a
    return out
