"""What the engines are given, from what writer stores: a task's brief (its keywords and
its cluster's), a content's image brief, and where generated images go in a content's
HTML."""

from __future__ import annotations

import html as html_lib
from collections.abc import Sequence
from typing import Any

from selectolax.lexbor import LexborHTMLParser

from libs.common.repository import Row
from services.writer.brief import AuthorProfile, Brief, Intent
from services.writer.document import parse_document
from services.writer.imaging import ContentBrief
from services.writer.service import target_words

INTENTS: tuple[Intent, ...] = ("informational", "navigational", "commercial", "transactional")
MAX_CLUSTER_KEYWORDS = 30


def split_keywords(text: str) -> list[str]:
    """A task's keywords as planner writes them: comma-separated."""
    return [k for k in (" ".join(part.split()) for part in text.split(",")) if k]


def intent_of(primary: str, cluster_keywords: Sequence[Row]) -> Intent:
    """The primary keyword's own intent when the cluster holds it, else the one carrying
    the most volume among the cluster's keywords, else informational."""
    for k in cluster_keywords:
        if k["keyword"].lower() == primary.lower() and k["intent"] in INTENTS:
            return k["intent"]
    weight: dict[str, int] = {}
    for k in cluster_keywords:
        if k["intent"] in INTENTS:
            weight[k["intent"]] = weight.get(k["intent"], 0) + max(int(k["volume"]), 1)
    if not weight:
        return "informational"
    return max(INTENTS, key=lambda i: (weight.get(i, -1), -INTENTS.index(i)))


def task_brief(task: Row, *, cluster: Row | None, cluster_keywords: Sequence[Row],
               author: Row | None, in_article_images: int) -> Brief:
    """A task's brief: its own keywords first (the first, or `primary_keyword`, is the
    keyphrase), then its cluster's by volume; those phrased as questions go to the FAQ.
    Raises pydantic's ValidationError for a task that cannot be briefed."""
    own = split_keywords(task["keywords"])
    primary = task["primary_keyword"] or (own[0] if own else task["title"])
    keywords = [primary, *own, *(k["keyword"] for k in cluster_keywords[:MAX_CLUSTER_KEYWORDS])]
    profile = None
    if author is not None:
        profile = AuthorProfile(name=author["name"], description=author["description"],
                                tone=author["tone"], language=author["language"],
                                structure_template=author["structure_template"])
    return Brief.from_task(
        title=task["title"], keywords=keywords, description=task["description"],
        primary_keyword=primary, intent=intent_of(primary, cluster_keywords),
        content_type=task["content_type"], content_structure=task["content_structure"],
        target_word_count=target_words(task), cluster_name=(cluster or {}).get("name", ""),
        author=profile, prompt_override=task["prompt_override"],
        in_article_images=in_article_images)


def image_brief(content: Row, *, intent: str, style: str) -> ContentBrief:
    """What image prompts are made from: the title, the keyphrase and the H2s in order."""
    doc = parse_document(content["html"])
    return ContentBrief(title=content["title"],
                        keyphrase=content["primary_keyword"] or content["title"],
                        intent=intent, headings=[h.text for h in doc.subheadings if h.level == 2],
                        style=style)


def place_images(html: str, images: Sequence[dict[str, Any]]) -> str:
    """The content's HTML with its generated in-article images in place: the local
    draft's slots (`figure.igny8-image-slot`, numbered in order) get the k-th image by
    position; without slots, a figure follows the H2 the image belongs to. `images` are
    `{position, url, alt_text}`, in-article only."""
    ordered = sorted(images, key=lambda i: i["position"])
    if not ordered:
        return html
    tree = LexborHTMLParser(html)
    body = tree.body
    if body is None:
        return html
    slots = body.css("figure.igny8-image-slot")
    if slots:
        by_slot = {str(n): image for n, image in enumerate(ordered, start=1)}
        for slot in slots:
            image = by_slot.get(slot.attrs.get("data-image-position") or "")
            img = slot.css_first("img")
            if image is not None and img is not None:
                img.attrs["src"] = image["url"]
                img.attrs["alt"] = image["alt_text"] or img.attrs.get("alt") or ""
        return body.inner_html or html
    headings = body.css("h2")
    shown = {img.attrs.get("src") for img in body.css("img")}
    for image in ordered:
        position = int(image["position"])
        if not 1 <= position <= len(headings) or image["url"] in shown:
            continue
        figure = LexborHTMLParser(
            f'<figure class="igny8-image"><img src="{html_lib.escape(image["url"])}" '
            f'alt="{html_lib.escape(image["alt_text"] or "")}"></figure>').body
        node = figure.child if figure is not None else None
        if node is not None:
            headings[position - 1].insert_after(node)
    return body.inner_html or html
