"""Clusters and ideas: CRUD, filters, derived figures, queueing ideas to the writer."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
from nats.aio.client import Client as NATS
from nats.js.api import ConsumerConfig, DeliverPolicy

from libs.common.ai_jobs import AIJobRequests
from libs.common.billing import BillingClient
from libs.common.db import Database
from libs.common.events import stream_name
from libs.common.pipeline import QueueWork
from services.planner.models import AI_TASK_LOGS
from services.planner.pipeline import PlannerPipeline

from .conftest import API, Tenant, add_keywords, running_worker


async def _cluster(client: httpx.AsyncClient, t: Tenant, name: str, **extra: Any) -> dict[str, Any]:
    r = await client.post(f"{API}/clusters/", headers=t.headers(), json={
        "name": name, "site_id": t.site_id, "sector_id": extra.pop("sector_id", t.sector_id),
        **extra})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def _get(client: httpx.AsyncClient, t: Tenant, path: str) -> dict[str, Any]:
    r = await client.get(f"{API}/{path}", headers=t.headers())
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_a_duplicate_name_with_letters_beyond_ascii_is_a_409_not_a_500(
        client: httpx.AsyncClient, tenant: Tenant) -> None:
    """Schemathesis' stateful phase: the check lowered the name in Python (`É` → `é`) and
    compared it with PostgreSQL's `lower()`, which under the C locale leaves `É` as it is;
    a second `ÉCOLE` passed the check and broke the unique index (a 500)."""
    h = tenant.headers()
    first = await _cluster(client, tenant, "ÉCOLE de conduite")
    other = await _cluster(client, tenant, "Permis")
    for name in ("ÉCOLE de conduite", "École DE conduite"):
        dup = await client.post(f"{API}/clusters/", headers=h, json={
            "name": name, "site_id": tenant.site_id, "sector_id": tenant.sector_id})
        assert dup.status_code == 409, dup.text
        assert "name" in dup.json()["errors"]
    renamed = await client.patch(f"{API}/clusters/{other['id']}/", headers=h,
                                 json={"name": "ÉCOLE de conduite"})
    assert renamed.status_code == 409, renamed.text
    listed = (await _get(client, tenant, "clusters/"))["results"]
    assert sorted(c["id"] for c in listed) == sorted([first["id"], other["id"]])


async def test_cluster_figures_follow_keywords(client: httpx.AsyncClient, tenant: Tenant) -> None:
    a = await _cluster(client, tenant, "Coffee gear")
    b = await _cluster(client, tenant, "Brewing")
    dup = await client.post(f"{API}/clusters/", headers=tenant.headers(), json={
        "name": "coffee GEAR", "site_id": tenant.site_id, "sector_id": tenant.sector_id})
    assert dup.status_code == 409
    k1, k2, k3 = await add_keywords(
        client, tenant,
        {"keyword": "grinder", "volume": 100, "difficulty": 10, "cluster_id": a["id"]},
        {"keyword": "kettle", "volume": 300, "difficulty": 30, "cluster_id": a["id"]},
        {"keyword": "v60 recipe", "volume": 50, "difficulty": 50})
    got = await _get(client, tenant, f"clusters/{a['id']}/")
    assert (got["keywords_count"], got["volume"], got["difficulty"]) == (2, 400, 20)

    await client.patch(f"{API}/keywords/{k2['id']}/", json={"cluster_id": b["id"]},
                       headers=tenant.headers())
    await client.patch(f"{API}/keywords/{k3['id']}/", json={"cluster_id": b["id"]},
                       headers=tenant.headers())
    a_now, b_now = (await _get(client, tenant, f"clusters/{a['id']}/"),
                    await _get(client, tenant, f"clusters/{b['id']}/"))
    assert (a_now["keywords_count"], a_now["volume"]) == (1, 100)
    assert (b_now["keywords_count"], b_now["volume"], b_now["difficulty"]) == (2, 350, 40)
    await client.post(f"{API}/keywords/bulk_delete/", json={"ids": [k3["id"]]},
                      headers=tenant.headers())
    b_now = await _get(client, tenant, f"clusters/{b['id']}/")
    assert (b_now["keywords_count"], b_now["volume"]) == (1, 300)

    other_sector = await _cluster(client, tenant, "Elsewhere", sector_id=tenant.sector_ids[1])
    wrong = await client.patch(f"{API}/keywords/{k1['id']}/",
                               json={"cluster_id": other_sector["id"]}, headers=tenant.headers())
    assert wrong.status_code == 400

    # Deleting a cluster frees its keywords.
    assert (await client.delete(f"{API}/clusters/{a['id']}/",
                                headers=tenant.headers())).status_code == 204
    freed = await _get(client, tenant, f"keywords/{k1['id']}/")
    assert freed["cluster_id"] is None
    assert freed["status"] == "active"


async def test_cluster_filters_search_and_bulk_delete(client: httpx.AsyncClient,
                                                      tenant: Tenant) -> None:
    a = await _cluster(client, tenant, "Trail running")
    await _cluster(client, tenant, "Road running", status="mapped")
    await _cluster(client, tenant, "Swimming", sector_id=tenant.sector_ids[1])
    listed = await _get(client, tenant, "clusters/")
    assert listed["count"] == 3
    assert (await _get(client, tenant, "clusters/?status=mapped"))["results"][0]["name"] == (
        "Road running")
    assert (await _get(client, tenant, f"clusters/?sector_id={tenant.sector_ids[1]}"))[
        "count"] == 1
    assert (await _get(client, tenant, f"clusters/?site_id={tenant.site_id}"))["count"] == 3
    assert {c["name"] for c in (await _get(client, tenant, "clusters/?search=RUNNING"))[
        "results"]} == {"Trail running", "Road running"}
    assert [c["name"] for c in (await _get(client, tenant, "clusters/?ordering=name"))[
        "results"]] == ["Road running", "Swimming", "Trail running"]
    renamed = await client.put(f"{API}/clusters/{a['id']}/", json={"name": "Trails"},
                               headers=tenant.headers())
    assert renamed.json()["name"] == "Trails"
    gone = await client.post(f"{API}/clusters/bulk_delete/", json={"ids": [a["id"]]},
                             headers=tenant.headers())
    assert gone.json()["data"] == {"deleted_count": 1}
    assert (await _get(client, tenant, "clusters/"))["count"] == 2


async def test_a_list_item_shows_what_its_detail_shows(client: httpx.AsyncClient,
                                                      tenant: Tenant) -> None:
    """Found probing the public API: the ideas list answered the table's `deleted_at`, and
    lists wrote times with `+00:00` where the detail (and DRF) writes `Z`."""
    await add_keywords(client, tenant, {"keyword": "cold brew"})
    cluster = await _cluster(client, tenant, "Cold brew")
    r = await client.post(f"{API}/ideas/", headers=tenant.headers(), json={
        "idea_title": "Cold brew at home", "site_id": tenant.site_id,
        "sector_id": tenant.sector_id, "cluster_id": cluster["id"]})
    assert r.status_code == 201, r.text
    for path in ("keywords", "clusters", "ideas"):
        (item,) = (await _get(client, tenant, f"{path}/?page_size=1"))["results"]
        assert item == await _get(client, tenant, f"{path}/{item['id']}/"), path
        assert item["created_at"].endswith("Z")


async def test_ideas_crud_filters_and_counts(client: httpx.AsyncClient, tenant: Tenant) -> None:
    c = await _cluster(client, tenant, "Espresso")
    made = []
    for title, ctype in (("Espresso guide", "post"), ("Best espresso machines", "page"),
                         ("Espresso vs coffee", "post")):
        r = await client.post(f"{API}/ideas/", headers=tenant.headers(), json={
            "idea_title": title, "site_id": tenant.site_id, "sector_id": tenant.sector_id,
            "cluster_id": c["id"], "content_type": ctype, "content_structure": "guide"})
        assert r.status_code == 201, r.text
        made.append(r.json())
    assert (await _get(client, tenant, f"clusters/{c['id']}/"))["ideas_count"] == 3
    assert (await _get(client, tenant, "ideas/?content_type=page"))["count"] == 1
    assert (await _get(client, tenant, f"ideas/?cluster_id={c['id']}"))["count"] == 3
    assert (await _get(client, tenant, "ideas/?status=new"))["count"] == 3
    assert (await _get(client, tenant, f"ideas/?sector_id={tenant.sector_id}"))["count"] == 3
    assert (await _get(client, tenant, "ideas/?search=machines"))["count"] == 1
    bad = await client.post(f"{API}/ideas/", headers=tenant.headers(), json={
        "idea_title": "x", "site_id": tenant.site_id, "sector_id": tenant.sector_id,
        "content_type": "video"})
    assert bad.status_code == 400
    patched = await client.patch(f"{API}/ideas/{made[0]['id']}/",
                                 json={"estimated_word_count": 900}, headers=tenant.headers())
    assert patched.json()["estimated_word_count"] == 900
    await client.post(f"{API}/ideas/bulk_delete/", json={"ids": [made[0]["id"]]},
                      headers=tenant.headers())
    assert (await _get(client, tenant, f"clusters/{c['id']}/"))["ideas_count"] == 2
    assert (await client.delete(f"{API}/ideas/{made[1]['id']}/",
                                headers=tenant.headers())).status_code == 204
    assert (await _get(client, tenant, f"clusters/{c['id']}/"))["ideas_count"] == 1


async def test_queue_to_writer_emits_one_event_per_idea(
    client: httpx.AsyncClient, tenant: Tenant, planner_settings: Any, nc: NATS
) -> None:
    ideas = []
    for n in range(3):
        r = await client.post(f"{API}/ideas/", headers=tenant.headers(), json={
            "idea_title": f"Idea {n}", "site_id": tenant.site_id, "sector_id": tenant.sector_id})
        ideas.append(r.json()["id"])
    js = nc.jetstream()
    first = await client.post(f"{API}/ideas/bulk_queue_to_writer/", json={"ids": ideas},
                              headers=tenant.headers())
    assert first.json()["data"]["queued_count"] == 3
    second = await client.post(f"{API}/ideas/bulk_queue_to_writer/", json={"ids": ideas},
                               headers=tenant.headers())
    assert second.json()["data"]["queued_count"] == 0  # already queued: nothing twice
    assert (await _get(client, tenant, "ideas/?status=queued"))["count"] == 3

    async with running_worker(planner_settings):
        await js.add_consumer(stream_name("planner"), ConsumerConfig(
            durable_name=f"queued-{tenant.account_id}", deliver_policy=DeliverPolicy.ALL,
            filter_subject="igny8.planner.idea.queued"))
        sub = await js.pull_subscribe_bind(durable=f"queued-{tenant.account_id}",
                                           stream=stream_name("planner"))
        mine: list[dict[str, Any]] = []
        deadline = asyncio.get_running_loop().time() + 15
        while len(mine) < 3 and asyncio.get_running_loop().time() < deadline:
            try:
                msgs = await sub.fetch(50, timeout=1)
            except TimeoutError:
                continue
            for m in msgs:
                event = orjson.loads(m.data)
                if event["account_id"] == tenant.account_id:
                    mine.append(event)
                await m.ack()
        # Nothing more arrives for this account.
        try:
            extra = [orjson.loads(m.data) for m in await sub.fetch(50, timeout=1)]
        except TimeoutError:
            extra = []
        await sub.unsubscribe()
    assert sorted(e["data"]["id"] for e in mine) == sorted(ideas)
    assert not [e for e in extra if e["account_id"] == tenant.account_id]
    assert mine[0]["type"] == "planner.idea.queued"
    assert set(mine[0]["data"]) >= {"idea_title", "cluster_id", "content_type", "site_id"}


async def test_pipeline_queue_asked_again_answers_the_ideas_it_queued(
    client: httpx.AsyncClient, tenant: Tenant, planner_settings: Any, planner_db: Database,
    nc: NATS
) -> None:
    """Automation asks again when the answer to its first ask was lost (a timeout, a
    process or NATS that died after planner committed): the ideas that ask queued are
    answered as queued, not as nothing (automation skipped them and did not wait for
    their tasks)."""
    ideas = []
    for n in range(3):
        r = await client.post(f"{API}/ideas/", headers=tenant.headers(), json={
            "idea_title": f"Pipeline idea {n}", "site_id": tenant.site_id,
            "sector_id": tenant.sector_id})
        ideas.append(r.json()["id"])
    answers = PlannerPipeline(planner_db, planner_settings, AIJobRequests(
        AI_TASK_LOGS, BillingClient(nc), None, hold_ttl_seconds=60))
    ask = QueueWork(account_id=tenant.account_id, site_id=tenant.site_id, stage=3,
                    ids=ideas[:2], key="automation:run:3:0")
    first = await answers.queue(ask)
    again = await answers.queue(ask)
    assert (first.ids, first.replayed) == (ideas[:2], False)
    assert (again.ids, again.replayed) == (ideas[:2], True)
    assert (await _get(client, tenant, "ideas/?status=queued"))["count"] == 2
    assert (await _get(client, tenant, "ideas/?status=new"))["count"] == 1
