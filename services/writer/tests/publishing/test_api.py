"""Publishing through writer's HTTP API against the real WordPress: integrations (CRUD,
credentials never answered, connection tests, sync), the outbound guard's 400s, publish and
unpublish as jobs read back through WordPress's own REST API, publications, webhooks
(signature, timestamp, replay), and tenancy (another tenant's rows are 404s)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from nats.aio.client import Client as NATS

from libs.common.db import Database
from libs.common.testing.apps import running_app
from libs.common.testing.checks import finished_task, rows, task_progress
from libs.common.testing.network import StubResolver
from libs.common.testing.tokens import TestIssuer
from libs.common.testing.wordpress import WordPressServer
from libs.common.testing.workers import running_worker
from services.writer.main import create_app
from services.writer.publishing.webhooks import signed_headers
from services.writer.settings import WriterSettings
from services.writer.tests.conftest import MakeTenant, Tenant, create, in_sector
from services.writer.tests.publishing.conftest import png
from services.writer.tests.publishing.testing import (
    image_url,
    integrate,
    store_image,
    wp_body,
    wp_get,
)
from services.writer.worker import run

INTEGRATIONS = "/api/v1/integration/integrations/"
CONTRACTS = Path(__file__).resolve().parents[4] / "docs" / "contracts.md"


def documented_events() -> dict[str, set[str]]:
    """Publishing's events and their `data` fields as docs/contracts.md lists them."""
    section = CONTRACTS.read_text().split("### Events and jobs of writer's publishing")[1]
    table = re.findall(r"^\| `(writer\.[a-z_.]+)` \| (.+) \|$", section, re.MULTILINE)
    return {kind: set(re.findall(r"`([a-z_]+)`", fields)) for kind, fields in table}


def site_key(t: Tenant) -> dict[str, str]:
    """What the gateway forwards for the site's `ApiKey`: a token of the site's bot."""
    return t.headers(role="system_bot", site_id=t.site_id)


async def test_integration_crud_never_answers_the_credentials(
        client: httpx.AsyncClient, tenant: Tenant, make_tenant: MakeTenant,
        wordpress: WordPressServer, writer_db: Database) -> None:
    h = tenant.headers()
    row = await integrate(client, tenant, wordpress)
    password = wordpress.site.app_password
    assert row["has_credentials"] is True
    assert row["config"]["site_url"] == wordpress.site.url
    assert row["webhook_secret"].startswith("whsec_")
    assert (row["sync_status"], row["is_active"], row["sync_enabled"]) == ("idle", True, False)
    listed = await client.get(INTEGRATIONS, headers=h)
    assert listed.status_code == 200
    for answer in (listed.text, (await client.get(f"{INTEGRATIONS}{row['id']}/", headers=h)).text):
        assert password not in answer
        assert "\"credentials\"" not in answer
    (stored,) = await rows(writer_db, tenant.account_id,
                           "SELECT credentials FROM site_integrations WHERE id = :i", i=row["id"])
    assert password not in stored["credentials"]
    assert password.replace(" ", "") not in stored["credentials"]

    # One integration per site; the site's key sees it; a viewer may not; others get 404s.
    again = await client.post(INTEGRATIONS, json=wp_body(tenant, wordpress), headers=h)
    assert again.status_code == 400
    assert "site_id" in again.json()["errors"]
    assert (await client.get(f"{INTEGRATIONS}{row['id']}/", headers=site_key(tenant))
            ).status_code == 200
    assert (await client.get(INTEGRATIONS, headers=tenant.headers(role="viewer"))
            ).status_code == 403
    other = await make_tenant()
    for method in ("GET", "PATCH", "DELETE"):
        r = await client.request(method, f"{INTEGRATIONS}{row['id']}/", headers=other.headers(),
                                 json={"is_active": False} if method == "PATCH" else None)
        assert r.status_code == 404, (method, r.text)
    r = await client.post(f"{INTEGRATIONS}{row['id']}/test_connection/", headers=other.headers())
    assert r.status_code == 404
    assert (await client.get(INTEGRATIONS, headers=other.headers())).json()["count"] == 0

    # A new URL needs the password again; the flags change alone.
    moved = await client.patch(f"{INTEGRATIONS}{row['id']}/", headers=h,
                               json={"config": {"site_url": "http://127.0.0.2:1/"}})
    assert moved.status_code == 400
    assert "credentials" in moved.json()["errors"]
    off = await client.patch(f"{INTEGRATIONS}{row['id']}/", headers=h,
                             json={"sync_enabled": True})
    assert off.status_code == 200
    assert off.json()["sync_enabled"] is True
    assert (await client.delete(f"{INTEGRATIONS}{row['id']}/", headers=h)).status_code == 204
    assert (await client.get(f"{INTEGRATIONS}{row['id']}/", headers=h)).status_code == 404


