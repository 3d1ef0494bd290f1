"""The connection test against the real WordPress (each failure names its fix), categories
and tags both ways, and importing a site's posts."""

from __future__ import annotations

import pytest

from libs.common.embedded import free_port
from libs.common.outbound import BoundSecret, OutboundPolicy
from libs.common.testing.faultproxy import Fault, FaultProxy
from libs.common.testing.network import StubResolver
from libs.common.testing.wordpress import WordPressServer
from services.writer.publishing.connection import check_connection
from services.writer.publishing.publisher import PublishableContent, Publisher
from services.writer.publishing.store import InMemoryPublicationStore
from services.writer.publishing.sync import import_posts, pull_terms, push_terms
from services.writer.publishing.wp_client import WordPressClient, WordPressSite
from services.writer.tests.publishing.conftest import image, site_from


def failed(report_checks: list) -> tuple[str, str | None] | None:
    bad = [c for c in report_checks if c.required and not c.ok]
    return (bad[0].name, bad[0].fix) if bad else None


async def test_a_good_site_passes_every_check(wp_site: WordPressSite,
                                              policy: OutboundPolicy) -> None:
    report = await check_connection(wp_site, policy=policy)
    assert report.ok
    assert [c.name for c in report.checks] == [
        "reachable", "rest_api", "credentials", "capabilities", "seo_fields"]
    assert all(c.ok for c in report.checks)
    assert report.rest_style == "pretty"
    assert report.seo_fields == {"_yoast_wpseo_title", "_yoast_wpseo_metadesc",
                                 "_yoast_wpseo_focuskw"}
    assert report.as_dict()["site_name"] == "IGNY8 test site"


async def test_without_yoast_the_report_passes_with_a_warning(
    wordpress: WordPressServer, policy: OutboundPolicy,
) -> None:
    report = await check_connection(site_from(wordpress.site_without_yoast), policy=policy)
    assert report.ok
    seo = report.checks[-1]
    assert (seo.name, seo.ok, seo.required) == ("seo_fields", False, False)
    assert seo.fix is not None
    assert "Yoast" in seo.fix


async def test_a_wrong_password_names_the_fix(wordpress: WordPressServer,
                                              policy: OutboundPolicy) -> None:
    site = WordPressSite(key="k", url=wordpress.url, username="admin",
                         app_password=BoundSecret.bind("abcd efgh ijkl mnop", wordpress.url))
    report = await check_connection(site, policy=policy)
    assert not report.ok
    name, fix = failed(report.checks) or ("", "")
    assert name == "credentials"
    assert fix is not None
    assert "Application Password" in fix


async def test_a_user_without_capabilities_is_told_the_role(
    wordpress: WordPressServer, policy: OutboundPolicy,
) -> None:
    password = wordpress.php(
        "$id = username_exists('reader') ?: wp_insert_user(array('user_login' => 'reader',"
        " 'user_pass' => wp_generate_password(), 'role' => 'subscriber'));"
        "list($pw) = WP_Application_Passwords::create_new_application_password($id,"
        " array('name' => 'test')); echo $pw;"
    )
    site = WordPressSite(key="k", url=wordpress.url, username="reader",
                         app_password=BoundSecret.bind(password, wordpress.url))
    report = await check_connection(site, policy=policy)
    name, fix = failed(report.checks) or ("", "")
    assert name == "capabilities"
    assert "upload_files" in report.checks[-1].message
    assert fix == "Give the user the Author role or higher."


async def test_unreachable_refused_and_firewalled_sites(
    wordpress: WordPressServer, policy: OutboundPolicy,
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    report = await check_connection(site_from_url(closed, wordpress), policy=policy)
    assert failed(report.checks) is not None
    assert report.checks[0].name == "reachable"
    assert "cannot be reached" in report.checks[0].message

    strict = OutboundPolicy()
    resolver = StubResolver({"blog.internal.example": ["10.1.2.3"]})
    for url in (wordpress.url, "http://blog.internal.example/", "http://169.254.169.254/"):
        report = await check_connection(site_from_url(url, wordpress), policy=strict,
                                        resolver=resolver)
        assert report.checks[0].name == "reachable"
        assert "not allowed" in report.checks[0].message

    proxy = FaultProxy(wordpress.url, lambda method, path: Fault.FIREWALL)
    await proxy.start()
    try:
        report = await check_connection(site_from_url(proxy.url, wordpress), policy=policy)
    finally:
        await proxy.stop()
    bad = [c for c in report.checks if not c.ok]
    assert bad[0].name == "rest_api"
    assert "HTML page" in bad[0].message
    assert bad[0].fix is not None
    assert "firewall" in bad[0].fix


def site_from_url(url: str, wordpress: WordPressServer) -> WordPressSite:
    return WordPressSite(key="k", url=url, username="admin",
                         app_password=BoundSecret.bind(wordpress.app_password, url))


async def test_terms_both_ways_and_importing_posts(
    wordpress: WordPressServer, wp_site: WordPressSite, policy: OutboundPolicy,
    content_id: int,
) -> None:
    async with WordPressClient(wp_site, policy=policy) as client:
        ours = [f"Sync {content_id} a", f"Sync {content_id} b"]
        ids = await push_terms(client, "categories", ours)
        terms = await pull_terms(client)
        assert {t.name: t.id for t in terms.categories if t.name in ours} == ids
        assert await push_terms(client, "categories", ours, terms) == ids  # no new call needed
        outside = await client.create_post({"title": f"Written in WordPress {content_id}",
                                            "content": "<p>by hand</p>", "status": "publish",
                                            "categories": [ids[ours[0]]]})
    published = await Publisher(InMemoryPublicationStore(), policy=policy).publish(
        wp_site, PublishableContent(content_id=content_id, revision=3, title="From IGNY8",
                                    html="<p>ours</p>", tags=[f"sync tag {content_id}"],
                                    featured_image=image(content_id)))
    async with WordPressClient(wp_site, policy=policy) as client:
        terms = await pull_terms(client)
        imported = {item.post.id: item async for item in import_posts(client, terms)}
    by_hand = imported[outside.id]
    assert (by_hand.igny8_content_id, by_hand.categories) == (None, (ours[0],))
    assert by_hand.html == "<p>by hand</p>"
    mine = imported[published.post_id or 0]
    assert mine.igny8_content_id == content_id
    assert mine.html == "<p>ours</p>"
    assert mine.tags == (f"sync tag {content_id}",)
    assert mine.featured_image_url is not None
    assert mine.featured_image_url.startswith(wordpress.url + "/wp-content/uploads/")


@pytest.mark.parametrize("style", ["query"])
async def test_the_client_speaks_rest_route_too(wp_site: WordPressSite, policy: OutboundPolicy,
                                                style: str) -> None:
    from dataclasses import replace

    async with WordPressClient(replace(wp_site, rest_style=style), policy=policy) as client:
        me = await client.me()
        assert me["capabilities"]["publish_posts"] is True
        posts = await client.find_posts(search="nothing-matches-this-string")
        assert posts == []


async def test_a_name_that_does_not_resolve_is_unreachable_not_refused(
    wordpress: WordPressServer,
) -> None:
    report = await check_connection(site_from_url("https://no-such-blog.example/", wordpress),
                                    policy=OutboundPolicy(), resolver=StubResolver({}))
    (check,) = report.checks
    assert (check.name, check.ok) == ("reachable", False)
    assert check.message == "The site's host name does not resolve: check the address."
