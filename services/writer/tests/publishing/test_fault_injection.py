"""Issue 11's fault injection: 100 publishes through a proxy that loses answers after
WordPress saved, answers 502/503, answers HTML firewall pages and refuses media with 413,
in a seeded random mix. WordPress must end with no duplicate post or media item, and every
content must end published, or failed with a reason."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest

from libs.common.outbound import BoundSecret, OutboundPolicy
from libs.common.testing.faultproxy import Fault, FaultProxy
from libs.common.testing.wordpress import WordPressServer
from services.writer.publishing.publisher import (
    PublishableContent,
    Publisher,
    PublishFailed,
    media_slug,
)
from services.writer.publishing.store import InMemoryPublicationStore
from services.writer.publishing.wp_client import WordPressSite
from services.writer.tests.publishing.conftest import image, next_content_id

SEED = 20261203
PUBLISHES = 100
FAULT_RATE = 0.15
MEDIA_413_RATE = 0.04
GENERAL_FAULTS = [Fault.DROP_AFTER_SAVE, Fault.DROP_AFTER_SAVE, Fault.UNAVAILABLE_AFTER_SAVE,
                  Fault.BAD_GATEWAY, Fault.FIREWALL, Fault.FIREWALL_CHALLENGE]


def seeded_faults(rng: random.Random) -> Callable[[str, str], Fault | None]:
    def choose(method: str, path: str) -> Fault | None:
        if method == "POST" and path.startswith("/wp-json/wp/v2/media") and (
            rng.random() < MEDIA_413_RATE
        ):
            return Fault.TOO_LARGE
        return rng.choice(GENERAL_FAULTS) if rng.random() < FAULT_RATE else None

    return choose


@pytest.fixture
async def proxy(wordpress: WordPressServer) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy(wordpress.url, seeded_faults(random.Random(SEED)))
    await proxy.start()
    yield proxy
    await proxy.stop()


def contents(rng: random.Random, first_id: int) -> list[PublishableContent]:
    """100 contents; a third share their featured image with another (media reuse), half
    carry an in-article image, terms come from small pools (created once, then reused)."""
    categories = [f"Fault category {first_id} {n}" for n in range(6)]
    tags = [f"fault tag {first_id} {n}" for n in range(10)]
    made = []
    for n in range(PUBLISHES):
        content_id = first_id + n
        featured_seed = first_id + (n if n % 3 else max(n - 1, 0))
        inline = [image(content_id * 7 + 1, ref=f"/files/{content_id}.png")] if n % 2 else []
        picture = f'<img src="/files/{content_id}.png">' if inline else ""
        made.append(PublishableContent(
            content_id=content_id, revision=1, title=f"Fault run {first_id} article {n}",
            html=f"<p>Article {n}.</p>{picture}",
            excerpt=f"Excerpt {n}", categories=rng.sample(categories, 2),
            tags=rng.sample(tags, 3), featured_image=image(featured_seed), inline_images=inline,
        ))
    return made


def wordpress_rows(wordpress: WordPressServer, first_id: int) -> tuple[list[dict], list[dict]]:
    """Posts carrying a marker of this run and media of the platform, read straight from
    WordPress's database (not through the code under test)."""
    out = wordpress.php(
        "global $wpdb;"
        "$posts = $wpdb->get_results(\"SELECT ID, post_status, post_content FROM $wpdb->posts"
        " WHERE post_type = 'post' AND post_content LIKE '%igny8:content=%'\", ARRAY_A);"
        "$media = $wpdb->get_results(\"SELECT ID, post_name FROM $wpdb->posts"
        " WHERE post_type = 'attachment' AND post_name LIKE 'igny8-img-%'\", ARRAY_A);"
        "echo json_encode(array($posts, $media));"
    )
    posts, media = json.loads(out)
    ours = []
    for post in posts:
        content_id = int(post["post_content"].rsplit("igny8:content=", 1)[1].split(":", 1)[0])
        if first_id <= content_id < first_id + PUBLISHES:
            ours.append({"id": int(post["ID"]), "status": post["post_status"],
                         "content_id": content_id})
    return ours, media