async def test_connection_tests_saved_and_unsaved(
        client: httpx.AsyncClient, tenant: Tenant, wordpress: WordPressServer,
        writer_db: Database) -> None:
    h = tenant.headers()
    row = await integrate(client, tenant, wordpress)
    r = await client.post(f"{INTEGRATIONS}{row['id']}/test_connection/", headers=h)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["ok"] is True
    assert [c["name"] for c in report["checks"]] == [
        "reachable", "rest_api", "credentials", "capabilities", "seo_fields"]
    saved = (await client.get(f"{INTEGRATIONS}{row['id']}/", headers=h)).json()
    assert saved["config"]["rest_style"] == "pretty"
    assert len(saved["config"]["seo_fields"]) == 3

    bad = await client.post(INTEGRATIONS + "test-connection/", headers=h, json={
        "site_url": wordpress.site.url, "username": "admin",
        "app_password": "abcd efgh ijkl mnop"})
    assert bad.status_code == 200, bad.text
    failed = [c for c in bad.json()["checks"] if not c["ok"]]
    assert bad.json()["ok"] is False
    assert failed[0]["name"] == "credentials"
    assert "Application Password" in failed[0]["fix"]
    events = await rows(writer_db, tenant.account_id,
                        "SELECT kind, success FROM sync_events WHERE integration_id = :i",
                        i=row["id"])
    assert events == [{"kind": "test_connection", "success": True}]
    assert (await client.get(INTEGRATIONS, headers=h)).json()["count"] == 1


@pytest.fixture
async def strict_client(settings: WriterSettings, issuer: TestIssuer
                        ) -> AsyncIterator[httpx.AsyncClient]:
    """Writer as production runs it: private targets refused; DNS is a stub."""
    app = create_app(settings.model_copy(update={"outbound_allow_private": False}),
                     keys_fetcher=issuer.fetcher())
    app.state.outbound_resolver = StubResolver({
        "intranet.example": ["10.1.2.3"], "metadata.example": ["169.254.169.254"],
        "mixed.example": ["93.184.216.34", "192.168.0.10"], "six.example": ["fd00::7"]})
    async with running_app(app) as c:
        yield c


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/", "http://localhost:8080/", "http://10.0.0.5/", "http://172.16.3.4/",
    "http://192.168.1.1/", "http://169.254.169.254/latest/meta-data/", "http://[::1]/",
    "http://[fd00::1]/", "http://[fe80::1]/", "http://[::ffff:10.0.0.1]/",
    "http://[::ffff:169.254.169.254]/", "http://intranet.example/",
    "http://metadata.example/", "http://mixed.example/", "http://six.example/",
    "http://0x7f000001/", "ftp://example.com/",
])
async def test_the_outbound_guard_refuses_internal_site_urls(
        strict_client: httpx.AsyncClient, tenant: Tenant, url: str) -> None:
    h = tenant.headers()
    body = {"site_id": tenant.site_id, "config": {"site_url": url},
            "credentials": {"username": "admin", "app_password": "x"}}
    r = await strict_client.post(INTEGRATIONS, json=body, headers=h)
    assert r.status_code == 400, r.text
    assert list(r.json()["errors"]) == ["config.site_url"]
    r = await strict_client.post(INTEGRATIONS + "test-connection/", headers=h, json={
        "site_url": url, "username": "admin", "app_password": "x"})
    assert r.status_code == 400, r.text
    assert list(r.json()["errors"]) == ["site_url"]
    assert (await strict_client.get(INTEGRATIONS, headers=h)).json()["count"] == 0


