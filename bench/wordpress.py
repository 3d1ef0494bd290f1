"""Publishing to a real WordPress: HTTP calls per post, and our time against WordPress's own.

    python -m bench.wordpress [--posts 50] [--warmup 3]

Starts Debian's WordPress 6.1 under `php -S` on a private MariaDB
(`libs/common/testing/wordpress.py`), then publishes `--posts` contents, one after the
other, each with its own featured image (a 1200 by 630 JPEG of ~60 KB) and three terms (one
category, two tags) from a set the warm-up publishes created, so terms are cached, as they
are after the first publishes to a site. The site's Yoast fields are known (from the
connection test), as the writer service will pass them.

Figures:
- HTTP calls per post (goal ≤ 6 with terms cached);
- our time against WordPress's own time for the same calls (goal: we add ≤ 20 %).
  WordPress's own time is what PHP spent on each request, from the request's start to the
  REST answer (`X-WP-Elapsed`, added by the harness's must-use plugin). "We add" is
  everything else in `publish()`: our code between calls, and HTTP on loopback (the
  client's and `php -S`'s parsing, connection setup; `php -S` closes every connection).
  The part that is our code alone (publish's wall time minus the calls' round trips, as
  the client measured them) is printed too.
Results are printed and written to bench/results/wordpress.json.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import statistics
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image

from libs.common.outbound import BoundSecret, OutboundPolicy
from libs.common.testing.wordpress import WordPressServer
from services.writer.publishing.publisher import ImageAsset, PublishableContent, Publisher
from services.writer.publishing.store import InMemoryPublicationStore
from services.writer.publishing.wp_client import SEO_FIELDS, CallRecord, WordPressSite

RESULTS = Path(__file__).parent / "results" / "wordpress.json"
CATEGORIES = ["Gardening", "Cooking", "Travel"]
TAGS = ["spring", "small spaces", "budget", "beginners", "tools", "weekend"]


def featured(seed: int) -> ImageAsset:
    rng = random.Random(seed)
    img = Image.new("RGB", (1200, 630), (rng.randrange(256), rng.randrange(256), 90))
    for _ in range(400):
        x, y = rng.randrange(1180), rng.randrange(610)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        img.paste(colour, (x, y, x + rng.randrange(5, 20), y + rng.randrange(5, 20)))
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=85)
    return ImageAsset(data=out.getvalue(), media_type="image/jpeg", filename=f"cover-{seed}.jpg",
                      alt=f"cover {seed}")


def content(n: int, rng: random.Random) -> PublishableContent:
    paragraphs = "\n".join(f"<p>Paragraph {i} of article {n}: " + "words " * 60 + "</p>"
                           for i in range(12))
    return PublishableContent(
        content_id=1_000_000 + n, revision=1, title=f"Benchmark article number {n}",
        html=f"<h2>Introduction</h2>\n{paragraphs}", excerpt=f"Article {n} in short.",
        categories=[rng.choice(CATEGORIES)], tags=rng.sample(TAGS, 2),
        featured_image=featured(n), seo_title=f"Article {n} | Bench",
        meta_description=f"About article {n}.", focus_keyword="benchmark article",
    )


async def run(posts: int, warmup: int) -> dict[str, Any]:
    rng = random.Random(7)
    with WordPressServer() as wordpress:
        site = WordPressSite(key="bench", url=wordpress.url, username="admin",
                             app_password=BoundSecret.bind(wordpress.app_password, wordpress.url),
                             seo_fields=frozenset(SEO_FIELDS))
        calls: list[CallRecord] = []
        publisher = Publisher(InMemoryPublicationStore(), policy=OutboundPolicy(allow_private=True),
                              on_call=calls.append)
        # Warm-up: every term created once (cached from then on), PHP's OPcache filled.
        for n in range(warmup):
            warm = content(1000 + n, rng)
            await publisher.publish(site, replace(warm, categories=CATEGORIES, tags=TAGS))
        calls.clear()
        per_post: list[dict[str, Any]] = []
        for n in range(posts):
            item = content(n, rng)
            before = len(calls)
            started = time.perf_counter()
            result = await publisher.publish(site, item)
            wall = time.perf_counter() - started
            mine = calls[before:]
            assert result.status == "published", result
            per_post.append({
                "calls": len(mine),
                "wall": wall,
                "round_trips": sum(c.seconds for c in mine),
                "wordpress": sum(c.wp_seconds or 0.0 for c in mine),
                "missing_wp_time": sum(1 for c in mine if c.wp_seconds is None),
            })
        kinds = Counter(f"{c.method} {c.route.split('/')[3] if c.route.count('/') > 2 else c.route}"
                        for c in calls)
    wall = sum(p["wall"] for p in per_post)
    wp = sum(p["wordpress"] for p in per_post)
    trips = sum(p["round_trips"] for p in per_post)
    return {
        "posts": posts,
        "calls_per_post": {"mean": statistics.mean(p["calls"] for p in per_post),
                           "max": max(p["calls"] for p in per_post)},
        "calls_by_kind": dict(kinds),
        "ms_per_post": {"publish": 1000 * wall / posts, "wordpress": 1000 * wp / posts,
                        "round_trips": 1000 * trips / posts},
        "added_over_wordpress_pct": 100 * (wall - wp) / wp,
        "our_code_pct": 100 * (wall - trips) / wp,
        "http_and_php_server_pct": 100 * (trips - wp) / wp,
        "calls_without_wp_time": sum(p["missing_wp_time"] for p in per_post),
        "p50_publish_ms": 1000 * statistics.median(p["wall"] for p in per_post),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    figures = asyncio.run(run(args.posts, args.warmup))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2))
    calls = figures["calls_per_post"]
    ms = figures["ms_per_post"]
    print(f"posts published            {figures['posts']}")
    print(f"HTTP calls per post        {calls['mean']:.2f} (max {calls['max']})"
          f"   goal <= 6: {'met' if calls['max'] <= 6 else 'NOT met'}")
    print(f"calls by kind              {figures['calls_by_kind']}")
    print(f"per post: publish {ms['publish']:.1f} ms, WordPress's own {ms['wordpress']:.1f} ms,"
          f" round trips {ms['round_trips']:.1f} ms (p50 publish {figures['p50_publish_ms']:.1f})")
    added = figures["added_over_wordpress_pct"]
    print(f"we add                     {added:.1f} % over WordPress's own time"
          f"   goal <= 20 %: {'met' if added <= 20 else 'NOT met'}")
    print(f"  of which our code        {figures['our_code_pct']:.1f} %")
    print(f"  of which HTTP + php -S   {figures['http_and_php_server_pct']:.1f} %")


if __name__ == "__main__":
    main()