@pytest.mark.timeout(900)
async def test_a_hundred_publishes_under_faults_leave_no_duplicates(
    wordpress: WordPressServer, proxy: FaultProxy, policy: OutboundPolicy,
) -> None:
    rng = random.Random(SEED + 1)
    first_id = next_content_id(PUBLISHES)
    batch = contents(rng, first_id)
    site = WordPressSite(key="behind-faulty-proxy", url=proxy.url, username="admin",
                         app_password=BoundSecret.bind(wordpress.app_password, proxy.url),
                         seo_fields=frozenset())
    store = InMemoryPublicationStore()
    publisher = Publisher(store, policy=policy, attempts=4, retry_delay=0.01, timeout=30)
    failures: dict[int, str] = {}
    for content in batch:
        try:
            await publisher.publish(site, content)
        except PublishFailed as exc:
            failures[content.content_id] = exc.reason

    faults = proxy.faults()
    print("faults injected:", {f.value: n for f, n in faults.items()},
          "requests:", len(proxy.log), "failed:", dict(Counter(failures.values())))
    assert set(faults) == set(Fault) - {Fault.SLOW_FORWARD}  # every kind of fault happened
    assert faults[Fault.DROP_AFTER_SAVE] >= 20

    # Every content ends published, or failed with a reason
    for content in batch:
        record = store.get(site.key, content.content_id)
        assert record is not None
        if content.content_id in failures:
            assert record.status == "failed"
            assert record.error == failures[content.content_id]
        else:
            assert record.status == "published"
            assert record.post_id is not None
    assert all(reason.strip() for reason in failures.values())
    assert len(failures) < PUBLISHES // 4

    posts, media = wordpress_rows(wordpress, first_id)
    per_content = Counter(p["content_id"] for p in posts)
    assert [c for c, n in per_content.items() if n > 1] == []  # no duplicate post
    published = {p["content_id"]: p for p in posts}
    for content in batch:
        record = store.get(site.key, content.content_id)
        assert record is not None
        if record.status == "published":
            assert published[content.content_id]["id"] == record.post_id
            assert published[content.content_id]["status"] == "publish"
    ours = {media_slug(i.sha256) for c in batch
            for i in [*([c.featured_image] if c.featured_image else []), *c.inline_images]}
    names = Counter(m["post_name"] for m in media if m["post_name"][:42] in ours)
    assert [n for n in names if n not in ours] == []  # no "-2" copies of a media item
    assert all(count == 1 for count in names.values())

    # The failed ones publish once the faults stop, still without duplicates
    proxy.choose = lambda method, path: None
    for content in batch:
        if content.content_id in failures:
            result = await publisher.publish(site, content)
            assert result.status == "published"
    posts, media = wordpress_rows(wordpress, first_id)
    assert Counter(p["content_id"] for p in posts) == Counter(c.content_id for c in batch)
    assert {p["status"] for p in posts} == {"publish"}
    names = Counter(m["post_name"] for m in media if m["post_name"][:42] in ours)
    assert set(names) == ours
    assert set(names.values()) == {1}


async def test_a_create_that_timed_out_is_found_once_wordpress_got_to_it(
    wordpress: WordPressServer, policy: OutboundPolicy,
) -> None:
    """The create reaches WordPress only after the client gave up (a slow proxy): the
    publisher waits `settle_delay` before looking, finds the post and adopts it."""
    first = next_content_id(PUBLISHES)
    held: list[str] = []

    def hold_first_create(method: str, path: str) -> Fault | None:
        if method == "POST" and path == "/wp-json/wp/v2/posts" and not held:
            held.append(path)
            return Fault.SLOW_FORWARD
        return None

    proxy = FaultProxy(wordpress.url, hold_first_create)
    proxy.hold_seconds = 4.0
    await proxy.start()
    try:
        site = WordPressSite(key="slow", url=proxy.url, username="admin",
                             app_password=BoundSecret.bind(wordpress.app_password, proxy.url),
                             seo_fields=frozenset())
        publisher = Publisher(InMemoryPublicationStore(), policy=policy, timeout=2.5,
                              settle_delay=6.0, retry_delay=0.01)
        content = PublishableContent(content_id=first, revision=1, title=f"Slow {first}",
                                     html="<p>slow</p>")
        result = await publisher.publish(site, content)
    finally:
        await proxy.stop()
    assert held
    assert result.adopted
    posts, _ = wordpress_rows(wordpress, first)
    assert [p["id"] for p in posts] == [result.post_id]
