"""Writer's AI functions as billed jobs on the offline engines: idea → task → content →
image prompts → images, with the reference's phases, per-item charges in billing's real
ledger, events for planner and automation, files served after the tenant check; 402
before any work; a worker killed mid-job is retried and charges once."""

from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path
from typing import Any

import httpx
from nats.aio.client import Client as NATS
from prometheus_client import REGISTRY

from libs.common.billing import BillingClient
from libs.common.db import Database
from libs.common.events import Event
from libs.common.jobs import JobWorker
from libs.common.outbox import OutboxRelay
from libs.common.testing.checks import ai_task_log, eventually, finished_task, rows, task_progress
from libs.common.testing.workers import running_worker
from services.writer.brief import Brief, Draft
from services.writer.events import AUTO_GENERATE_CONTENT
from services.writer.jobs import WriterJobs, draft_offline
from services.writer.service import Platform
from services.writer.settings import WriterSettings
from services.writer.worker import run

from .conftest import API, Ledger, MakeTenant, Tenant, create, in_sector, next_id, publish

KETTLE = {"title": "How to Descale a Kettle", "primary_keyword": "descale a kettle",
          "keywords": "descale a kettle, kettle limescale, how often should you descale a kettle",
          "description": "H2: Why kettles scale\nH2: Vinegar or citric acid\nH2: Rinsing",
          "content_structure": "how_to", "word_count": 900}


def cluster_events(t: Tenant, cluster_id: int) -> list[Event]:
    """What planner publishes about a cluster and its keywords."""
    keywords = [{"id": next_id(), "keyword": k, "volume": v, "intent": "informational",
                 "cluster_id": cluster_id, "site_id": t.site_id, "sector_id": t.sector_id}
                for k, v in (("descale a kettle", 900), ("remove limescale from kettle", 300),
                             ("what dissolves limescale", 120))]
    return [Event(type="planner.cluster.created", account_id=t.account_id, data={
                "id": cluster_id, "site_id": t.site_id, "sector_id": t.sector_id,
                "name": "Kettle descaling", "description": "", "status": "active"}),
            Event(type="planner.keyword.created", account_id=t.account_id,
                  data={"keywords": keywords})]


CONTRACTS = Path(__file__).resolve().parents[3] / "docs" / "contracts.md"


def documented_events() -> dict[str, set[str]]:
    """Writer's events and their `data` fields as docs/contracts.md lists them."""
    table = re.findall(r"^\| `(writer\.[a-z_.]+)` \| `([^`]+)` \|$", CONTRACTS.read_text(),
                       re.MULTILINE)
    return {kind: {f.strip() for f in fields.split(",")} for kind, fields in table}


async def outbox_events(db: Database, t: Tenant, kind: str) -> list[dict[str, Any]]:
    found = await rows(db, t.account_id, "SELECT payload FROM outbox WHERE subject = :s"
                       " AND (payload->>'account_id')::bigint = :a ORDER BY seq",
                       s=f"igny8.{kind}")
    return [r["payload"]["data"] for r in found]


