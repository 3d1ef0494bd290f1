"""Stage 7 in `auto` mode, end to end: real PostgreSQL and NATS, planner's, writer's,
billing's and automation's real workers, and a real WordPress (Debian's package under
`php -S`, `libs/common/testing/wordpress.py`), read back over its own REST API.

A site with keywords of two topics runs in `auto` mode. Its first run makes drafts with
images; the offline engine leaves "[Add a fact: …]" placeholders, so the gate publishes
none and says so. An editor fills the placeholders in (and guts one article, whose score
falls below the threshold); the next run finds the site's saved Application Password
refused and pauses with the reason; with the password fixed it resumes and publishes what
reaches the threshold, up to the daily cap; a third run the same day publishes nothing
more. Each published content is one post on the site; the runs' credits are the ledger's
deductions.

The WordPress here is this module's own: its posts carry markers with this package's
content ids, which other packages' databases also use."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from libs.common.db import Database
from libs.common.embedded import free_port
from libs.common.testing.apps import running_app
from libs.common.testing.checks import eventually, rows
from libs.common.testing.factories import Tenant
from libs.common.testing.tokens import TestIssuer
from libs.common.testing.wordpress import WordPressServer
from libs.common.testing.workers import WorkerProcess, worker_process
from services.automation.orchestration import held_back, review
from services.automation.settings import AutomationSettings
from services.automation.tests.conftest import API, add_keywords, automation_worker
from services.automation.tests.test_pipeline import run_state, writer_rows
from services.billing.testing import Ledger, MakeTenant
from services.writer.main import create_app as create_writer
from services.writer.settings import WriterSettings
from services.writer.tests.publishing.testing import integrate, store_image, wp_get

KEYWORDS = ["pour over coffee", "pour over coffee ratio", "espresso machine",
            "espresso machine cleaning"]
PLACEHOLDER = re.compile(r"\[Add (?:a|an) [a-z]+:[^\]]*\]")
FILLED = "Our editor checked this against the maker's own page on 3 December 2026."
INTEGRATIONS = "/api/v1/integration/integrations/"


@pytest.fixture(scope="module")
def own_wordpress(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WordPressServer]:
    server = WordPressServer(tmp_path_factory.mktemp("automation-wordpress"), workers=2)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def writer_api(writer: WriterSettings, issuer: TestIssuer
                     ) -> AsyncIterator[httpx.AsyncClient]:
    """Writer's app, as the editor and the integration's owner use it."""
    async with running_app(create_writer(writer, keys_fetcher=issuer.fetcher())) as c:
        yield c


async def posts_of(server: WordPressServer, content_id: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await wp_get(
        server, "/wp/v2/posts", search=f"igny8:content={content_id}:",
        status="publish,draft,future,pending,private")
    return found


async def finish(client: httpx.AsyncClient, t: Tenant, run_id: str, status: str,
                 timeout: float = 120) -> dict[str, Any]:
    async def reached() -> bool:
        return (await run_state(client, t, run_id))["status"] == status

    await eventually(reached, timeout=timeout, every=0.5)
    return await run_state(client, t, run_id)


def stage(run: dict[str, Any], number: int) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in run["stage_results"] if s["stage"] == number)
    return found


async def drafts_with_images(writer_api: httpx.AsyncClient, writer: WriterSettings,
                             t: Tenant, count: int) -> list[int]:
    """Drafts without placeholders, each with a generated featured image (its file in
    writer's storage), as stage 7 finds them after stages 4-6 and an editor's review."""
    db = Database(writer.database_url)
    ids = []
    try:
        for n in range(count):
            stamp = uuid.uuid4().hex[:6]
            r = await writer_api.post("/api/v1/writer/content/", headers=t.headers(), json={
                "site_id": t.site_id, "sector_id": t.sector_id,
                "title": f"Grinding Coffee Beans {stamp}", "slug": f"grind-coffee-{stamp}",
                "html": "<h2>Burr or blade</h2><p>A burr grinder gives even grounds.</p>",
                "meta_description": f"How to grind coffee beans at home {stamp}.",
                "primary_keyword": "grind coffee beans"})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
            await store_image(writer, t, db, ids[-1], "featured", 0, 700 + n)
    finally:
        await db.dispose()
    return ids


AUTO = {"publish_mode": "auto", "quality_threshold": 0, "daily_publish_cap": 100,
        "publish_window_start": "00:00", "publish_window_end": "23:59"}


def later(hours: int) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).strftime("%H:%M")


def test_the_gate_reviews_each_rule_before_anything_is_published() -> None:
    """Each rule of the gate on its own: the mode, the score against the threshold, the
    placeholders (`review`, before a step is recorded), then the daily cap and the window
    (`held_back`, just before the decision to publish is recorded)."""
    auto = {"publish_mode": "auto", "quality_threshold": 80, "daily_publish_cap": 2,
            "publish_window_start": "00:00", "publish_window_end": "23:59", "timezone": "UTC"}
    good = {"optimizer_score": 91, "placeholders": False}
    cases = [
        ({**auto, "publish_mode": "draft"}, good, "kept as draft for review"),
        (auto, {"optimizer_score": None, "placeholders": False},
         "not optimized yet (no optimizer score)"),
        (auto, {"optimizer_score": 79, "placeholders": False}, "optimizer score below 80"),
        (auto, {"optimizer_score": 80, "placeholders": True}, "placeholders left in the text"),
        (auto, {"optimizer_score": 80, "placeholders": False}, None),
        (auto, good, None),
    ]
    for n, (cfg, info, expected) in enumerate(cases):
        assert review(cfg, cfg["publish_mode"], info) == expected, n
    capped = "daily publishing cap reached"
    assert held_back(auto, 1) is None
    assert held_back(auto, 2) == capped
    assert held_back({**auto, "daily_publish_cap": 0}, 0) == capped
    closed = {**auto, "publish_window_start": later(2), "publish_window_end": later(3)}
    assert held_back(closed, 0) == "outside the publishing window"
    overnight = {**auto, "publish_window_start": later(3), "publish_window_end": later(-1)}
    assert held_back(overnight, 0) == "outside the publishing window"
    around = {**auto, "publish_window_start": later(-1), "publish_window_end": later(1)}
    assert held_back(around, 0) is None


@pytest.mark.timeout(600)
async def test_auto_mode_publishes_what_passes_the_gate_to_wordpress_within_the_cap(
        client: httpx.AsyncClient, planner: httpx.AsyncClient, writer: WriterSettings,
        writer_api: httpx.AsyncClient, settings: AutomationSettings, billing: Ledger,
        tenant: Tenant, own_wordpress: WordPressServer) -> None:
    h = tenant.headers()
    site = own_wordpress.site
    wrong = {"username": site.username, "app_password": "abcd efgh ijkl mnop qrst uvwx"}
    integration = await integrate(writer_api, tenant, own_wordpress, credentials=wrong)
    await add_keywords(planner, tenant, KEYWORDS)
    config = {"publish_mode": "auto", "quality_threshold": 0, "daily_publish_cap": 100,
              "publish_window_start": "00:00", "publish_window_end": "23:59",
              "stage_6_batch_size": 50}
    r = await client.patch(f"{API}/update_config/?site_id={tenant.site_id}", headers=h,
                           json=config)
    assert r.status_code == 200, r.text
    before = await billing.spendable(tenant.account_id)

    async def run_now() -> str:
        started = await client.post(f"{API}/run_now/?site_id={tenant.site_id}", headers=h)
        assert started.status_code == 200, started.text
        return str(started.json()["run_id"])

    async with automation_worker(settings):
        # 1. Drafts with images; every one still has the engine's placeholders.
        first_id = await run_now()
        first = await finish(client, tenant, first_id, "completed", timeout=420)
        drafts = await writer_rows(writer, tenant, "SELECT id, html FROM content WHERE "
                                   "account_id = :a AND deleted_at IS NULL ORDER BY id")
        n = len(drafts)
        assert n >= 3, n
        assert stage(first, 7)["processed"] == n
        assert stage(first, 7)["reasons"] == {"placeholders left in the text": n}
        assert all(s["failed"] == 0 for s in first["stage_results"]), first

        # 2. The editor fills the placeholders in and guts the first article; the
        # optimizer's scores (free) set the threshold just above the gutted one.
        weak, strong = drafts[0]["id"], [d["id"] for d in drafts[1:]]
        for d in drafts:
            html = "<p>A short note.</p>" if d["id"] == weak else PLACEHOLDER.sub(FILLED,
                                                                                   d["html"])
            r = await writer_api.patch(f"/api/v1/writer/content/{d['id']}/", headers=h,
                                       json={"html": html})
            assert r.status_code == 200, r.text
        scores = {}
        for d in drafts:
            r = await writer_api.post("/api/v1/optimizer/analyze/", headers=h,
                                      json={"content_id": d["id"]})
            assert r.status_code == 200, r.text
            scores[d["id"]] = r.json()["score"]
        threshold = min(scores[i] for i in strong)
        assert scores[weak] < threshold, scores
        cap = len(strong) - 1
        r = await client.patch(f"{API}/update_config/?site_id={tenant.site_id}", headers=h,
                               json={"quality_threshold": threshold, "daily_publish_cap": cap})
        assert r.status_code == 200, r.text

        # 3. The saved password is refused: the run pauses at stage 7 with the reason,
        # nothing published, the gutted article already skipped with its reason.
        second_id = await run_now()
        second = await finish(client, tenant, second_id, "paused", timeout=120)
        assert second["current_stage"] == 7
        assert "credentials" in second["error"], second
        assert "resume" in second["error"], second
        assert stage(second, 7)["created"] == 0
        assert stage(second, 7)["reasons"] == {f"optimizer score below {threshold}": 1}
        assert [await posts_of(own_wordpress, i) for i in strong] == [[] for _ in strong]

        # 4. The password fixed, resumed: what reaches the threshold is published, up to
        # the cap; the rest stays a draft with the reason.
        r = await writer_api.patch(f"{INTEGRATIONS}{integration['id']}/", headers=h, json={
            "credentials": {"username": site.username, "app_password": site.app_password}})
        assert r.status_code == 200, r.text
        r = await client.post(f"{API}/resume/?run_id={second_id}", headers=h)
        assert r.status_code == 200, r.text
        second = await finish(client, tenant, second_id, "completed", timeout=180)
        assert stage(second, 7)["created"] == cap
        assert stage(second, 7)["reasons"] == {f"optimizer score below {threshold}": 1,
                                               "daily publishing cap reached": 1}

        # 5. The same day, another run: the cap holds.
        third_id = await run_now()
        third = await finish(client, tenant, third_id, "completed", timeout=120)
        assert stage(third, 7)["created"] == 0
        assert stage(third, 7)["reasons"] == {f"optimizer score below {threshold}": 1,
                                              "daily publishing cap reached": 1}

        # The runs' credits are the ledger's deductions (only the first run's jobs cost).
        runs = (first_id, second_id, third_id)

        async def reconciled() -> bool:
            debits = await billing.debits(tenant.account_id)
            totals = [(await run_state(client, tenant, i))["total_credits"] for i in runs]
            return sum(totals) == sum(abs(d.amount) for d in debits) and totals[0] > 0

        await eventually(reconciled, timeout=60)
        totals = [(await run_state(client, tenant, i))["total_credits"] for i in runs]
        assert totals[1:] == [0, 0]
        assert before - await billing.spendable(tenant.account_id) == totals[0]

    # WordPress, read back: one published post per published content, the content's own
    # title and marker; nothing for what stayed a draft.
    contents = await writer_rows(writer, tenant, "SELECT id, title, status, external_id "
                                 "FROM content WHERE account_id = :a ORDER BY id")
    published = [c for c in contents if c["status"] == "published"]
    assert len(published) == cap
    assert {c["id"] for c in published} < set(strong)
    for c in published:
        (post,) = await posts_of(own_wordpress, c["id"])
        assert post["id"] == int(c["external_id"])
        assert post["status"] == "publish"
        assert post["title"]["raw"] == c["title"]
        assert post["featured_media"]
    for c in contents:
        if c["status"] != "published":
            assert c["status"] == "draft"
            assert await posts_of(own_wordpress, c["id"]) == []
    ours = [p for p in await wp_get(own_wordpress, "/wp/v2/posts", per_page=100,
                                    status="publish,draft,future,pending,private")
            if "igny8:content=" in p["content"]["raw"]]
    assert len(ours) == cap  # no post twice, none for a draft


@pytest.mark.timeout(300)
@pytest.mark.parametrize("victim", ["automation", "writer"])
async def test_a_worker_killed_while_publishing_publishes_each_content_once(
        victim: str, client: httpx.AsyncClient, writer: WriterSettings,
        writer_worker: WorkerProcess, writer_api: httpx.AsyncClient,
        settings: AutomationSettings, automation_db: Database, tenant: Tenant,
        own_wordpress: WordPressServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    """SIGKILL a worker (its own process) while writer publishes the batch's items one by
    one. The automation worker: its move's transaction is lost, the item it waited for is
    still `processing`, and the new worker asks again under the same key; writer, which
    finished that publish, answers from its record. Writer's worker: the publish is cut
    short; automation's request times out and is sent again to the restarted worker, whose
    publisher finds the post the first attempt made (ADR 0019)."""
    h = tenant.headers()
    await integrate(writer_api, tenant, own_wordpress)
    ids = await drafts_with_images(writer_api, writer, tenant, 6)
    r = await client.patch(f"{API}/update_config/?site_id={tenant.site_id}", headers=h,
                           json=AUTO)
    assert r.status_code == 200, r.text

    async def publications() -> list[dict[str, Any]]:
        return await writer_rows(writer, tenant, "SELECT content_id, status, attempt "
                                 "FROM publications WHERE account_id = :a")

    in_flight: list[int] = []

    async def mid_publish() -> bool:
        found = await publications()
        in_flight[:] = [p["content_id"] for p in found if p["status"] == "pending"]
        return bool(in_flight) and any(p["status"] == "published" for p in found)

    # A publish takes well under a second here: a request cut short is sent again soon.
    quick = settings.model_copy(update={"publish_timeout_seconds": 8.0})
    log = tmp_path_factory.mktemp("logs") / "automation-worker.log"
    async with worker_process("services.automation.worker", quick, log) as worker:
        started = await client.post(f"{API}/run_now/?site_id={tenant.site_id}", headers=h)
        assert started.status_code == 200, started.text
        run_id = started.json()["run_id"]
        await eventually(mid_publish, timeout=120, every=0.02)
        if victim == "automation":
            await worker.kill()
        else:
            await writer_worker.kill()
        items = await rows(automation_db, tenant.account_id,
                           "SELECT item_id, status FROM automation_items "
                           "WHERE account_id = :a AND stage = 7")
        # Every item was recorded before anything was published; the one writer was
        # publishing was still to do.
        assert sorted(i["item_id"] for i in items) == ids
        assert {i["status"] for i in items if i["item_id"] in in_flight} == {"processing"}
        if victim == "automation":
            await worker.restart()
        else:
            await writer_worker.start()
        run = await finish(client, tenant, run_id, "completed", timeout=180)
    assert stage(run, 7)["created"] == len(ids), run
    assert stage(run, 7)["processed"] == len(ids)

    # One `writer.content.published` and one post on the site per content; a repeated key
    # answered from the record is no new attempt (only the publish cut short by writer's
    # death is attempted again).
    done = await publications()
    assert sorted(p["content_id"] for p in done) == ids
    assert {p["status"] for p in done} == {"published"}
    again = {p["content_id"] for p in done if p["attempt"] > 1}
    assert again <= (set(in_flight) if victim == "writer" else set()), (done, in_flight)
    events = await writer_rows(writer, tenant, "SELECT payload FROM outbox WHERE subject = "
                               "'igny8.writer.content.published' AND "
                               "(payload->>'account_id')::bigint = :a")
    assert sorted(e["payload"]["data"]["content_id"] for e in events) == ids
    for content_id in ids:
        (post,) = await posts_of(own_wordpress, content_id)
        assert post["status"] == "publish"


@pytest.mark.timeout(180)
async def test_what_writer_does_not_publish_stays_a_draft_and_the_run_goes_on(
        client: httpx.AsyncClient, writer: WriterSettings, writer_api: httpx.AsyncClient,
        settings: AutomationSettings, make_tenant: MakeTenant) -> None:
    """No integration: each draft skipped with the reason. A site that does not answer
    (nothing listens on its port): each publish fails with the site's reason, the item is
    parked as failed, and the run completes."""
    lone, down = await make_tenant(), await make_tenant()
    r = await writer_api.post(INTEGRATIONS, headers=down.headers(), json={
        "site_id": down.site_id, "platform": "wordpress",
        "config": {"site_url": f"http://127.0.0.1:{free_port(None)}"},
        "credentials": {"username": "admin", "app_password": "abcd efgh ijkl mnop qrst uvwx"}})
    assert r.status_code == 201, r.text
    runs = {}
    for t in (lone, down):
        await drafts_with_images(writer_api, writer, t, 2)
        r = await client.patch(f"{API}/update_config/?site_id={t.site_id}",
                               headers=t.headers(), json=AUTO)
        assert r.status_code == 200, r.text
    async with automation_worker(settings):
        for t in (lone, down):
            started = await client.post(f"{API}/run_now/?site_id={t.site_id}",
                                        headers=t.headers())
            assert started.status_code == 200, started.text
            runs[t.account_id] = started.json()["run_id"]
        skipped = await finish(client, lone, runs[lone.account_id], "completed")
        failed = await finish(client, down, runs[down.account_id], "completed")
    assert stage(skipped, 7)["skipped"] == 2
    assert stage(skipped, 7)["reasons"] == {"no WordPress integration for the site": 2}
    assert (stage(failed, 7)["failed"], stage(failed, 7)["created"]) == (2, 0)
    ((reason, n),) = stage(failed, 7)["reasons"].items()
    assert n == 2
    assert reason.startswith("not published: ")
    for t in (lone, down):
        contents = await writer_rows(writer, t, "SELECT status FROM content "
                                     "WHERE account_id = :a")
        assert {c["status"] for c in contents} == {"draft"}


@pytest.mark.timeout(240)
async def test_pause_and_cancel_apply_between_two_publishes(
        client: httpx.AsyncClient, writer: WriterSettings, writer_api: httpx.AsyncClient,
        settings: AutomationSettings, make_tenant: MakeTenant,
        own_wordpress: WordPressServer) -> None:
    """Asked while stage 7 publishes: pause stops before the next item (nothing more is
    published while paused) and resume publishes the rest; cancel stops before the next
    item and leaves the rest drafts, recorded as skipped ("run cancelled")."""
    paused_t, cancelled_t = await make_tenant(), await make_tenant()
    ids = {}
    for t in (paused_t, cancelled_t):
        await integrate(writer_api, t, own_wordpress)
        ids[t.account_id] = await drafts_with_images(writer_api, writer, t, 8)
        r = await client.patch(f"{API}/update_config/?site_id={t.site_id}",
                               headers=t.headers(), json=AUTO)
        assert r.status_code == 200, r.text

    async def published(t: Tenant) -> set[int]:
        found = await writer_rows(writer, t, "SELECT id FROM content WHERE account_id = :a "
                                  "AND status = 'published'")
        return {c["id"] for c in found}

    async def stop_at_first_publish(t: Tenant, action: str, status: str) -> dict[str, Any]:
        started = await client.post(f"{API}/run_now/?site_id={t.site_id}",
                                    headers=t.headers())
        assert started.status_code == 200, started.text
        run_id = started.json()["run_id"]

        async def one() -> bool:
            return bool(await published(t))

        await eventually(one, timeout=120, every=0.02)
        r = await client.post(f"{API}/{action}/?run_id={run_id}", headers=t.headers())
        assert r.status_code == 200, r.text
        return await finish(client, t, run_id, status, timeout=60)

    async with automation_worker(settings):
        run = await stop_at_first_publish(paused_t, "pause", "paused")
        done = await published(paused_t)
        assert 0 < len(done) < 8
        assert run["current_stage"] == 7
        await asyncio.sleep(1.5)
        assert await published(paused_t) == done  # nothing starts while paused
        r = await client.post(f"{API}/resume/?run_id={run['run_id']}",
                              headers=paused_t.headers())
        assert r.status_code == 200, r.text
        run = await finish(client, paused_t, run["run_id"], "completed")
        assert stage(run, 7)["created"] == 8
        assert await published(paused_t) == set(ids[paused_t.account_id])

        run = await stop_at_first_publish(cancelled_t, "cancel", "cancelled")
        done = await published(cancelled_t)
        assert 0 < len(done) < 8
        assert stage(run, 7)["created"] == len(done)
        assert stage(run, 7)["reasons"] == {"run cancelled": 8 - len(done)}
    for content_id in ids[cancelled_t.account_id]:
        posts = await posts_of(own_wordpress, content_id)
        assert len(posts) == (1 if content_id in done else 0)
