"""What goes into the clustering engines and what comes out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from libs.common.ai.base import Usage
from services.planner.clustering.text import normalize_keyword
from services.planner.intent import Intent


@dataclass(frozen=True, slots=True)
class KeywordInput:
    """A keyword to cluster. `ref` is the caller's handle (e.g. its database id).
    `intent`, when known (stored or given by the user), is kept as is; otherwise the
    rules classify the keyword. `topic_hint` names the topic the platform already knows
    for it (the seed library sector it was added from): it anchors that topic."""

    text: str
    volume: int = 0
    ref: Any = None
    intent: Intent | None = None
    topic_hint: str = ""


@dataclass(frozen=True, slots=True)
class ExistingCluster:
    """A cluster already in the sector: new keywords of its topic may join it, and its
    keywords anchor its topic (`topic`, or its own name when it has none)."""

    id: Any
    name: str
    keywords: tuple[str, ...]
    topic: str = ""


@dataclass(frozen=True, slots=True)
class TopicAnchor:
    """A topic the user asks for: a name ("massage chairs") and optional seed keywords.
    With anchors the user gets exactly these topics (keywords unrelated to all of them
    get topics of their own)."""

    name: str
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClusteredKeyword:
    keyword: KeywordInput
    intent: Intent


@dataclass(frozen=True, slots=True)
class Cluster:
    """What one article targets (a page), inside its topic."""

    name: str
    description: str
    keywords: tuple[ClusteredKeyword, ...]
    intent: Intent
    volume: int
    # The existing cluster these keywords joined, or None for a new cluster.
    existing_id: Any = None
    topic: str = ""


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

    def topic_of(self) -> dict[str, str]:
        """Normalised keyword text -> its topic."""
        return {
            normalize_keyword(ck.keyword.text): c.topic
            for c in self.clusters
            for ck in c.keywords
        }
