"""Automation's stage-7 command, `pipeline_publish`, answered by writer's real worker and
published to the real WordPress: published once per content whatever the retries (the
same key again, answers lost on the way back, duplicates at once), and each reason a content
is not published (no integration, inactive, refused credentials)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NATS

from libs.common.db import Database
from libs.common.pipeline import WRITER_PUBLISH, PipelineClient, PublishWork
from libs.common.problems import NotFound
from libs.common.testing.checks import rows
from libs.common.testing.wordpress import WordPressServer
from libs.common.testing.workers import running_worker
from services.writer.settings import WriterSettings
from services.writer.tests.conftest import MakeTenant, Tenant, create, in_sector
from services.writer.tests.publishing.testing import (
    image_url,
    integrate,
    store_image,
    wp_body,
    wp_get,
)
from services.writer.worker import run


async def draft(client: httpx.AsyncClient, t: Tenant, settings: WriterSettings,
                db: Database, *, images: bool = False) -> dict[str, Any]:
    stamp = uuid.uuid4().hex[:8]
    (content,) = await create(client, t, "writer/content/", in_sector(
        t, title=f"Cold Brew Coffee {stamp}", html="<p>Steep it overnight.</p>",
        meta_title="Cold brew, step by step", meta_description=f"How to cold brew {stamp}.",
        slug=f"cold-brew-{stamp}", primary_keyword="cold brew coffee",
        categories=[f"Coffee {stamp}"], tags=[f"cold brew {stamp}"]))
    if images:
        await store_image(settings, t, db, content["id"], "featured", 0, 31)
        inline = await store_image(settings, t, db, content["id"], "in_article", 1, 32)
        html = (f"<p>Steep it overnight.</p><h2>Ratio</h2>"
                f"<img src=\"{image_url(settings, inline['id'])}\" alt=\"Picture 32\">"
                f"<p>One part coffee to eight parts water.</p>")
        r = await client.patch(f"/api/v1/writer/content/{content['id']}/",
                               headers=t.headers(), json={"html": html})
        assert r.status_code == 200, r.text
        content = r.json()
    return content


async def posts_of(wordpress: WordPressServer, content: dict[str, Any]) -> list[dict[str, Any]]:
    """Every post on the site carrying the content's marker and title, whatever its
    status (other packages' contents share the session's WordPress, and their ids)."""
    found: list[dict[str, Any]] = await wp_get(
        wordpress, "/wp/v2/posts", search=f"igny8:content={content['id']}:",
        status="publish,draft,future,pending,private")
    return [p for p in found if f"igny8:content={content['id']}:" in p["content"]["raw"]
            and p["title"]["raw"] == content["title"]]


@pytest.mark.timeout(180)
async def test_publish_by_key_makes_one_post_whatever_the_retries(
        client: httpx.AsyncClient, tenant: Tenant, wordpress: WordPressServer,
        settings: WriterSettings, writer_db: Database, nc: NATS) -> None:
    await integrate(client, tenant, wordpress)
    content = await draft(client, tenant, settings, writer_db, images=True)
    pipeline = PipelineClient(nc, timeout=60)
    key = f"automation:run-{uuid.uuid4().hex[:6]}:7:{content['id']}"
    async with running_worker(run, settings):
        first = await pipeline.publish(tenant.account_id, tenant.site_id, content["id"],
                                       key=key, run_id="r1")
        assert (first.published, first.code, first.replayed) == (True, "published", False)
        post = await wp_get(wordpress, f"/wp/v2/posts/{first.post_id}")
        assert post["status"] == "publish"
        assert post["featured_media"]
        assert "gateway.test" not in post["content"]["raw"]

        # The same key again (an answer lost on the way back): the record answers, no call
        # to the site, and the post is the same one.
        again = await pipeline.publish(tenant.account_id, tenant.site_id, content["id"],
                                       key=key)
        assert (again.published, again.replayed, again.post_id, again.url) == (
            True, True, first.post_id, first.url)

        # A second content: three sends whose answers are lost on the way back (their
        # reply subject has no reader; a timeout made this depend on how fast writer was),
        # then duplicates at once: one post.
        other = await draft(client, tenant, settings, writer_db, images=True)
        other_key = f"{key}-other"
        lost = PublishWork(account_id=tenant.account_id, site_id=tenant.site_id,
                           content_id=other["id"], key=other_key).model_dump_json().encode()
        for _ in range(3):
            await nc.publish(WRITER_PUBLISH.subject, lost, reply=nc.new_inbox())
        answers = await asyncio.gather(*(
            pipeline.publish(tenant.account_id, tenant.site_id, other["id"], key=other_key)
            for _ in range(3)))
        assert {a.post_id for a in answers} == {answers[0].post_id}
        assert all(a.published for a in answers)
        assert any(a.replayed for a in answers)

        # Another tenant's content: 404.
        with pytest.raises(NotFound):
            await pipeline.publish(tenant.account_id + 10_000, tenant.site_id, content["id"],
                                   key=f"{key}-x")

    for c in (content, other):
        assert len(await posts_of(wordpress, c)) == 1
        got = (await client.get(f"/api/v1/writer/content/{c['id']}/",
                                headers=tenant.headers())).json()
        assert got["status"] == "published"
    # The second content's images are the first's bytes: the site's media items, reused.
    second = await wp_get(wordpress, f"/wp/v2/posts/{answers[0].post_id}")
    assert second["featured_media"] == post["featured_media"]
    (publication,) = await rows(writer_db, tenant.account_id,
                                "SELECT status, task_id, attempt FROM publications "
                                "WHERE content_id = :c", c=content["id"])
    assert publication["status"] == "published"
    assert publication["attempt"] == 1  # the repeated key made no second attempt


@pytest.mark.timeout(120)
async def test_what_is_not_published_says_why(
        client: httpx.AsyncClient, make_tenant: MakeTenant, wordpress: WordPressServer,
        settings: WriterSettings, writer_db: Database, nc: NATS) -> None:
    pipeline = PipelineClient(nc, timeout=60)
    lone, idle, wrong = await make_tenant(), await make_tenant(), await make_tenant()
    await integrate(client, idle, wordpress)
    (row,) = await rows(writer_db, idle.account_id, "SELECT id FROM site_integrations")
    r = await client.patch(f"/api/v1/integration/integrations/{row['id']}/",
                           headers=idle.headers(), json={"is_active": False})
    assert r.status_code == 200, r.text
    body = wp_body(wrong, wordpress)
    body["credentials"]["app_password"] = "abcd efgh ijkl mnop qrst uvwx"
    await create(client, wrong, "integration/integrations/", body)
    async with running_worker(run, settings):
        for t, code in ((lone, "no_integration"), (idle, "inactive"), (wrong, "credentials")):
            content = await draft(client, t, settings, writer_db)
            answer = await pipeline.publish(t.account_id, t.site_id, content["id"],
                                            key=f"k-{uuid.uuid4().hex}")
            assert (answer.published, answer.code) == (False, code), answer
            assert answer.reason
            got = (await client.get(f"/api/v1/writer/content/{content['id']}/",
                                    headers=t.headers())).json()
            assert got["status"] == "draft"
            assert await posts_of(wordpress, content) == []
