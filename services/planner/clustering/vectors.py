"""Keyword vectors for the two levels.

- Topic level: the mean of two unit embeddings, the keyword's topic words (what it is
  about, modifiers out) and the whole keyword, so a dot product is the mean of the two
  cosines. The topic words keep "best dog food" from "best cat food"; the whole keyword
  keeps a keyword whose topic words are all rare (brands, models) near its context.
- Page level: the whole keyword, modifiers included: "laminate flooring cost" and "how to
  install laminate flooring" are one topic but two pages.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from services.planner.clustering.graph import Matrix, unit_rows
from services.planner.clustering.text import topic_words

Embed = Callable[[Sequence[str]], Matrix]


@dataclass(frozen=True, slots=True)
class KeywordVectors:
    words: list[list[str]]  # topic words of each keyword (stemmed)
    topic: Matrix  # unit rows, topic-level similarity
    page: Matrix  # unit rows, page-level similarity


def keyword_vectors(texts: Sequence[str], embed: Embed,
                    about_share: float = 0.5) -> KeywordVectors:
    """Vectors of normalised keyword texts; `about_share` of the topic similarity comes
    from the topic words, the rest from the whole keyword."""
    words = [topic_words(t) for t in texts]
    if not texts:
        empty = np.zeros((0, 1), dtype=np.float32)
        return KeywordVectors(words, empty, empty)
    # Many keywords share their topic words ("best dog food", "dog food online"):
    # each distinct string is embedded once.
    joined = [" ".join(ws) for ws in words]
    distinct = sorted(set(joined))
    row = {s: i for i, s in enumerate(distinct)}
    about = unit_rows(embed(distinct))[[row[s] for s in joined]]
    whole = unit_rows(embed(list(texts)))
    topic = unit_rows(np.hstack([about * np.float32(math.sqrt(about_share)),
                                 whole * np.float32(math.sqrt(1 - about_share))]))
    return KeywordVectors(words, topic, whole)
