"""Read models built from auth's events (real JetStream, the worker's consumer)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import orjson
from nats.aio.client import Client as NATS
from sqlalchemy import text

from libs.common import nats as nats_kernel
from libs.common.db import Database, TenantScope
from libs.common.events import Event
from libs.common.testing.checks import eventually

from .conftest import API, Tenant, next_id, running_worker


async def _publish(nc: NATS, *events: Event) -> None:
    js = nc.jetstream()
    await nats_kernel.ensure_event_stream(js, "auth")
    for e in events:
        await js.publish(e.subject, orjson.dumps(e.model_dump(mode="json")),
                         headers={"Nats-Msg-Id": str(e.id)})


async def test_sites_sectors_access_and_accounts_arrive_from_auth_events(
    client: httpx.AsyncClient, tenant: Tenant, planner_db: Database, planner_settings: object,
    nc: NATS,
) -> None:
    a = tenant.account_id
    site_id, sector_id, editor = next_id(), next_id(), next_id()
    site = Event(type="auth.site.created", account_id=a, data={
        "id": site_id, "account_id": a, "name": "From events", "slug": "from-events",
        "url": None, "industry_id": None, "industry_slug": None, "is_active": True})
    stale = Event(type="auth.site.updated", account_id=a,
                  occurred_at=site.occurred_at - timedelta(minutes=5),
                  data={**site.data, "name": "Older name"})
    sector = Event(type="auth.sector.created", account_id=a, data={
        "id": sector_id, "account_id": a, "site_id": site_id, "name": "Events sector",
        "slug": "s", "industry_sector_id": None, "is_active": True})
    grant = Event(type="auth.site_access.granted", account_id=a,
                  data={"account_id": a, "user_id": editor, "site_id": site_id})
    await _publish(nc, site, site, stale, sector, grant)  # a duplicate and a late old one

    async def arrived() -> bool:
        async with planner_db.session(TenantScope.account(a)) as s:
            return bool((await s.execute(text(
                "SELECT count(*) FROM site_access WHERE user_id = :u"), {"u": editor})
            ).scalar_one())

    async with running_worker(planner_settings):
        await eventually(arrived)
        async with planner_db.session(TenantScope.account(a)) as s:
            name = (await s.execute(text("SELECT name FROM sites WHERE id = :i"),
                                    {"i": site_id})).scalar_one()
        assert name == "From events"  # the late, older update changed nothing
        # No lookup needed: the editor creates into the granted site at once.
        r = await client.post(f"{API}/keywords/", headers=tenant.headers("editor", user_id=editor),
                              json={"keyword": "evented", "site_id": site_id,
                                    "sector_id": sector_id})
        assert r.status_code == 201, r.text
        await _publish(nc, Event(type="auth.account.updated", account_id=a, data={
            "account_id": a, "name": "x", "slug": "x", "status": "suspended",
            "owner_user_id": 1, "plan_id": None, "plan_slug": None}))

        async def suspended() -> bool:
            got = await client.get(f"{API}/keywords/", headers=tenant.headers())
            return got.status_code == 403

        await eventually(suspended)


async def test_an_idea_writer_has_written_is_completed(
    client: httpx.AsyncClient, tenant: Tenant, planner_settings: object, nc: NATS,
) -> None:
    """`writer.content.generated` (writer's stream) marks the idea `completed`; the same
    event again changes nothing; content of a task made by hand names no idea."""
    r = await client.post(f"{API}/ideas/", headers=tenant.headers(), json={
        "idea_title": "Descaling kettles", "site_id": tenant.site_id,
        "sector_id": tenant.sector_id})
    idea = r.json()
    await client.post(f"{API}/ideas/bulk_queue_to_writer/", headers=tenant.headers(),
                      json={"ids": [idea["id"]]})
    written = Event(type="writer.content.generated", account_id=tenant.account_id, data={
        "task_id": None, "run_id": None, "content_id": next_id(), "writer_task_id": next_id(),
        "idea_id": idea["id"]})
    by_hand = Event(type="writer.content.generated", account_id=tenant.account_id,
                    data={**written.data, "idea_id": None})
    js = nc.jetstream()
    await nats_kernel.ensure_event_stream(js, "writer")
    for e in (written, written, by_hand):
        await js.publish(e.subject, orjson.dumps(e.model_dump(mode="json")))
    async with running_worker(planner_settings):  # type: ignore[arg-type]

        async def completed() -> bool:
            found = await client.get(f"{API}/ideas/{idea['id']}/", headers=tenant.headers())
            return bool(found.json()["status"] == "completed")

        await eventually(completed)


async def test_clusters_count_the_contents_writer_holds_for_them(
    client: httpx.AsyncClient, tenant: Tenant, planner_settings: object, nc: NATS,
) -> None:
    """`content_count` follows writer's events: a generated content counts for its
    cluster, one moved to another cluster counts there, a deleted one no longer counts,
    an event seen twice counts once (it stayed 0 whatever writer wrote)."""
    h = tenant.headers()
    a, b = [(await client.post(f"{API}/clusters/", headers=h, json={
        "name": name, "site_id": tenant.site_id, "sector_id": tenant.sector_id})).json()
        for name in ("Kettles", "Toasters")]
    x, y = next_id(), next_id()

    def content(type_: str, content_id: int, cluster_id: int, **data: object) -> Event:
        return Event(type=type_, account_id=tenant.account_id, data={
            "task_id": None, "run_id": None, "content_id": content_id,
            "writer_task_id": None, "idea_id": None, "cluster_id": cluster_id,
            "site_id": tenant.site_id, "sector_id": tenant.sector_id, **data})

    generated, updated = "writer.content.generated", "writer.content.updated"
    js = nc.jetstream()
    await nats_kernel.ensure_event_stream(js, "writer")
    for e in (content(generated, x, a["id"]), content(generated, y, a["id"]),
              content(generated, y, a["id"]),
              content(updated, x, b["id"], change="updated"),
              content(updated, y, a["id"], change="deleted")):
        await js.publish(e.subject, orjson.dumps(e.model_dump(mode="json")))
    async with running_worker(planner_settings):  # type: ignore[arg-type]

        async def counted() -> bool:
            got = [(await client.get(f"{API}/clusters/{c['id']}/", headers=h)).json()
                   for c in (a, b)]
            return [c["content_count"] for c in got] == [0, 1]

        await eventually(counted)
