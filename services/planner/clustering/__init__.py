"""Keyword clustering: the offline engine (default) and the OpenAI-compatible one.

Two levels: a *topic* groups pages (one subject: "massage chairs"); a *cluster* is a
page, what one article targets ("best massage chair for home"), and carries its topic.
See docs/decisions/0020-two-level-clustering.md for the measurements behind each step.
"""

from services.planner.clustering.config import ClusteringConfig
from services.planner.clustering.engine import LocalClusteringEngine, describe
from services.planner.clustering.model import (
    Cluster,
    ClusteredKeyword,
    ClusteringResult,
    ExistingCluster,
    KeywordInput,
    TopicAnchor,
)
from services.planner.clustering.openai_engine import (
    DEFAULT_CLUSTERING_PROMPT,
    KEYWORDS_PLACEHOLDER,
    AIClusteringAnswer,
    AIClusterSpec,
    OpenAIClusteringEngine,
    render_prompt,
)
from services.planner.clustering.text import (
    display_name,
    group_by_text,
    normalize_keyword,
    topic_words,
)

__all__ = [
    "DEFAULT_CLUSTERING_PROMPT",
    "KEYWORDS_PLACEHOLDER",
    "AIClusterSpec",
    "AIClusteringAnswer",
    "Cluster",
    "ClusteredKeyword",
    "ClusteringConfig",
    "ClusteringResult",
    "ExistingCluster",
    "KeywordInput",
    "LocalClusteringEngine",
    "OpenAIClusteringEngine",
    "TopicAnchor",
    "describe",
    "display_name",
    "group_by_text",
    "normalize_keyword",
    "render_prompt",
    "topic_words",
]
