"""Fixtures for the publishing tests: the session's real WordPress as a saved site, the
development outbound policy (the site is on loopback), unique content ids per test, and
images. Every test here runs under the loopback-only socket guard."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image

from libs.common.outbound import BoundSecret, OutboundPolicy
from libs.common.testing.network import NetworkGuard
from libs.common.testing.wordpress import SiteAccess, WordPressServer
from services.writer.publishing.publisher import ImageAsset
from services.writer.publishing.wp_client import WordPressSite

_next_id = [random.SystemRandom().randrange(10_000, 10_000_000, 100_000)]


@pytest.fixture(autouse=True)
def _loopback(loopback_only: NetworkGuard) -> NetworkGuard:
    return loopback_only


@pytest.fixture
def policy() -> OutboundPolicy:
    return OutboundPolicy(allow_private=True)


def site_from(access: SiteAccess, key: str = "site-1") -> WordPressSite:
    return WordPressSite(
        key=key, url=access.url, username=access.username,
        app_password=BoundSecret.bind(access.app_password, access.url),
    )


@pytest.fixture(scope="session")
def wp_site(wordpress: WordPressServer) -> WordPressSite:
    return site_from(wordpress.site)


def next_content_id(count: int = 1) -> int:
    """The first of `count` content ids no other test of the session uses (they share one
    WordPress, and markers carry content ids)."""
    first = _next_id[0]
    _next_id[0] += count
    return first


@pytest.fixture
def content_id() -> int:
    return next_content_id()


def png(seed: int, size: tuple[int, int] = (40, 30)) -> bytes:
    rng = random.Random(seed)
    image = Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    image.putpixel((0, 0), (seed % 256, (seed >> 8) % 256, (seed >> 16) % 256))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def image(seed: int, *, ref: str | None = None, alt: str = "") -> ImageAsset:
    return ImageAsset(data=png(seed), media_type="image/png", filename=f"picture-{seed}.png",
                      alt=alt or f"picture {seed}", title=f"Picture {seed}", ref=ref)