async def test_metadata_stays_refused_when_private_targets_are_allowed(
        client: httpx.AsyncClient, tenant: Tenant) -> None:
    body = {"site_id": tenant.site_id, "config": {"site_url": "http://169.254.169.254/"}}
    r = await client.post(INTEGRATIONS, json=body, headers=tenant.headers())
    assert r.status_code == 400
    assert "metadata" in r.json()["errors"]["config.site_url"][0]


async def test_publish_through_the_api_and_read_back_from_wordpress(
        client: httpx.AsyncClient, tenant: Tenant, make_tenant: MakeTenant,
        wordpress: WordPressServer, settings: WriterSettings, writer_db: Database,
        nc: NATS) -> None:
    h = tenant.headers()
    integration = await integrate(client, tenant, wordpress)
    stamp = uuid.uuid4().hex[:8]
    (content,) = await create(client, tenant, "writer/content/", in_sector(
        tenant, title=f"Brewing Green Tea {stamp}", html="<p>placeholder</p>",
        meta_title="Green tea, brewed right", meta_description=f"How to brew green tea {stamp}.",
        slug=f"brewing-green-tea-{stamp}", primary_keyword="brew green tea",
        categories=[f"Tea {stamp}", f"Guides {stamp}"],
        tags=[f"green {stamp}", f"sencha {stamp}", f"brewing {stamp}"]))
    featured = await store_image(settings, tenant, writer_db, content["id"], "featured", 0, 11)
    first = await store_image(settings, tenant, writer_db, content["id"], "in_article", 1, 12)
    second = await store_image(settings, tenant, writer_db, content["id"], "in_article", 2, 13)
    html = (f"<p>Green tea wants cooler water.</p><h2>Water</h2>"
            f"<img src=\"{image_url(settings, first['id'])}\" alt=\"Picture 12\">"
            f"<p>About 80 °C.</p><h2>Time</h2>"
            f"<img src=\"{image_url(settings, second['id'])}\" alt=\"Picture 13\">"
            f"<p>Two minutes.</p>")
    r = await client.patch(f"/api/v1/writer/content/{content['id']}/", headers=h,
                           json={"html": html})
    assert r.status_code == 200, r.text

    # Bad requests are 400s naming the field, another tenant's content a 404.
    r = await client.post(f"/api/v1/writer/content/{content['id']}/publish/", headers=h,
                          json={"status": "future"})
    assert r.status_code == 400
    assert "date_gmt" in r.json()["errors"]
    other = await make_tenant()
    r = await client.post(f"/api/v1/writer/content/{content['id']}/publish/",
                          headers=other.headers(), json={"status": "publish"})
    assert r.status_code == 404

    progress = await task_progress(nc, "writer")
    async with running_worker(run, settings):
        r = await client.post(f"/api/v1/writer/content/{content['id']}/publish/", headers=h,
                              json={"status": "publish"})
        assert r.status_code == 200, r.text
        done = await finished_task(progress, r.json()["task_id"], timeout=90)
        assert done["state"] == "SUCCESS", done
        result = done["meta"]["result"]
        assert {"MEDIA", "TERMS", "POST", "STATUS"} <= set(done["phases_seen"]) | {
            s["step"] for s in done["meta"]["request_steps"]}

        post = await wp_get(wordpress, f"/wp/v2/posts/{result['post_id']}")
        assert post["status"] == "publish"
        assert post["title"]["raw"] == content["title"]
        assert post["slug"] == f"brewing-green-tea-{stamp}"
        assert post["excerpt"]["raw"] == f"How to brew green tea {stamp}."
        assert "Two minutes." in post["content"]["raw"]
        assert "gateway.test" not in post["content"]["raw"]
        assert f"<!-- igny8:content={content['id']}:rev=" in post["content"]["raw"]
        cats = {c["name"] for c in await wp_get(
            wordpress, "/wp/v2/categories", include=",".join(map(str, post["categories"])))}
        assert cats == {f"Tea {stamp}", f"Guides {stamp}"}
        tags = {t["name"] for t in await wp_get(
            wordpress, "/wp/v2/tags", include=",".join(map(str, post["tags"])))}
        assert tags == {f"green {stamp}", f"sencha {stamp}", f"brewing {stamp}"}
        media = await wp_get(wordpress, f"/wp/v2/media/{post['featured_media']}")
        assert media["slug"].startswith("igny8-img-")
        assert media["alt_text"] == featured["alt_text"]
        assert post["featured_media"] == result["featured_media_id"]
        assert len(result["media_ids"]) == 3
        for media_id in result["media_ids"][1:]:
            inline = await wp_get(wordpress, f"/wp/v2/media/{media_id}")
            assert inline["source_url"] in post["content"]["raw"]
        assert post["meta"]["_yoast_wpseo_title"] == "Green tea, brewed right"
        assert post["meta"]["_yoast_wpseo_focuskw"] == "brew green tea"

        got = (await client.get(f"/api/v1/writer/content/{content['id']}/", headers=h)).json()
        assert (got["status"], got["external_id"], got["external_status"]) == (
            "published", str(result["post_id"]), "publish")
        assert got["external_url"] == post["link"]
        listed = (await client.get("/api/v1/publisher/publications/", headers=h,
                                   params={"content_id": content["id"]})).json()
        assert listed["count"] == 1
        (pub,) = listed["results"]
        # The post id is text, as content's external_id is (ADR 0038).
        assert (pub["status"], pub["external_id"], pub["url"], pub["attempt"]) == (
            "published", str(result["post_id"]), post["link"], 1)
        assert pub["integration_id"] == integration["id"]
        for params in ({"status": "failed"}, {"site_id": other.site_id}):
            assert (await client.get("/api/v1/publisher/publications/", headers=h,
                                     params=params)).json()["count"] == 0
        assert (await client.get("/api/v1/publisher/publications/",
                                 headers=other.headers())).json()["count"] == 0
        one = f"/api/v1/publisher/publications/{pub['id']}/"
        assert (await client.get(one, headers=h)).json()["external_id"] == str(result["post_id"])
        assert (await client.get(one, headers=site_key(tenant))).status_code == 200
        assert (await client.get(one, headers=other.headers())).status_code == 404
        assert (await client.get(one, headers=site_key(other))).status_code == 404
        for action in ("publish", "unpublish"):
            r = await client.post(f"/api/v1/writer/content/{content['id']}/{action}/",
                                  headers=site_key(other), json={})
            assert r.status_code == 404, (action, r.text)

        # Publishing again updates the same post; unpublishing takes it back to draft.
        r = await client.post(f"/api/v1/writer/content/{content['id']}/publish/", headers=h,
                              json={"status": "publish"})
        again = await finished_task(progress, r.json()["task_id"], timeout=90)
        assert again["state"] == "SUCCESS", again
        assert again["meta"]["result"]["post_id"] == result["post_id"]
        r = await client.post(f"/api/v1/writer/content/{content['id']}/unpublish/", headers=h)
        assert r.status_code == 200, r.text
        off = await finished_task(progress, r.json()["task_id"], timeout=90)
        assert off["state"] == "SUCCESS", off
        post = await wp_get(wordpress, f"/wp/v2/posts/{result['post_id']}")
        assert post["status"] == "draft"
    same = await wp_get(wordpress, "/wp/v2/posts", search=f"igny8:content={content['id']}:",
                        status="any")
    assert [p["id"] for p in same] == [result["post_id"]]
    got = (await client.get(f"/api/v1/writer/content/{content['id']}/", headers=h)).json()
    assert (got["status"], got["external_status"]) == ("review", "draft")
    published = await rows(writer_db, tenant.account_id,
                           "SELECT subject, payload FROM outbox WHERE subject LIKE"
                           " 'igny8.writer.content.%published' AND"
                           " (payload->>'account_id')::bigint = :a ORDER BY seq")
    assert [e["subject"] for e in published] == [
        "igny8.writer.content.published", "igny8.writer.content.published",
        "igny8.writer.content.unpublished"]
    assert published[0]["payload"]["data"]["external_id"] == str(result["post_id"])
    documented = documented_events()
    for event in published:
        kind = event["subject"].removeprefix("igny8.")
        assert set(event["payload"]["data"]) == documented[kind], kind


