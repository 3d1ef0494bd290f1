"""Writer as a process: health, readiness, its worker's loops, and the one task each
queued idea becomes, however often planner's event arrives."""

from __future__ import annotations

from typing import Any

import httpx
from nats.aio.client import Client as NATS

from libs.common.db import Database
from libs.common.events import Event
from libs.common.testing.checks import eventually, rows
from libs.common.testing.workers import running_worker
from services.writer.settings import WriterSettings
from services.writer.worker import run

from .conftest import API, Tenant, next_id, publish


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).json() == {"database": "ok", "nats": "ok"}
    assert (await client.get(f"{API}/tasks/")).status_code == 401


def queued_idea(t: Tenant, **fields: Any) -> Event:
    idea = {"id": next_id(), "site_id": t.site_id, "sector_id": t.sector_id,
            "cluster_id": next_id(), "idea_title": "How to descale a kettle",
            "description": "H2: Why scale builds up\nH2: Vinegar or citric acid",
            "keywords": "descale kettle, kettle limescale, how to descale a kettle with vinegar",
            "keyword_ids": [], "content_type": "post", "content_structure": "how_to",
            "estimated_word_count": 1200, **fields}
    return Event(type="planner.idea.queued", account_id=t.account_id, data=idea)


async def test_each_queued_idea_becomes_exactly_one_task(
        settings: WriterSettings, tenant: Tenant, nc: NATS, writer_db: Database,
        client: httpx.AsyncClient) -> None:
    event = queued_idea(tenant)
    idea_id = event.data["id"]
    async with running_worker(run, settings) as health:
        assert set(health["loops"]) >= {"outbox-relay", "writer-planner-events",
                                        "writer-auth-read-models"}
        await publish(nc, event)
        await publish(nc, event, msg_id="redelivered")          # the same event again
        replay = event.model_copy(update={"id": queued_idea(tenant).id})
        await publish(nc, replay)                               # a replay: a new event id
        later = queued_idea(tenant)
        await publish(nc, later)                                # another idea: its own task

        async def both_there() -> bool:
            found = await rows(writer_db, tenant.account_id,
                               "SELECT idea_id FROM tasks WHERE account_id = :a")
            return len(found) >= 2

        await eventually(both_there)
        # What came after the duplicates was applied, so they were seen and skipped.
        tasks = await rows(writer_db, tenant.account_id,
                           "SELECT * FROM tasks WHERE account_id = :a ORDER BY id")
        assert [t["idea_id"] for t in tasks] == [idea_id, later.data["id"]]
        first = tasks[0]
        assert (first["title"], first["primary_keyword"], first["status"],
                first["word_count"], first["content_structure"]) == (
            "How to descale a kettle", "descale kettle", "draft", 1200, "how_to")

        async def announced() -> bool:
            sent = await rows(writer_db, tenant.account_id,
                              "SELECT payload FROM outbox WHERE subject = :s"
                              " AND (payload->>'account_id')::bigint = :a"
                              " AND published_at IS NOT NULL", s="igny8.writer.task.created")
            return len(sent) == 2

        await eventually(announced)
    listed = (await client.get(f"{API}/tasks/", headers=tenant.headers())).json()
    assert listed["count"] == 2
