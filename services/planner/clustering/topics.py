"""The topic level: which keywords belong to one subject (a topic groups pages).

Without anchors, topics are the clusters of the keywords' nearest-neighbour graph: its
leading eigenvectors (spectral clustering), as many as the largest gap in its spectrum
says (the eigengap heuristic), so their number comes from the data rather than from a
distance threshold. Lists above `bucket_limit` keywords are first split into buckets of
similar keywords (spherical k-means); each bucket gets its topics, and the pieces of one
topic (in two buckets, or split inside a bucket of near-identical keywords) are joined
by average linkage of the pieces. A topic that is two groups of keywords joined by few
links (a cut of low conductance in its own graph) is split in two.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from services.planner.clustering.config import ClusteringConfig
from services.planner.clustering.graph import (
    Labels,
    Matrix,
    average_linkage,
    coarse_graph,
    eigengap_k,
    group_sums,
    knn_graph,
    nearest,
    spectral_labels,
    spectrum,
    spherical_kmeans,
    split_count,
    weakest_cut,
)


def neighbours_for(n: int, degree: int) -> int:
    """Graph degree `degree`, fewer on short lists: a keyword of an 18-keyword list has
    5 or so true neighbours, not 15."""
    return max(2, min(degree, n // 4))


def max_topics_for(n: int, config: ClusteringConfig) -> int:
    """How far along the spectrum the eigengap is looked for."""
    return max(1, min(n, config.max_topics, max(8, n // 5)))


def spectral_topics(x: Matrix, config: ClusteringConfig, same: Labels | None = None) -> Labels:
    """Topic labels (dense, 0..k-1) of the rows of `x` (unit vectors).

    Rows with the same `same` label (keywords with the same topic words: "best dog food",
    "dog food near me") start as one group; near-duplicates are grouped with them
    (average linkage at `coarse_threshold`) and the
    keyword graph is summed over the groups: the spectrum of the smaller graph is that
    of the keyword graph restricted to vectors constant on each group, and it is several
    times cheaper. The eigengap is read on the graphs of `config.degrees` neighbours and
    the median taken: on lists whose topics are not far apart two gaps can be nearly
    equal, and one graph's choice between them is luck."""
    n = x.shape[0]
    if n <= 2:
        return np.zeros(n, dtype=np.int64)
    if same is None:
        same = np.arange(n, dtype=np.int64)
    _, seeds = np.unique(same, return_inverse=True)
    k0 = int(seeds.max()) + 1
    seed_sizes = np.bincount(seeds, minlength=k0).astype(np.float64)
    seed_means = (group_sums(x, seeds, k0) / seed_sizes[:, None]).astype(np.float32)
    merged = average_linkage(seed_means, seed_sizes, config.coarse_threshold)
    _, merged = np.unique(merged, return_inverse=True)
    groups = merged[seeds]
    sizes = np.bincount(groups).astype(np.float64)
    m = sizes.size
    if m == 1:
        return np.zeros(n, dtype=np.int64)
    # A keyword's neighbours are sought outside its own group: otherwise they would be
    # its variants, and a graph of variant cliques has no topic structure to read.
    degrees = sorted({neighbours_for(n, d) for d in config.degrees})
    idx, sims = nearest(x, degrees[-1], apart=groups)
    # A group's own cohesion, as self-loops: each keyword linked to (up to) a few of its
    # variants at the group's mean cosine. Without it, in a short list, a group whose only
    # neighbours are weak links to another topic is pulled to it by the normalisation.
    sums = group_sums(x, groups, m)
    cohesion = np.maximum((np.einsum("ij,ij->i", sums, sums) - sizes) /
                          np.maximum(sizes * (sizes - 1), 1), 0)
    loops = sizes * cohesion
    kmax = max_topics_for(m, config)
    middle = degrees[len(degrees) // 2]
    chosen = []
    spec = None
    mid_graph = None
    for d in degrees:
        graph = coarse_graph(knn_graph(idx, sims, d), groups)
        if m <= 2 * d:
            # Few groups: a keyword's d neighbours outside its group must include other
            # topics, so the group's own weight has to be there to hold it together.
            graph = (graph + sp.diags(loops * np.minimum(sizes - 1, config.group_loops))
                     ).tocsr()
        s = spectrum(graph, kmax, vectors=d == middle)
        chosen.append(eigengap_k(s, kmax))
        if d == middle:
            spec = s
            mid_graph = graph
    assert spec is not None
    assert mid_graph is not None
    k = max(int(np.median(chosen)), len(spec.values))
    labels = spectral_labels(spec, split_count(spec, k), config.link_threshold, sizes)
    if config.split_conductance > 0:
        labels = split_weak(mid_graph, labels, sums, sizes, config)
    return labels[groups]


def split_weak(graph: sp.csr_matrix, labels: Labels, sums: Matrix,
               sizes: npt.NDArray[np.float64], config: ClusteringConfig) -> Labels:
    """Split the topics that are two topics joined by few links.

    The spectral step can put two groups of keywords in one topic when they are linked
    to each other more than to the rest (brands a static embedding barely knows;
    software kinds sharing "software"). Such a topic's own graph has a cut of low
    conductance: its weakest sweep cut is taken when the conductance is below
    `split_conductance`, both sides hold at least `split_min` keywords, and their
    keywords' average cosine (`sums`: per node, the sum of its keywords' vectors) is
    below `split_similarity` (sides that similar would be one topic's pages). Repeated on
    the sides. Labels are per node of `graph`."""
    labels = labels.copy()
    nxt = int(labels.max()) + 1
    todo = list(range(nxt))
    while todo:
        t = todo.pop()
        idx = np.flatnonzero(labels == t)
        if sizes[idx].sum() < 2 * config.split_min:
            continue
        conductance, side = weakest_cut(graph[idx][:, idx])
        na, nb = sizes[idx[side]].sum(), sizes[idx[~side]].sum()
        if conductance >= config.split_conductance or min(na, nb) < config.split_min:
            continue
        similarity = float(sums[idx[side]].sum(axis=0) @ sums[idx[~side]].sum(axis=0))
        if similarity / (na * nb) >= config.split_similarity:
            continue
        labels[idx[side]] = nxt
        todo += [t, nxt]
        nxt += 1
    _, dense = np.unique(labels, return_inverse=True)
    return dense.astype(np.int64)


def bucketed_topics(x: Matrix, config: ClusteringConfig, same: Labels | None = None) -> Labels:
    """Spectral topics, bucket by bucket above `config.bucket_limit` keywords."""
    n = x.shape[0]
    if n <= config.bucket_limit:
        return spectral_topics(x, config, same)
    buckets = _buckets(x, np.arange(n, dtype=np.int64), config)
    labels = np.empty(n, dtype=np.int64)
    offset = 0
    for idx in buckets:
        local = spectral_topics(x[idx], config, None if same is None else same[idx])
        labels[idx] = local + offset
        count = int(local.max()) + 1
        offset += count
    return _join_pieces(x, labels, config)


def _buckets(x: Matrix, indices: Labels, config: ClusteringConfig, depth: int = 0) -> list[Labels]:
    """Split `indices` into buckets of at most `bucket_limit` similar rows."""
    if indices.size <= config.bucket_limit:
        return [indices]
    k = max(2, math.ceil(indices.size / config.bucket_size))
    assign = spherical_kmeans(x[indices], k, iterations=config.kmeans_iterations,
                              seed=config.seed + depth)
    parts = [indices[assign == c] for c in range(k)]
    parts = [p for p in parts if p.size]
    if len(parts) == 1 or depth > 8:
        step = config.bucket_size
        return [indices[s : s + step] for s in range(0, indices.size, step)]
    out: list[Labels] = []
    for part in parts:
        out.extend(_buckets(x, part, config, depth + 1))
    return out


def _join_pieces(x: Matrix, labels: Labels, config: ClusteringConfig) -> Labels:
    """Join the pieces of one topic that fell into different buckets, or that a bucket of
    near-identical keywords split: average linkage of the buckets' topics (their
    keywords' mean vectors) at `config.join_threshold`."""
    k = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=k).astype(np.float64)
    means = (group_sums(x, labels, k) / sizes[:, None]).astype(np.float32)
    joined = average_linkage(means, sizes, config.join_threshold)
    _, dense = np.unique(joined[labels], return_inverse=True)
    return dense.astype(np.int64)