async def test_webhooks_need_the_site_key_and_a_fresh_signature(
        client: httpx.AsyncClient, tenant: Tenant, make_tenant: MakeTenant,
        wordpress: WordPressServer) -> None:
    h = tenant.headers()
    integration = await integrate(client, tenant, wordpress)
    secret = integration["webhook_secret"]
    (content,) = await create(client, tenant, "writer/content/", in_sector(
        tenant, title="Webhook target", html="<p>x</p>"))
    key = site_key(tenant)

    def signed(body: dict[str, Any], message_id: str | None = None,
               timestamp: int | None = None, secret_: str = secret) -> tuple[bytes, dict]:
        raw = orjson.dumps(body)
        return raw, {**key, "Content-Type": "application/json",
                     **signed_headers(secret_, message_id or uuid.uuid4().hex, raw, timestamp)}

    async def state() -> dict[str, Any]:
        r = await client.get(f"/api/v1/writer/content/{content['id']}/", headers=h)
        return {k: r.json()[k] for k in ("status", "external_status", "external_url", "title",
                                         "meta_title", "revision")}

    before = await state()
    status_body = {"content_id": content["id"], "post_id": 4242, "status": "publish",
                   "url": "http://wp.example/webhook-target/"}
    for path in ("/api/v1/integration/webhooks/wordpress/status/",
                 "/api/v1/webhooks/wordpress/status/"):
        raw, headers = signed(status_body, secret_="whsec_" + "A" * 44)
        r = await client.post(path, content=raw, headers=headers)
        assert r.status_code == 401, r.text
        raw, headers = signed(status_body, timestamp=int(time.time()) - 600)
        r = await client.post(path, content=raw, headers=headers)
        assert r.status_code == 401, r.text
        raw, headers = signed(status_body)
        r = await client.post(path, content=raw, headers={**headers, **h})
        assert r.status_code == 403, r.text  # a user's token is not the site's key
        raw, headers = signed(status_body)
        r = await client.post(path, content=raw[:-1] + b', "x": 1}', headers=headers)
        assert r.status_code == 401, r.text  # the body changed after signing
    assert await state() == before

    raw, headers = signed(status_body, message_id="msg-1")
    r = await client.post("/api/v1/webhooks/wordpress/status/", content=raw, headers=headers)
    assert r.status_code == 200, r.text
    after = await state()
    assert (after["status"], after["external_status"], after["external_url"]) == (
        "published", "publish", "http://wp.example/webhook-target/")
    replay = await client.post("/api/v1/integration/webhooks/wordpress/status/", content=raw,
                               headers=headers)
    assert replay.status_code == 409
    assert await state() == after

    raw, headers = signed({"post_id": 4242, "title": "Retitled on the site",
                           "meta_title": "New SEO title"})
    r = await client.post("/api/v1/integration/webhooks/wordpress/metadata/", content=raw,
                          headers=headers)
    assert r.status_code == 200, r.text
    changed = await state()
    assert (changed["title"], changed["meta_title"]) == ("Retitled on the site", "New SEO title")
    assert changed["revision"] == after["revision"] + 1

    raw, headers = signed({"status": "publish"})
    r = await client.post("/api/v1/webhooks/wordpress/status/", content=raw, headers=headers)
    assert r.status_code == 400  # names no post

    # Another tenant's key never reaches this content: with this site's secret its
    # signature fails, with its own the content is not found.
    other = await make_tenant()
    theirs = await integrate(client, other, wordpress)
    raw = orjson.dumps(status_body)
    r = await client.post("/api/v1/webhooks/wordpress/status/", content=raw, headers={
        **site_key(other), **signed_headers(secret, uuid.uuid4().hex, raw)})
    assert r.status_code == 401
    r = await client.post("/api/v1/webhooks/wordpress/status/", content=raw, headers={
        **site_key(other), **signed_headers(theirs["webhook_secret"], uuid.uuid4().hex, raw)})
    assert r.status_code == 404
    assert await state() == changed


