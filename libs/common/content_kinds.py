"""What kinds of content the platform plans and writes: planner's ideas and writer's tasks
and content carry the same types and structures (DOMAIN.md), declared once here for both
services' CHECKs, schemas and filters."""

from __future__ import annotations

from enum import StrEnum


class ContentType(StrEnum):
    """What the article becomes on the site (WordPress's post types and term pages)."""

    POST, PAGE = "post", "page"
    PRODUCT, TAXONOMY = "product", "taxonomy"


class ContentStructure(StrEnum):
    ARTICLE = "article"
    GUIDE = "guide"
    LISTICLE = "listicle"
    HOW_TO = "how_to"
    COMPARISON = "comparison"
    REVIEW = "review"
    LANDING_PAGE = "landing_page"
