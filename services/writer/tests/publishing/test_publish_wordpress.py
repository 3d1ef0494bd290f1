"""Publishing against the real WordPress: a full content read back through WordPress's own
REST API, updates of the known post, adoption after a lost create, reuse of media and terms,
Yoast's fields with and without the plugin, scheduling and unpublishing."""

from __future__ import annotations

import base64
import json
import urllib.request
from typing import Any

import pytest

from libs.common.outbound import OutboundPolicy
from libs.common.testing.wordpress import WordPressServer
from services.writer.publishing.publisher import (
    PublishableContent,
    Publisher,
    marker_for,
)
from services.writer.publishing.store import InMemoryPublicationStore
from services.writer.publishing.wp_client import WordPressClient, WordPressSite
from services.writer.tests.publishing.conftest import image, next_content_id, site_from


def wp_get(wordpress: WordPressServer, route: str) -> Any:
    """WordPress's own answer, read without any of our code (urllib, as the admin)."""
    token = base64.b64encode(f"admin:{wordpress.app_password}".encode()).decode()
    request = urllib.request.Request(f"{wordpress.url}/wp-json{route}",
                                     headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - loopback
        return json.load(resp)


def article(content_id: int, *, revision: int = 1, seed: int | None = None) -> PublishableContent:
    seed = content_id if seed is None else seed
    return PublishableContent(
        content_id=content_id, revision=revision,
        title=f"Growing tomatoes on a balcony {content_id}",
        html=(f'<p>First paragraph of {content_id}.</p>\n<img src="/files/a-{seed}.png" alt="a">\n'
              f'<p>Second.</p>\n<img src="/files/b-{seed}.png" alt="b">'),
        excerpt="Tomatoes, small spaces.",
        categories=[f"Gardening {seed}", f"Balcony {seed}"],
        tags=[f"tomato {seed}", f"pots {seed}", f"sun {seed}"],
        featured_image=image(seed * 10 + 1, alt="tomatoes"),
        inline_images=[image(seed * 10 + 2, ref=f"/files/a-{seed}.png"),
                       image(seed * 10 + 3, ref=f"/files/b-{seed}.png")],
        seo_title="Tomatoes on a balcony | Test", meta_description="How to grow them.",
        focus_keyword="balcony tomatoes",
    )


async def test_a_full_content_is_published_and_reads_back(
    wordpress: WordPressServer, wp_site: WordPressSite, policy: OutboundPolicy, content_id: int,
) -> None:
    store = InMemoryPublicationStore()
    steps: list[str] = []
    content = article(content_id)
    result = await Publisher(store, policy=policy).publish(
        wp_site, content, on_progress=lambda step, pct, msg: steps.append(step))
    assert result.status == "published"
    assert result.post_id
    assert result.warnings == ()
    post = wp_get(wordpress, f"/wp/v2/posts/{result.post_id}?context=edit")
    assert post["status"] == "publish"
    assert post["title"]["raw"] == content.title
    assert post["excerpt"]["raw"] == content.excerpt
    assert post["slug"] == f"growing-tomatoes-on-a-balcony-{content_id}" == result.slug
    assert post["link"] == result.url == f"{wordpress.url}/{result.slug}/"
    assert marker_for(content_id, 1) in post["content"]["raw"]
    assert "/files/a-" not in post["content"]["raw"]  # in-article images now on the site
    inline = [wp_get(wordpress, f"/wp/v2/media/{m}") for m in result.media_ids[1:]]
    for media in inline:
        assert media["source_url"] in post["content"]["raw"]
    featured = wp_get(wordpress, f"/wp/v2/media/{post['featured_media']}?context=edit")
    assert featured["id"] == result.featured_media_id
    assert featured["alt_text"] == "tomatoes"
    categories = wp_get(wordpress, "/wp/v2/categories?include=" + ",".join(
        map(str, post["categories"])))
    assert {c["name"] for c in categories} == set(content.categories)
    tags = wp_get(wordpress, "/wp/v2/tags?include=" + ",".join(map(str, post["tags"])))
    assert {t["name"] for t in tags} == set(content.tags)
    assert post["meta"] == {"_yoast_wpseo_title": content.seo_title,
                            "_yoast_wpseo_metadesc": content.meta_description,
                            "_yoast_wpseo_focuskw": content.focus_keyword}
    assert steps == ["PREP", "MEDIA", "TERMS", "POST", "STATUS", "DONE"]
    record = store.get(wp_site.key, content_id)
    assert record is not None
    assert (record.status, record.post_id, record.url) == ("published", post["id"], post["link"])


async def test_republishing_updates_the_same_post_and_reuses_media_and_terms(
    wordpress: WordPressServer, wp_site: WordPressSite, policy: OutboundPolicy, content_id: int,
) -> None:
    store = InMemoryPublicationStore()
    calls: list[str] = []
    publisher = Publisher(store, policy=policy,
                          on_call=lambda c: calls.append(f"{c.method} {c.route}"))
    first = await publisher.publish(wp_site, article(content_id))
    calls.clear()
    second = await publisher.publish(wp_site, article(content_id, revision=2))
    assert second.post_id == first.post_id
    assert second.media_ids == first.media_ids
    assert (second.category_ids, second.tag_ids) == (first.category_ids, first.tag_ids)
    assert calls == [f"POST /wp/v2/posts/{first.post_id}"]  # one update, nothing else
    post = wp_get(wordpress, f"/wp/v2/posts/{first.post_id}?context=edit")
    assert marker_for(content_id, 2) in post["content"]["raw"]
    # A fresh store (the service lost its memory) still finds media and terms on the site
    again = await Publisher(InMemoryPublicationStore(), policy=policy).publish(
        wp_site, article(next_content_id(), seed=content_id))
    assert again.media_ids == first.media_ids
    assert (again.category_ids, again.tag_ids) == (first.category_ids, first.tag_ids)
    assert again.post_id != first.post_id


async def test_a_lost_create_is_adopted_not_repeated(
    wordpress: WordPressServer, wp_site: WordPressSite, policy: OutboundPolicy, content_id: int,
) -> None:
    """The create reached WordPress but its answer never did (the service crashed before
    storing the id): the next attempt finds the draft by its marker and adopts it."""
    content = article(content_id)
    store = InMemoryPublicationStore()
    record = await store.begin(wp_site.key, content_id)
    await store.creating_post(record)
    async with WordPressClient(wp_site, policy=policy) as client:
        orphan = await client.create_post({"title": "half-made", "status": "draft",
                                           "content": "x\n" + marker_for(content_id, 1)})
    result = await Publisher(store, policy=policy).publish(wp_site, content)
    assert result.post_id == orphan.id
    assert result.adopted
    found = wp_get(wordpress, f"/wp/v2/posts?search=igny8:content={content_id}:&status=any")
    assert [p["id"] for p in found] == [orphan.id]


async def test_a_taken_slug_is_skipped_and_the_final_slug_read_back(
    wp_site: WordPressSite, policy: OutboundPolicy, content_id: int,
) -> None:
    slug = f"taken-{content_id}"
    async with WordPressClient(wp_site, policy=policy) as client:
        await client.create_post({"title": "someone else's", "slug": slug, "status": "publish"})
        await client.create_post({"title": "a draft of someone", "slug": f"{slug}-2",
                                  "status": "draft"})
    content = PublishableContent(content_id=content_id, revision=1, title="Mine", html="<p>m</p>",
                                 slug=slug)
    result = await Publisher(InMemoryPublicationStore(), policy=policy).publish(wp_site, content)
    assert result.slug == f"{slug}-3"


async def test_without_yoast_the_seo_fields_are_not_sent_and_a_warning_says_why(
    wordpress: WordPressServer, policy: OutboundPolicy, content_id: int,
) -> None:
    site = site_from(wordpress.site_without_yoast, key="plain")
    result = await Publisher(InMemoryPublicationStore(), policy=policy).publish(
        site, article(content_id))
    assert result.status == "published"
    assert result.seo_fields_sent == ()
    assert "Yoast" in result.warnings[0]
    # Read through the server that registers the fields: nothing was stored
    post = wp_get(wordpress, f"/wp/v2/posts/{result.post_id}?context=edit")
    assert set(post["meta"].values()) == {""}


async def test_draft_schedule_and_unpublish(
    wordpress: WordPressServer, wp_site: WordPressSite, policy: OutboundPolicy, content_id: int,
) -> None:
    store = InMemoryPublicationStore()
    publisher = Publisher(store, policy=policy)
    content = PublishableContent(content_id=content_id, revision=1, title="Later", html="<p>l</p>")
    draft = await publisher.publish(wp_site, content, status="draft")
    assert draft.status == "draft"
    scheduled = await publisher.publish(wp_site, content, status="future",
                                        date_gmt="2099-01-02T03:04:05")
    assert (scheduled.status, scheduled.post_id) == ("scheduled", draft.post_id)
    post = wp_get(wordpress, f"/wp/v2/posts/{draft.post_id}?context=edit")
    assert (post["status"], post["date_gmt"]) == ("future", "2099-01-02T03:04:05")
    live = await publisher.publish(wp_site, content, status="publish",
                                   date_gmt="2001-01-02T03:04:05")
    assert live.status == "published"
    gone = await publisher.unpublish(wp_site, content_id)
    assert (gone.status, gone.post_id) == ("unpublished", draft.post_id)
    assert wp_get(wordpress, f"/wp/v2/posts/{draft.post_id}?context=edit")["status"] == "draft"
    assert (await publisher.unpublish(wp_site, content_id)).status == "unpublished"
    back = await publisher.publish(wp_site, content)
    assert (back.status, back.post_id) == ("published", draft.post_id)
    await publisher.unpublish(wp_site, content_id, trash=True)
    assert wp_get(wordpress, f"/wp/v2/posts/{draft.post_id}?context=edit")["status"] == "trash"


async def test_media_deleted_on_the_site_is_uploaded_again(
    wordpress: WordPressServer, wp_site: WordPressSite, policy: OutboundPolicy, content_id: int,
) -> None:
    """WordPress answers 201 with `featured_media: 0` for an unknown media id: caught."""
    store = InMemoryPublicationStore()
    publisher = Publisher(store, policy=policy, retry_delay=0)
    first = await publisher.publish(wp_site, article(content_id))
    async with WordPressClient(wp_site, policy=policy) as client:
        await client.call("DELETE", f"/wp/v2/media/{first.featured_media_id}",
                          params={"force": "true"})
    second = await publisher.publish(wp_site, article(content_id, revision=2))
    assert second.featured_media_id not in (None, first.featured_media_id)
    post = wp_get(wordpress, f"/wp/v2/posts/{second.post_id}")
    assert post["featured_media"] == second.featured_media_id


@pytest.mark.parametrize("name", ["Bücher & Co", "Ünïcödé"])
async def test_terms_with_accents_and_entities_are_found_again(
    wp_site: WordPressSite, policy: OutboundPolicy, name: str, content_id: int,
) -> None:
    content = PublishableContent(content_id=content_id, revision=1, title="t", html="<p>t</p>",
                                 categories=[f"{name} {content_id}"])
    first = await Publisher(InMemoryPublicationStore(), policy=policy).publish(wp_site, content)
    other = PublishableContent(content_id=next_content_id(), revision=1, title="u",
                               html="<p>u</p>", categories=[f"{name} {content_id}"])
    second = await Publisher(InMemoryPublicationStore(), policy=policy).publish(wp_site, other)
    assert second.category_ids == first.category_ids