async def test_sync_both_ways_and_the_structure_actions(
        client: httpx.AsyncClient, tenant: Tenant, wordpress: WordPressServer,
        writer_db: Database) -> None:
    h = tenant.headers()
    integration = await integrate(client, tenant, wordpress)
    base = f"{INTEGRATIONS}{integration['id']}"
    stamp = uuid.uuid4().hex[:8]
    await create(client, tenant, "writer/taxonomies/",
                 {"site_id": tenant.site_id, "name": f"Ours {stamp}", "taxonomy_type": "tag"})
    site = wordpress.site
    async with httpx.AsyncClient(auth=(site.username, site.app_password)) as wp:
        theirs = (await wp.post(f"{site.url}/wp-json/wp/v2/categories",
                                json={"name": f"Theirs {stamp}"})).json()
        post = (await wp.post(f"{site.url}/wp-json/wp/v2/posts", json={
            "title": f"Written on the site {stamp}", "content": "<p>Hello from WordPress.</p>",
            "status": "publish", "categories": [theirs["id"]]})).json()

    r = await client.post(f"{base}/sync/", headers=site_key(tenant))  # the plugin may sync
    assert r.status_code == 200, r.text
    counts = r.json()
    assert counts["sync_status"] == "success"
    assert counts["terms_pushed"] == 1
    assert counts["terms_pulled"] >= 1
    assert counts["posts_imported"] >= 1
    found = await wp_get(wordpress, "/wp/v2/tags", slug=f"ours-{stamp}")
    assert [t["name"] for t in found] == [f"Ours {stamp}"]
    taxonomies = (await client.get("/api/v1/writer/taxonomies/", headers=h,
                                   params={"site_id": tenant.site_id, "page_size": 1000})).json()
    by_name = {t["name"]: t for t in taxonomies["results"]}
    assert by_name[f"Theirs {stamp}"]["external_id"] == str(theirs["id"])
    assert by_name[f"Ours {stamp}"]["external_id"] == str(found[0]["id"])
    imported = await rows(writer_db, tenant.account_id,
                          "SELECT title, source, status, external_id, categories FROM content"
                          " WHERE account_id = :a AND external_id = :p", p=str(post["id"]))
    assert imported == [{"title": f"Written on the site {stamp}", "source": "wordpress",
                         "status": "published", "external_id": str(post["id"]),
                         "categories": [f"Theirs {stamp}"]}]
    again = (await client.post(f"{base}/sync_wordpress_content/", headers=h)).json()
    assert again["posts_imported"] == 0
    assert again["posts_updated"] >= 1
    assert len(await rows(writer_db, tenant.account_id,
                          "SELECT id FROM content WHERE account_id = :a AND external_id = :p",
                          p=str(post["id"]))) == 1

    status = (await client.get(f"{base}/sync_status/", headers=h)).json()
    assert status["sync_status"] == "success"
    assert status["last_sync_at"] is not None
    assert [e["kind"] for e in status["recent_events"]][:2] == ["sync_wordpress_content", "sync"]
    structure = (await client.post(f"{base}/update-structure/", headers=h)).json()
    assert "post" in structure["post_types"]
    assert any(c["name"] == f"Theirs {stamp}" for c in structure["categories"])
    types = (await client.get(f"{base}/get_content_types/", headers=h)).json()
    assert {t["slug"] for t in types["content_types"]} >= {"post", "page"}
    debug = (await client.get(f"{base}/debug_status/", headers=h)).json()
    assert "webhook_secret" not in debug["integration"]
    assert debug["integration"]["config"]["structure"]["post_types"] == structure["post_types"]
    synced = await rows(writer_db, tenant.account_id,
                        "SELECT payload FROM outbox WHERE subject = 'igny8.writer.integration."
                        "synced' AND (payload->>'account_id')::bigint = :a ORDER BY seq")
    assert [e["payload"]["data"]["kind"] for e in synced] == ["sync", "sync_wordpress_content"]
    assert set(synced[0]["payload"]["data"]) == documented_events()["writer.integration.synced"]


