"""Graph machinery: nearest-neighbour graphs, their spectrum, spectral clusters, average
linkage and spherical k-means. Pure numpy/scipy, deterministic (fixed start vectors and
seeds, ties broken on the lowest index)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.linalg
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import eigsh

Matrix = npt.NDArray[np.float32]
Labels = npt.NDArray[np.int64]

# Rows of the similarity matrix computed at once when building a neighbour graph.
_BLOCK = 2048
# Components up to this size get a dense eigendecomposition (faster than Lanczos there).
_DENSE_LIMIT = 1500


def nearest(x: Matrix, k: int, apart: Labels | None = None) -> tuple[Labels, Matrix]:
    """Each row's k nearest other rows (by cosine, best first; ties to the lowest index)
    and their cosines, not counting rows of its own `apart` label. Computed in blocks of
    rows to bound memory."""
    n = x.shape[0]
    k = min(k, n - 1)
    idx = np.zeros((n, max(k, 0)), dtype=np.int64)
    sims = np.zeros((n, max(k, 0)), dtype=np.float32)
    if k <= 0:
        return idx, sims
    for start in range(0, n, _BLOCK):
        sim = x[start : start + _BLOCK] @ x.T
        m = sim.shape[0]
        sim[np.arange(m), np.arange(start, start + m)] = -np.inf
        if apart is not None:
            sim[apart[start : start + m, None] == apart[None, :]] = -np.inf
        if k < n - 1:
            part = np.argpartition(-sim, k, axis=1)[:, :k]
        else:
            part = np.tile(np.arange(n), (m, 1))
        part_sims = np.take_along_axis(sim, part, axis=1)
        # Best first; equal cosines in index order (lexsort: last key first).
        order = np.lexsort((part, -part_sims), axis=1)
        top = np.take_along_axis(part, order, axis=1)[:, :k]
        idx[start : start + m] = top
        sims[start : start + m] = np.take_along_axis(sim, top, axis=1)
    return idx, sims


def knn_graph(idx: Labels, sims: Matrix, k: int) -> sp.csr_matrix:
    """Symmetric k-nearest-neighbour graph from `nearest`'s answer, weighted by cosine
    (negative cosines count ~0). An edge exists when either end has the other among its
    k nearest."""
    n = idx.shape[0]
    k = min(k, idx.shape[1])
    rows = np.repeat(np.arange(n), k)
    w = np.maximum(sims[:, :k].ravel(), 0.0).astype(np.float64) + 1e-6
    a = sp.csr_matrix((w, (rows, idx[:, :k].ravel())), shape=(n, n))
    return a.maximum(a.T).tocsr()


def coarse_graph(a: sp.csr_matrix, groups: Labels) -> sp.csr_matrix:
    """The graph between groups of nodes: edge weights summed, self-loops dropped."""
    n = groups.size
    m = int(groups.max()) + 1 if n else 0
    p = sp.csr_matrix((np.ones(n), (np.arange(n), groups)), shape=(n, m))
    w = (p.T @ a @ p).tocsr()
    w.setdiag(0)
    w.eliminate_zeros()
    return w


@dataclass(frozen=True, slots=True)
class Spectrum:
    """Leading eigenpairs of a graph's normalised adjacency, per connected component."""

    values: list[npt.NDArray[np.float64]]  # per component, descending
    vectors: list[npt.NDArray[np.float64] | None]  # per component, columns match values
    members: list[Labels]  # node indices of each component


