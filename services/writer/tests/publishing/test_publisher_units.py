"""The publisher's pure parts, without a WordPress: slugs, markers, file names, the
in-memory store's write-ahead semantics, and what is refused before any call."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from libs.common.outbound import BoundSecret, OutboundPolicy
from libs.common.problems import ValidationFailed
from services.writer.publishing.events import content_published
from services.writer.publishing.publisher import (
    ImageAsset,
    PublishableContent,
    Publisher,
    PublishFailed,
    _ascii_filename,
    carries_marker,
    marker_for,
    media_slug,
)
from services.writer.publishing.schemas import PublicationOut
from services.writer.publishing.store import InMemoryPublicationStore, Outcome
from services.writer.publishing.wp_client import RemotePost, WordPressSite, slugify


@pytest.mark.parametrize(
    ("title", "slug"),
    [("Growing Tomatoes: A Guide!", "growing-tomatoes-a-guide"),
     ("Crème brûlée à la maison", "creme-brulee-a-la-maison"),
     ("  snake_case and  spaces ", "snake-case-and-spaces"),
     ("Привет, мир", "привет-мир"),
     ("!!!", "")],
)
def test_slugs_follow_wordpress(title: str, slug: str) -> None:
    assert slugify(title) == slug


def test_markers_match_their_content_only() -> None:
    def post(content: str) -> RemotePost:
        return RemotePost(id=1, status="draft", slug="", link="", title="", content=content,
                          excerpt="")

    assert carries_marker(post("<p>x</p>\n" + marker_for(12, 3)), 12)
    assert not carries_marker(post("<p>x</p>\n" + marker_for(123, 3)), 12)
    assert not carries_marker(post("<p>igny8:content=12: in a sentence</p>"), 12)


def test_media_names_are_ascii_and_keyed_by_hash() -> None:
    image = ImageAsset(data=b"\x89PNG fake", media_type="image/png", filename="Ünïcode café.PNG")
    assert media_slug(image.sha256) == "igny8-img-" + image.sha256[:32]
    assert _ascii_filename(image) == f"unicode-cafe-{image.sha256[:8]}.png"
    odd = ImageAsset(data=b"x", media_type="image/webp", filename="картинка")
    assert _ascii_filename(odd) == f"image-{odd.sha256[:8]}.webp"


async def test_the_store_writes_ahead_and_keeps_what_attempts_learnt() -> None:
    store = InMemoryPublicationStore()
    record = await store.begin("s", 7)
    assert (record.attempt, record.status, record.post_id) == (1, "pending", None)
    await store.creating_post(record)
    await store.failed(record, "The site answered HTTP 502 (a server error).")
    again = await store.begin("s", 7)
    assert (again.attempt, again.create_started, again.error) == (2, True, None)
    await store.post_created(again, 41)
    await store.finished(again, Outcome("published", 41, "http://x/p/", "p", 1))
    stored = store.get("s", 7)
    assert stored is not None
    assert (stored.status, stored.post_id, stored.url) == ("published", 41, "http://x/p/")
    await store.terms_found("s", "tags", {"Tomato": 5, "Sun": 6})
    assert await store.term_ids("s", "tags", ["tomato", "rain"]) == {"tomato": 5}
    await store.terms_gone("s", "tags", [5])
    assert await store.term_ids("s", "tags", ["tomato", "sun"]) == {"sun": 6}


async def test_refusals_before_any_call() -> None:
    store = InMemoryPublicationStore()
    publisher = Publisher(store, policy=OutboundPolicy())
    site = WordPressSite(key="s", url="https://blog.example", username="u",
                         app_password=BoundSecret.bind("pw", "https://old.example"))
    content = PublishableContent(content_id=1, revision=1, title="t", html="<p>t</p>")
    with pytest.raises(ValidationFailed) as caught:
        await publisher.publish(site, content, status="future")
    assert caught.value.errors == {"date_gmt": ["A scheduled publish needs date_gmt."]}
    assert store.get("s", 1) is None  # nothing recorded for a request refused outright
    with pytest.raises(PublishFailed, match="belongs to another URL") as failed:
        await publisher.publish(site, content)
    assert failed.value.kind == "credentials"
    record = store.get("s", 1)
    assert record is not None
    assert record.status == "failed"
    assert record.error is not None
    assert "another URL" in record.error


def test_a_publications_post_id_is_text_as_contents_is() -> None:
    """Content's `external_id` is a string (the original's CharField); a publication's,
    stored as WordPress's integer, was answered as a number. Both are text now, in the
    answer, its OpenAPI schema and the published events (ADR 0038)."""
    now = datetime.now(UTC)
    row = {"id": 1, "account_id": 2, "site_id": 3, "integration_id": 4, "content_id": 5,
           "attempt": 1, "status": "published", "external_id": 4711, "url": None,
           "slug": None, "revision": None, "error": None, "task_id": None,
           "created_at": now, "updated_at": now}
    assert PublicationOut.model_validate(row).external_id == "4711"
    assert PublicationOut.model_validate({**row, "external_id": None}).external_id is None
    schema = PublicationOut.model_json_schema()["properties"]["external_id"]
    assert {"type": "string"} in schema["anyOf"]
    event = content_published({"id": 5, "account_id": 2, "site_id": 3, "sector_id": 6}, row,
                              task_id=uuid4(), status="publish", adopted=False, warnings=())
    assert event.data["external_id"] == "4711"