async def test_a_site_that_does_not_answer_is_recorded_and_named(
        client: httpx.AsyncClient, tenant: Tenant) -> None:
    from libs.common.embedded import free_port
    h = tenant.headers()
    url = f"http://127.0.0.1:{free_port(None)}"
    (row,) = await create(client, tenant, "integration/integrations/", {
        "site_id": tenant.site_id, "config": {"site_url": url},
        "credentials": {"username": "admin", "app_password": "abcd efgh ijkl mnop"}})
    r = await client.post(f"{INTEGRATIONS}{row['id']}/sync/", headers=h)
    assert r.status_code == 422, r.text
    assert "cannot be reached" in r.json()["detail"]
    got = (await client.get(f"{INTEGRATIONS}{row['id']}/", headers=h)).json()
    assert got["sync_status"] == "failed"
    assert "cannot be reached" in got["last_error"]
    status = (await client.get(f"{INTEGRATIONS}{row['id']}/sync_status/", headers=h)).json()
    assert [(e["kind"], e["success"]) for e in status["recent_events"]] == [("sync", False)]
    report = (await client.post(f"{INTEGRATIONS}{row['id']}/test_connection/", headers=h)).json()
    assert report["ok"] is False
    assert report["checks"][0]["name"] == "reachable"


async def test_a_publish_that_cannot_reach_the_site_fails_with_its_reason(
        client: httpx.AsyncClient, tenant: Tenant, settings: WriterSettings,
        writer_db: Database, nc: NATS) -> None:
    from libs.common.embedded import free_port
    h = tenant.headers()
    await create(client, tenant, "integration/integrations/", {
        "site_id": tenant.site_id, "config": {"site_url": f"http://127.0.0.1:{free_port(None)}"},
        "credentials": {"username": "admin", "app_password": "abcd efgh ijkl mnop"}})
    (content,) = await create(client, tenant, "writer/content/", in_sector(
        tenant, title="Nowhere to go", html="<p>x</p>"))
    progress = await task_progress(nc, "writer")
    async with running_worker(run, settings):
        r = await client.post(f"/api/v1/writer/content/{content['id']}/publish/", headers=h,
                              json={"status": "draft"})
        assert r.status_code == 200, r.text
        done = await finished_task(progress, r.json()["task_id"], timeout=90)
    assert done["state"] == "FAILURE"
    assert "cannot be reached" in done["meta"]["error"]
    (pub,) = (await client.get("/api/v1/publisher/publications/", headers=h,
                               params={"status": "failed"})).json()["results"]
    assert (pub["content_id"], pub["external_id"]) == (content["id"], None)
    assert "cannot be reached" in pub["error"]
    got = (await client.get(f"/api/v1/writer/content/{content['id']}/", headers=h)).json()
    assert (got["status"], got["external_id"]) == ("draft", None)
    events = await rows(writer_db, tenant.account_id,
                        "SELECT kind, success FROM sync_events WHERE account_id = :a")
    assert events == [{"kind": "publish", "success": False}]