def spectrum(a: sp.csr_matrix, kmax: int, *, vectors: bool = True) -> Spectrum:
    """Up to `kmax` leading eigenpairs of D^-1/2 A D^-1/2 in each connected component.
    Components are solved apart: a graph in pieces has eigenvalue 1 once per piece, which
    an iterative solver would not separate."""
    n_comp, comp = connected_components(a, directed=False)
    values: list[npt.NDArray[np.float64]] = []
    vecs_out: list[npt.NDArray[np.float64] | None] = []
    members: list[Labels] = []
    deg = np.asarray(a.sum(axis=1)).ravel()
    for c in range(n_comp):
        idx = np.flatnonzero(comp == c).astype(np.int64)
        members.append(idx)
        m = idx.size
        if m == 1:
            values.append(np.ones(1))
            vecs_out.append(np.ones((1, 1)))
            continue
        sub = a[idx][:, idx]
        dm = 1.0 / np.sqrt(np.maximum(deg[idx], 1e-12))
        norm = sp.diags(dm) @ sub @ sp.diags(dm)
        vecs: npt.NDArray[np.float64] | None = None
        if m <= _DENSE_LIMIT:
            want = min(kmax, m)
            dense = norm.toarray()
            if vectors:
                vals, vecs = scipy.linalg.eigh(dense, subset_by_index=[m - want, m - 1])
                vals, vecs = vals[::-1], vecs[:, ::-1]
            else:
                vals = scipy.linalg.eigh(dense, eigvals_only=True)[::-1][:want]
        else:
            want = min(kmax, m - 1)
            # Deterministic start: the square root of the degrees (the leading eigenvector).
            v0 = np.sqrt(np.maximum(deg[idx], 1e-12))
            out = eigsh(norm, k=want, which="LA", v0=v0 / np.linalg.norm(v0), tol=1e-5,
                        return_eigenvectors=vectors)
            vals, vecs = (out if vectors else (out, None))
            order = np.argsort(-vals, kind="stable")
            vals = vals[order]
            vecs = vecs[:, order] if vecs is not None else None
        values.append(np.asarray(vals, dtype=np.float64))
        vecs_out.append(vecs)
    return Spectrum(values, vecs_out, members)


def _pooled(spec: Spectrum) -> list[tuple[float, int]]:
    return sorted(
        ((float(v), c) for c, vals in enumerate(spec.values) for v in vals),
        key=lambda p: (-p[0], p[1]),
    )


def eigengap_k(spec: Spectrum, kmax: int) -> int:
    """The number of clusters by the eigengap heuristic: the position of the largest
    gap in the union of the components' eigenvalues (at least one per component)."""
    pooled = _pooled(spec)
    n_comp = len(spec.values)
    limit = min(len(pooled), max(kmax, n_comp))
    if limit <= n_comp and len(pooled) <= n_comp:
        return n_comp
    vals = np.array([v for v, _ in pooled[: limit + 1]])
    if len(pooled) == sum(m.size for m in spec.members) and limit == len(pooled):
        # The whole spectrum is known: after the last eigenvalue comes 0, the level below
        # which eigenvalues say nothing about clusters (so k may be every node).
        vals = np.append(vals, 0.0)
    gaps = vals[:-1] - vals[1:]
    gaps[: n_comp - 1] = -np.inf
    return int(np.argmax(gaps)) + 1


def split_count(spec: Spectrum, k: int) -> list[int]:
    """`k` clusters shared between components by how many of their eigenvalues are
    among the k largest (at least one each)."""
    counts = [0] * len(spec.values)
    for _, c in _pooled(spec)[:k]:
        counts[c] += 1
    return [max(1, c) for c in counts]


def spectral_labels(spec: Spectrum, counts: list[int], link_threshold: float,
                    sizes: npt.NDArray[np.float64] | None = None) -> Labels:
    """Cluster each component in the space of its leading eigenvectors (rows normalised)
    with average linkage (nodes weighted by `sizes`); labels are global and dense."""
    n = sum(m.size for m in spec.members)
    labels = np.empty(n, dtype=np.int64)
    offset = 0
    for idx, vecs, k in zip(spec.members, spec.vectors, counts, strict=True):
        if k <= 1 or idx.size < 2 or vecs is None:
            labels[idx] = offset
            offset += 1
            continue
        v = vecs[:, :k].astype(np.float32)
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        weight = np.ones(idx.size) if sizes is None else sizes[idx]
        local = average_linkage(v, weight, link_threshold)
        _, dense = np.unique(local, return_inverse=True)
        labels[idx] = dense + offset
        offset += int(dense.max()) + 1
    return labels