async def test_idea_to_article_to_images(
        client: httpx.AsyncClient, tenant: Tenant, settings: WriterSettings, nc: NATS,
        writer_db: Database, billing: Ledger) -> None:
    h = tenant.headers()
    cluster_id, idea_id = next_id(), next_id()
    progress = await task_progress(nc, "writer")
    async with running_worker(run, settings):
        for event in cluster_events(tenant, cluster_id):
            await publish(nc, event)
        await publish(nc, Event(type="planner.idea.queued", account_id=tenant.account_id, data={
            "id": idea_id, "site_id": tenant.site_id, "sector_id": tenant.sector_id,
            "cluster_id": cluster_id, "idea_title": KETTLE["title"],
            "description": KETTLE["description"], "keywords": KETTLE["keywords"],
            "content_type": "post", "content_structure": "how_to",
            "estimated_word_count": 900}))

        async def task_made() -> bool:
            return (await client.get(f"{API}/tasks/", headers=h)).json()["count"] == 1

        await eventually(task_made)
        (task,) = (await client.get(f"{API}/tasks/", headers=h)).json()["results"]
        r = await client.post(f"{API}/tasks/auto_generate_content/", headers=h,
                              json={"ids": [task["id"]], "run_id": "run-7"})
        assert r.status_code == 200, r.text
        job = r.json()["task_id"]
        assert [(x.operation_type, x.amount) for x in await billing.holds(
            tenant.account_id)] == [("content_generation", 9)]      # 900 words held
        doc = await finished_task(progress, job)
        assert doc["state"] == "SUCCESS", doc
        assert doc["phases_seen"][-1] == "DONE"
        # Phases seen by polling, or the steps the job recorded (a fast phase may pass
        # between two polls).
        assert {"PREP", "AI_CALL", "SAVE"} <= set(doc["phases_seen"]) | {
            s["step"] for s in [*doc["meta"]["request_steps"], *doc["meta"]["response_steps"]]}
        result = doc["meta"]["result"]
        (content_id,) = result["content_ids"]
        content = (await client.get(f"{API}/content/{content_id}/", headers=h)).json()
        assert content["model"] == "local-draft-brief-1"
        assert content["html"].count("<h1>") == 1
        assert abs(content["word_count"] - 900) <= 45
        assert "what dissolves limescale" in content["secondary_keywords"]  # the cluster's
        assert (await client.get(f"{API}/tasks/{task['id']}/", headers=h)).json()[
            "status"] == "review"
        words_credits = math.ceil(content["word_count"] / 100)
        log = await ai_task_log(writer_db, tenant.account_id, job)
        assert (log["status"], log["function"], log["credits_charged"]) == (
            "success", "auto_generate_content", words_credits)
        (generated,) = await outbox_events(writer_db, tenant, "writer.content.generated")
        assert (generated["task_id"], generated["run_id"], generated["idea_id"],
                generated["content_id"], generated["writer_task_id"]) == (
            job, "run-7", idea_id, content_id, task["id"])

        r = await client.post(f"{API}/content/generate_image_prompts/", headers=h,
                              json={"ids": [content_id]})
        doc = await finished_task(progress, r.json()["task_id"])
        assert doc["state"] == "SUCCESS", doc
        images = (await client.get(f"{API}/images/content_images/?content_id={content_id}",
                                   headers=h)).json()
        assert [(i["image_type"], i["status"]) for i in images] == [
            ("featured", "pending"), ("in_article", "pending"), ("in_article", "pending")]
        assert images[0]["position"] == 0
        assert all(i["position"] > 0 and "descale a kettle" in i["alt_text"].lower()
                   for i in images[1:])
        (prompts_event,) = await outbox_events(writer_db, tenant,
                                               "writer.image_prompts.generated")
        assert prompts_event["image_ids"] == [i["id"] for i in images]

        r = await client.post(f"{API}/images/generate_images/", headers=h,
                              json={"ids": [i["id"] for i in images]})
        job = r.json()["task_id"]
        doc = await finished_task(progress, job)
        assert doc["state"] == "SUCCESS", doc
    images = (await client.get(f"{API}/images/content_images/?content_id={content_id}",
                               headers=h)).json()
    assert [i["status"] for i in images] == ["generated"] * 3
    featured = images[0]
    assert (featured["width"], featured["height"], featured["mime_type"]) == (
        1200, 630, "image/webp")
    url = (await client.get(f"{API}/images/{featured['id']}/file/", headers=h)).json()["url"]
    assert url == f"http://gateway.test{API}/images/{featured['id']}/download/"
    file = await client.get(url.removeprefix("http://gateway.test"), headers=h)
    assert file.status_code == 200
    assert file.headers["content-type"] == "image/webp"
    assert file.content[:4] == b"RIFF"
    assert len(file.content) == featured["file_size"]
    html = (await client.get(f"{API}/content/{content_id}/", headers=h)).json()["html"]
    for image in images[1:]:
        assert f'src="{image["image_url"]}"' in html
    ledger = sorted((x.operation_type, x.status, x.captured_credits)
                    for x in await billing.holds(tenant.account_id))
    assert ledger == sorted([("content_generation", "captured", words_credits),
                             ("image_prompt_extraction", "captured", 2),
                             *[("image_generation", "captured", 4)] * 3])
    assert await billing.spendable(tenant.account_id) == 1000 - words_credits - 2 - 12
    (made,) = await outbox_events(writer_db, tenant, "writer.images.generated")
    assert (made["task_id"], sorted(made["generated"]), made["failed"]) == (
        job, sorted(i["id"] for i in images), [])
    # Every one of writer's events went out (the relay published it), as documented.
    documented = documented_events()
    assert set(documented) == {"writer.task.created", "writer.content.generated",
                               "writer.content.updated", "writer.image_prompts.generated",
                               "writer.images.generated"}
    for kind, fields in documented.items():
        async def published(kind: str = kind) -> bool:
            sent = await rows(writer_db, tenant.account_id,
                              "SELECT published_at FROM outbox WHERE subject = :s AND"
                              " (payload->>'account_id')::bigint = :a", s=f"igny8.{kind}")
            return bool(sent) and all(r["published_at"] is not None for r in sent)

        await eventually(published)
        for payload in await outbox_events(writer_db, tenant, kind):
            assert set(payload) == fields, kind
    updated = await outbox_events(writer_db, tenant, "writer.content.updated")
    assert [(u["change"], u["content_id"], u["task_id"]) for u in updated] == [
        ("images", content_id, job)]
    exposed = {(s.labels.get("function"), s.labels.get("model"))
               for family in REGISTRY.collect() if family.name == "igny8_ai_tokens"
               for s in family.samples}
    assert ("auto_generate_content", "local-draft-brief-1") in exposed
    assert ("generate_images", "local-render-1") in exposed