async def test_lost_answers_through_the_api_make_one_post_and_one_media_each(
        client: httpx.AsyncClient, tenant: Tenant, wordpress: WordPressServer,
        settings: WriterSettings, writer_db: Database, nc: NATS) -> None:
    """The job's store is PostgreSQL here: answers lost after WordPress saved (the post's
    create, each image's upload, a term's create) are found again, never made twice."""
    import hashlib
    import json

    from libs.common.testing.faultproxy import Fault, FaultProxy
    from services.writer.publishing.publisher import media_slug

    seen: dict[str, int] = {}

    def lose_first_writes(method: str, path: str) -> Fault | None:
        if method != "POST":
            return None
        for route, fault in (("/wp-json/wp/v2/posts", Fault.DROP_AFTER_SAVE),
                             ("/wp-json/wp/v2/media", Fault.DROP_AFTER_SAVE),
                             ("/wp-json/wp/v2/tags", Fault.UNAVAILABLE_AFTER_SAVE)):
            if path.split("?", 1)[0] == route:
                seen[route] = seen.get(route, 0) + 1
                return fault if seen[route] <= (2 if route.endswith("media") else 1) else None
        return None

    proxy = FaultProxy(wordpress.url, lose_first_writes)
    url = await proxy.start()
    h = tenant.headers()
    try:
        await create(client, tenant, "integration/integrations/", {
            "site_id": tenant.site_id, "config": {"site_url": url},
            "credentials": {"username": wordpress.site.username,
                            "app_password": wordpress.site.app_password}})
        stamp = uuid.uuid4().hex[:8]
        (content,) = await create(client, tenant, "writer/content/", in_sector(
            tenant, title=f"Lost answers {stamp}", html="<p>Still one post.</p>",
            tags=[f"lost {stamp}"], categories=[f"Faults {stamp}"]))
        images = [await store_image(settings, tenant, writer_db, content["id"], kind, n, 40 + n)
                  for kind, n in (("featured", 0), ("in_article", 1))]
        progress = await task_progress(nc, "writer")
        async with running_worker(run, settings):
            r = await client.post(f"/api/v1/writer/content/{content['id']}/publish/", headers=h,
                                  json={"status": "publish"})
            done = await finished_task(progress, r.json()["task_id"], timeout=110)
    finally:
        await proxy.stop()
    assert done["state"] == "SUCCESS", done
    assert done["meta"]["result"]["adopted"] is True
    slugs = []
    for image in images:
        data = png(40 + image["position"], (64, 48))
        slugs.append(media_slug(hashlib.sha256(data).hexdigest()))
    out = wordpress.php(
        "global $wpdb;"
        f"$posts = $wpdb->get_col(\"SELECT ID FROM $wpdb->posts WHERE post_type = 'post'"
        f" AND post_content LIKE '%igny8:content={content['id']}:%'\");"
        "$media = $wpdb->get_col(\"SELECT post_name FROM $wpdb->posts WHERE post_type ="
        f" 'attachment' AND post_name IN ('{slugs[0]}', '{slugs[1]}')\");"
        "echo json_encode(array($posts, $media));")
    posts, media = json.loads(out)
    assert [int(p) for p in posts] == [done["meta"]["result"]["post_id"]]
    assert sorted(media) == sorted(slugs)
    (pub,) = (await client.get("/api/v1/publisher/publications/", headers=h,
                               params={"content_id": content["id"]})).json()["results"]
    assert (pub["status"], pub["external_id"]) == ("published", str(posts[0]))
    faults = [p for p in proxy.log if p.fault is not None]
    assert len(faults) == 4, faults  # two uploads, the create, a tag: all saved, all lost
