"""What the real WordPress 6.1 does, that the publisher is built around. If Debian's package
changes behaviour, these fail first and say which assumption broke."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request

import pytest

from libs.common.outbound import BoundSecret, OutboundPolicy
from libs.common.testing.wordpress import WordPressServer
from services.writer.publishing.wp_client import WordPressClient, WordPressError, WordPressSite


def test_the_harness_runs_debians_wordpress_6_1(wordpress: WordPressServer) -> None:
    assert wordpress.version.startswith("6.1")
    assert wordpress.php("echo wp_get_environment_type();") == "local"
    assert wordpress.php("echo get_option('permalink_structure');") == "/%postname%/"


def _status(url: str, authorization: str | None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if authorization:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - loopback
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_wrong_application_password_answers_like_none(wordpress: WordPressServer) -> None:
    url = f"{wordpress.url}/wp-json/wp/v2/users/me"
    wrong = "Basic " + base64.b64encode(b"admin:abcd efgh ijkl mnop qrst uvwx").decode()
    right = "Basic " + base64.b64encode(f"admin:{wordpress.app_password}".encode()).decode()
    assert _status(url, wrong) == _status(url, None)
    assert _status(url, None)[0] == 401
    assert _status(url, right)[0] == 200


async def test_known_traps_of_the_rest_api(wp_site: WordPressSite, policy: OutboundPolicy,
                                           content_id: int) -> None:
    async with WordPressClient(wp_site, policy=policy) as wp:
        draft = await wp.create_post({"title": f"Trap {content_id}", "status": "draft"})
        assert draft.slug == ""  # a draft's slug is empty until it is published
        dropped = await wp.create_post({"title": "x", "status": "draft",
                                        "categories": [987654], "featured_media": 987654})
        assert (dropped.categories, dropped.featured_media) == ((), 0)  # dropped, with a 201
        first = await wp.create_post({"title": "same", "status": "draft", "content": "c"})
        again = await wp.create_post({"title": "same", "status": "draft", "content": "c"})
        assert again.id != first.id  # a resent create is a second post
        term = await wp.create_term("tags", f"trap {content_id}")
        with pytest.raises(WordPressError) as caught:
            await wp.call("POST", "/wp/v2/tags", json={"name": f"trap {content_id}"})
        assert caught.value.code == "term_exists"
        assert caught.value.data["term_id"] == term.id
        assert (await wp.create_term("tags", f"trap {content_id}")).id == term.id
        listed = await wp.call("GET", "/wp/v2/posts", params={"status": "draft", "per_page": 1})
        assert listed.total is not None
        assert listed.total >= 3
        assert listed.total_pages == listed.total


async def test_the_client_never_sends_the_password_to_another_url(
    wordpress: WordPressServer, policy: OutboundPolicy,
) -> None:
    """A site whose URL changed after its password was saved: the call is refused before
    anything is sent, with a 400 naming the field."""
    from libs.common.problems import ValidationFailed

    site = WordPressSite(key="moved", url=wordpress.url, username="admin",
                         app_password=BoundSecret.bind(wordpress.app_password,
                                                       "https://old.example/"))
    calls: list[object] = []
    async with WordPressClient(site, policy=policy, on_call=calls.append) as wp:
        with pytest.raises(ValidationFailed) as caught:
            await wp.me()
    assert caught.value.errors is not None
    assert "app_password" in caught.value.errors
    assert calls == []