async def test_no_credits_is_402_before_any_work(
        client: httpx.AsyncClient, make_tenant: MakeTenant, writer_db: Database,
        billing: Ledger) -> None:
    poor = await make_tenant(credits=10)
    (task,) = await create(client, poor, "writer/tasks/", in_sector(poor, **KETTLE) | {
        "word_count": 1500})
    r = await client.post(f"{API}/tasks/auto_generate_content/", headers=poor.headers(),
                          json={"ids": [task["id"]]})
    assert r.status_code == 402, r.text
    assert "credits" in r.json()["detail"].lower()
    logs = await rows(writer_db, poor.account_id,
                      "SELECT * FROM ai_task_logs WHERE account_id = :a")
    jobs = await rows(writer_db, poor.account_id, "SELECT * FROM outbox WHERE subject LIKE"
                      " 'igny8.jobs.%' AND (payload->>'account_id')::bigint = :a")
    assert (logs, jobs) == ([], [])
    assert [x.status for x in await billing.holds(poor.account_id)] in ([], ["released"])
    balance = await billing.balance(poor.account_id)
    assert (balance.plan_credits, balance.held) == (10, 0)
    viewer = await client.post(f"{API}/tasks/auto_generate_content/",
                               headers=poor.headers("viewer"), json={"ids": [task["id"]]})
    assert viewer.status_code == 403