def weakest_cut(a: sp.csr_matrix) -> tuple[float, npt.NDArray[np.bool_]]:
    """The sweep cut of lowest conductance along the second eigenvector of the graph's
    normalised adjacency (a few-links-apart split of its nodes): its conductance (the
    weight crossing the cut over the smaller side's volume) and one side."""
    m = a.shape[0]
    deg = np.asarray(a.sum(axis=1)).ravel()
    if m < 2 or deg.sum() <= 0:
        return 1.0, np.zeros(m, dtype=bool)
    dm = 1.0 / np.sqrt(np.maximum(deg, 1e-12))
    dense = a.toarray()
    _, vecs = scipy.linalg.eigh(dm[:, None] * dense * dm[None, :], subset_by_index=[m - 2, m - 1])
    order = np.argsort(vecs[:, 0] * dm, kind="stable")
    ordered = dense[np.ix_(order, order)]
    # Moving node v into the side S changes the cut by (its links outside itself) minus
    # twice its links into S.
    into = np.tril(ordered, -1).sum(axis=1)
    cut = np.cumsum(deg[order] - np.diagonal(ordered) - 2 * into)[:-1]
    vol = np.cumsum(deg[order])[:-1]
    smaller = np.minimum(vol, deg.sum() - vol)
    cond = cut / np.maximum(smaller, 1e-12)
    i = int(np.argmin(cond))
    side = np.zeros(m, dtype=bool)
    side[order[: i + 1]] = True
    return float(cond[i]), side


def average_linkage(
    means: Matrix,
    sizes: npt.NDArray[np.float64],
    threshold: float,
    frozen: npt.NDArray[np.bool_] | None = None,
    apart: Labels | None = None,
    kind: Labels | None = None,
) -> Labels:
    """Average-linkage clustering of groups given by their mean unit vector and size.

    With unit vectors the average pairwise cosine of two groups is the dot product of
    their means, so groups merge exactly by the Lance-Williams update. Merges the most
    similar pair while its similarity reaches `threshold`; two frozen groups are never
    merged, nor two clusters holding groups of the same `apart` label, nor groups of two
    different `kind`s (-1: any kind). Returns a label per group (the index of its
    surviving representative)."""
    n = means.shape[0]
    labels = np.arange(n, dtype=np.int64)
    if n < 2:
        return labels
    neg = np.float32(-np.inf)
    sim = (means @ means.T).astype(np.float32)
    np.fill_diagonal(sim, neg)
    frz = np.zeros(n, dtype=bool) if frozen is None else frozen.copy()
    if frz.any():
        sim[np.ix_(frz, frz)] = neg
    member: npt.NDArray[np.bool_] | None = None
    if apart is not None:
        member = np.zeros((n, int(apart.max()) + 1), dtype=bool)
        member[np.arange(n), apart] = True
        sim[apart[:, None] == apart[None, :]] = neg
    kinds: Labels | None = None
    if kind is not None:
        kinds = kind.astype(np.int64).copy()
        known = kinds >= 0
        sim[known[:, None] & known[None, :] & (kinds[:, None] != kinds[None, :])] = neg
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
        if member is not None:
            member[a] |= member[b]
            new[member[:, member[a]].any(axis=1)] = neg
        if kinds is not None:
            if kinds[a] < 0:
                kinds[a] = kinds[b]
            if kinds[a] >= 0:
                new[(kinds >= 0) & (kinds != kinds[a])] = neg
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


def spherical_kmeans(x: Matrix, k: int, *, iterations: int, seed: int) -> Labels:
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
        sums = group_sums(x, assign, k)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        empty = norms[:, 0] == 0
        norms[empty] = 1.0
        new_centers = sums / norms
        new_centers[empty] = centers[empty]
        centers = new_centers.astype(np.float32)
    return assign


def group_sums(x: Matrix, labels: Labels, k: int) -> Matrix:
    """Sum of the rows of `x` per label (0..k-1), as a sparse product (np.add.at is slow)."""
    n = labels.size
    onehot = sp.csr_matrix((np.ones(n, dtype=np.float32), (labels, np.arange(n))), shape=(k, n))
    return np.asarray(onehot @ x, dtype=np.float32)


def unit_rows(m: npt.NDArray[np.floating]) -> Matrix:
    """Rows scaled to length 1 (zero rows stay zero), as float32."""
    out = np.asarray(m, dtype=np.float32).copy()
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out /= norms
    return out
