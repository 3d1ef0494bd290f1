"""The engine's settings, with the values chosen on the tuning set (bench/data/B); see
docs/decisions/0020-two-level-clustering.md for how each was measured."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClusteringConfig:
    # Topic level: near-duplicates grouped first at this cosine; the eigengap is read on
    # graphs of these degrees (median); how many topics a bucket may hold at most (where
    # the eigengap is searched); the cosine at which rows of the spectral embedding are
    # linked into one topic.
    coarse_threshold: float = 0.85
    # Share of the topic similarity from the topic words (the rest: the whole keyword).
    about_share: float = 0.5
    degrees: tuple[int, ...] = (10, 15, 20)
    # Short lists: each keyword also counts up to this many links inside its group.
    group_loops: int = 3
    neighbours: int = 15
    max_topics: int = 150
    link_threshold: float = 0.5
    # A topic whose own graph has a cut of conductance below split_conductance, into two
    # sides of at least split_min keywords whose average cosine is below
    # split_similarity, is two topics the spectral step merged (A: 0.749 -> 0.795,
    # B: 0.784 -> 0.789; see ADR 0020).
    split_conductance: float = 0.3
    split_min: int = 8
    split_similarity: float = 0.45
    # Lists above bucket_limit keywords are split into buckets of ~bucket_size.
    bucket_limit: int = 2000
    bucket_size: int = 1500
    join_threshold: float = 0.4
    kmeans_iterations: int = 8
    seed: int = 8
    # Page level: average cosine of page vectors (pages.py) needed to share a page; a page
    # targets one intent (B: page ARI 0.685 -> 0.712 with it, threshold re-tuned).
    page_threshold: float = 0.25
    page_per_intent: bool = True
    # Anchors: weight of a distinctive seed word in a keyword's anchor score; a
    # keyword with no such word joins a user's topic at cosine >= anchor_floor, a
    # platform topic (existing clusters, seed library sectors) at >= anchor_join.
    anchor_vote_weight: float = 0.3
    anchor_floor: float = 0.3
    anchor_join: float = 0.6
    # Threads for numpy/scipy linear algebra (BLAS). One: 10k keywords took 4.1 s on one
    # thread and 9.4 s on the default two, on the shared 2-core machine.
    blas_threads: int = 1