class StallsOnce:
    """A drafting engine whose first draft never returns (its worker is killed)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.calls = 0

    async def draft(self, brief: Brief) -> Draft:
        self.calls += 1
        if self.calls == 1:
            self.started.set()
            await asyncio.sleep(3600)
        return await draft_offline(brief)


async def test_a_killed_workers_job_is_retried_and_charged_once(
        client: httpx.AsyncClient, tenant: Tenant, settings: WriterSettings, nc: NATS,
        writer_db: Database, billing: Ledger) -> None:
    tasks = await create(client, tenant, "writer/tasks/", in_sector(tenant, **KETTLE),
                         in_sector(tenant, **KETTLE) | {"title": "Kettle limescale"})
    progress = await task_progress(nc, "writer")
    js = nc.jetstream()
    stalls = StallsOnce()
    dying = WriterJobs(writer_db, BillingClient(nc), Platform(settings), offline=stalls.draft)
    relay_stop, first_stop = asyncio.Event(), asyncio.Event()
    relay = asyncio.create_task(OutboxRelay(writer_db, js, service="writer").run(relay_stop))
    first = asyncio.create_task(JobWorker(
        "writer", "auto_generate_content", dying.handler(AUTO_GENERATE_CONTENT), js, progress,
        max_deliver=settings.job_max_deliver, ack_wait=settings.job_ack_wait_seconds
    ).run(first_stop))
    r = await client.post(f"{API}/tasks/auto_generate_content/", headers=tenant.headers(),
                          json={"ids": [t["id"] for t in tasks]})
    job = r.json()["task_id"]
    await asyncio.wait_for(stalls.started.wait(), 20)
    first.cancel()  # the worker dies mid-run: no ack, no more in-progress signals
    await asyncio.gather(first, return_exceptions=True)
    relay_stop.set()
    await relay

    async with running_worker(run, settings):
        doc = await finished_task(progress, job)
    assert doc["state"] == "SUCCESS", doc
    log = await ai_task_log(writer_db, tenant.account_id, job)
    contents = await rows(writer_db, tenant.account_id,
                          "SELECT word_count FROM content WHERE account_id = :a")
    assert len(contents) == 2                                             # saved once
    charged = sum(math.ceil(c["word_count"] / 100) for c in contents)
    assert (log["status"], log["attempts"], log["credits_charged"]) == ("success", 2, charged)
    holds = await billing.holds(tenant.account_id)
    assert sorted(x.status for x in holds) == ["captured", "captured"]
    debits = await billing.debits(tenant.account_id)
    assert sorted(-d.amount for d in debits) == sorted(
        math.ceil(c["word_count"] / 100) for c in contents)              # once each
    assert await billing.spendable(tenant.account_id) == 1000 - charged
    assert (await billing.balance(tenant.account_id)).held == 0


async def test_analyze_is_free_and_stored_and_optimize_is_a_job(
        client: httpx.AsyncClient, tenant: Tenant, settings: WriterSettings, nc: NATS,
        billing: Ledger) -> None:
    h = tenant.headers()
    body = " ".join(["Descale a kettle with vinegar and water, then rinse it well."] * 40)
    (content,) = await create(client, tenant, "writer/content/", in_sector(
        tenant, title="How to descale a kettle", primary_keyword="descale a kettle",
        html=f"<h1>Kettles</h1><h1>Twice</h1><p>{body}</p>", slug="kettles"))
    r = await client.post("/api/v1/optimizer/analyze/", headers=h,
                          json={"content_id": content["id"]})
    assert r.status_code == 200, r.text
    analysis = r.json()
    assert 0 <= analysis["score"] <= 100
    assert {c["status"] for c in analysis["checks"]} <= {"good", "ok", "bad"}
    assert all(c["fix"] for c in analysis["checks"] if c["status"] != "good")
    stored = (await client.get(f"{API}/content/{content['id']}/", headers=h)).json()
    assert (stored["optimizer_score"], stored["revision"]) == (analysis["score"], 1)
    assert await billing.holds(tenant.account_id) == []                  # free
    missing = await client.post("/api/v1/optimizer/analyze/", headers=h, json={})
    assert "content_id" in missing.json()["errors"]

    progress = await task_progress(nc, "writer")
    async with running_worker(run, settings):
        r = await client.post("/api/v1/optimizer/optimize/", headers=h,
                              json={"ids": [content["id"]]})
        doc = await finished_task(progress, r.json()["task_id"])
    assert doc["state"] == "SUCCESS", doc
    (report,) = doc["meta"]["result"]["optimized"]
    assert report["score_after"] > report["score_before"] == analysis["score"]
    after = (await client.get(f"{API}/content/{content['id']}/", headers=h)).json()
    assert (after["optimizer_score"], after["revision"]) == (report["score_after"], 2)
    assert after["html"].count("<h1>") == 1
    (hold,) = await billing.holds(tenant.account_id)
    assert (hold.operation_type, hold.status, hold.captured_credits) == (
        "optimization", "captured", math.ceil(after["word_count"] / 200))
