"""AI functions as jobs: 402 before any work, progress phases, results saved, credits
held → captured once (also when a worker dies mid-run) or released on failure."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx
from nats.aio.client import Client as NATS
from sqlalchemy import text

from libs.common.billing import BillingClient
from libs.common.db import Database, TenantScope
from libs.common.jobs import JobWorker
from libs.common.outbox import OutboxRelay
from libs.common.testing.checks import ai_task_log, eventually, finished_task, task_progress
from libs.common.testing.tcpproxy import CuttableProxy
from services.planner.clustering import (
    ClusteringResult,
    ExistingCluster,
    KeywordInput,
    TopicAnchor,
)
from services.planner.jobs import Engines, PlannerJobs
from services.planner.schemas import AutoCluster, AutoGenerateIdeas
from services.planner.settings import PlannerSettings

from .conftest import API, Ledger, MakeTenant, Tenant, add_keywords, running_worker

SHOES_AND_COFFEE = [
    {"keyword": "best running shoes", "volume": 900},
    {"keyword": "best running shoes for men", "volume": 400},
    {"keyword": "top running shoes", "volume": 300},
    {"keyword": "how to brew coffee", "volume": 800},
    {"keyword": "coffee brewing guide", "volume": 200},
    {"keyword": "how to brew coffee at home", "volume": 100},
]


async def test_short_credits_answer_402_before_any_work(
    client: httpx.AsyncClient, make_tenant: MakeTenant, planner_db: Database, billing: Ledger,
) -> None:
    poor = await make_tenant(credits=5)
    kws = await add_keywords(client, poor, *SHOES_AND_COFFEE[:2])
    r = await client.post(f"{API}/keywords/auto_cluster/", headers=poor.headers(),
                          json={"ids": [k["id"] for k in kws]})
    assert r.status_code == 402, r.text
    assert "credits" in r.json()["detail"].lower()
    async with planner_db.session(TenantScope.account(poor.account_id)) as s:
        logs = (await s.execute(text("SELECT count(*) FROM ai_task_logs WHERE account_id = :a"),
                                {"a": poor.account_id})).scalar_one()
    async with planner_db.session(TenantScope.system()) as s:
        queued = (await s.execute(text(
            "SELECT count(*) FROM outbox WHERE subject LIKE 'igny8.jobs.%'"
            " AND (payload->>'account_id')::bigint = :a"), {"a": poor.account_id})).scalar_one()
    assert (logs, queued) == (0, 0)
    assert await billing.holds(poor.account_id) == []
    balance = await billing.balance(poor.account_id)
    assert (balance.plan_credits, balance.held) == (5, 0)
    too_many = await client.post(f"{API}/keywords/auto_cluster/", headers=poor.headers(),
                                 json={"ids": list(range(1, 22))})
    assert too_many.status_code == 400
    assert "ids" in too_many.json()["errors"]
    viewer = await client.post(f"{API}/keywords/auto_cluster/", headers=poor.headers("viewer"),
                               json={"ids": [kws[0]["id"]]})
    assert viewer.status_code == 403


async def test_auto_cluster_then_ideas_end_to_end(
    client: httpx.AsyncClient, tenant: Tenant, planner_db: Database, planner_settings: Any,
    billing: Ledger, nc: NATS,
) -> None:
    kws = await add_keywords(client, tenant, *SHOES_AND_COFFEE)
    progress = await task_progress(nc, "planner")
    async with running_worker(planner_settings):
        r = await client.post(f"{API}/keywords/auto_cluster/", headers=tenant.headers(),
                              json={"ids": [k["id"] for k in kws], "sector_id": tenant.sector_id})
        assert r.status_code == 200, r.text
        task_id = r.json()["task_id"]
        held = await billing.holds(tenant.account_id)  # held before the job ran
        assert [(h.operation_type, h.amount) for h in held] == [("clustering", 10)]
        doc = await finished_task(progress, task_id)
        assert doc["state"] == "SUCCESS", doc
        assert doc["account_id"] == tenant.account_id
        assert doc["meta"]["percentage"] == 100
        assert doc["meta"]["phase"] == "DONE"
        assert {s["step"] for s in doc["meta"]["request_steps"]} >= {"PREP"}
        result = doc["meta"]["result"]
        assert result["keywords_clustered"] == 6
        assert result["clusters_created"] == 2

        clusters = (await client.get(f"{API}/clusters/?ordering=name",
                                     headers=tenant.headers())).json()["results"]
        counts = sorted((c["keywords_count"], c["volume"]) for c in clusters)
        assert counts == [(3, 1100), (3, 1600)]
        mapped = (await client.get(f"{API}/keywords/?status=mapped",
                                   headers=tenant.headers())).json()
        assert mapped["count"] == 6
        log = await ai_task_log(planner_db, tenant.account_id, task_id)
        assert (log["status"], log["function"], log["credits_charged"]) == (
            "success", "auto_cluster", 10)
        assert log["model"].startswith("local-")
        assert log["duration_ms"] is not None
        assert await billing.spendable(tenant.account_id) == 1000 - 10
        assert (await billing.balance(tenant.account_id)).held == 0
        assert [h.status for h in await billing.holds(tenant.account_id)] == ["captured"]
        assert [d.amount for d in await billing.debits(tenant.account_id)] == [-10]

        # Ideas for the first cluster.
        cluster = clusters[0]
        r = await client.post(f"{API}/clusters/auto_generate_ideas/", headers=tenant.headers(),
                              json={"ids": [cluster["id"]]})
        assert r.status_code == 200, r.text
        doc = await finished_task(progress, r.json()["task_id"])
        assert doc["state"] == "SUCCESS", doc
        n = doc["meta"]["result"]["ideas"]
        assert 3 <= n <= 7
        ideas = (await client.get(f"{API}/ideas/?cluster_id={cluster['id']}",
                                  headers=tenant.headers())).json()
        assert ideas["count"] == n
        assert all(i["keyword_ids"] for i in ideas["results"])
        got = (await client.get(f"{API}/clusters/{cluster['id']}/",
                                headers=tenant.headers())).json()
        assert (got["ideas_count"], got["status"]) == (n, "mapped")
        assert await billing.spendable(tenant.account_id) == 1000 - 10 - 2 * n
        assert [d.amount for d in await billing.debits(tenant.account_id)] == [-10, -2 * n]
        assert (await billing.balance(tenant.account_id)).held == 0
        two = await client.post(f"{API}/clusters/auto_generate_ideas/", headers=tenant.headers(),
                                json={"ids": [c["id"] for c in clusters]})
        assert two.status_code == 400  # one cluster per request by default
        assert two.json()["errors"]["ids"] == ["At most 1 cluster per request."]


def test_the_document_gives_each_ai_actions_batch_limit() -> None:
    """The OpenAPI document says how many ids an AI action takes (the settings' defaults,
    the reference's "max 1 cluster per batch"): it said 1,000, and schemathesis' valid
    bodies of two clusters were the 400 above."""
    ideas = AutoGenerateIdeas.model_json_schema()["properties"]["ids"]
    clustering = AutoCluster.model_json_schema()["properties"]["ids"]
    defaults = PlannerSettings()
    assert ideas["maxItems"] == defaults.auto_generate_ideas_max_clusters == 1
    assert clustering["maxItems"] == defaults.auto_cluster_max_keywords == 20
    assert "auto_generate_ideas_max_clusters" in ideas["description"]


class StallsOnce:
    """An engine whose first run never returns (its worker is killed meanwhile)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.calls = 0

    async def cluster(self, keywords: Sequence[KeywordInput],
                      existing: Sequence[ExistingCluster],
                      anchors: Sequence[TopicAnchor] = ()) -> ClusteringResult:
        self.calls += 1
        self.started.set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


async def test_job_of_a_killed_worker_is_retried_and_charged_once(
    client: httpx.AsyncClient, tenant: Tenant, planner_db: Database,
    planner_settings: PlannerSettings, billing: Ledger, nc: NATS,
) -> None:
    kws = await add_keywords(client, tenant, *SHOES_AND_COFFEE)
    progress = await task_progress(nc, "planner")
    js = nc.jetstream()
    stalls = StallsOnce()
    local = Engines.local()
    dying = PlannerJobs(planner_db, BillingClient(nc), planner_settings,
                        Engines(cluster=stalls.cluster, ideas=local.ideas))
    relay_stop, first_stop = asyncio.Event(), asyncio.Event()
    relay = asyncio.create_task(OutboxRelay(planner_db, js, service="planner").run(relay_stop))
    first = asyncio.create_task(JobWorker(
        "planner", "auto_cluster", dying.auto_cluster, js, progress,
        max_deliver=planner_settings.job_max_deliver,
        ack_wait=planner_settings.job_ack_wait_seconds).run(first_stop))
    r = await client.post(f"{API}/keywords/auto_cluster/", headers=tenant.headers(),
                          json={"ids": [k["id"] for k in kws]})
    task_id = r.json()["task_id"]
    await asyncio.wait_for(stalls.started.wait(), 20)
    first.cancel()  # the worker dies mid-run: no ack, no more in-progress signals
    await asyncio.gather(first, return_exceptions=True)
    relay_stop.set()
    await relay

    async with running_worker(planner_settings):
        doc = await finished_task(progress, task_id)
    assert doc["state"] == "SUCCESS", doc
    log = await ai_task_log(planner_db, tenant.account_id, task_id)
    assert (log["status"], log["attempts"], log["credits_charged"]) == ("success", 2, 10)
    mine = await billing.holds(tenant.account_id)
    assert [(h.status, h.captured_credits) for h in mine] == [("captured", 10)]
    debits = await billing.debits(tenant.account_id)
    assert [d.amount for d in debits] == [-10]  # one debit in billing's ledger
    assert debits[0].reference == f"hold:{mine[0].id}"
    assert await billing.spendable(tenant.account_id) == 1000 - 10
    assert (await billing.balance(tenant.account_id)).held == 0
    clusters = (await client.get(f"{API}/clusters/", headers=tenant.headers())).json()
    assert clusters["count"] == 2  # saved once


class CutsTheDatabase:
    """The local clustering engine, that cuts the job's way to the database the first time
    it runs: the job's results cannot be saved, nor its failure recorded."""

    def __init__(self, proxy: CuttableProxy) -> None:
        self.proxy = proxy
        self.local = Engines.local()
        self.calls = 0

    async def cluster(self, keywords: Sequence[KeywordInput],
                      existing: Sequence[ExistingCluster],
                      anchors: Sequence[TopicAnchor] = ()) -> ClusteringResult:
        self.calls += 1
        if self.calls == 1:
            self.proxy.cut()
        return await self.local.cluster(keywords, existing, anchors)


async def test_a_job_whose_database_goes_away_finishes_once_it_is_back_charged_once(
    client: httpx.AsyncClient, tenant: Tenant, planner_db: Database,
    planner_settings: PlannerSettings, billing: Ledger, nc: NATS,
) -> None:
    """Found on `igny8 up`: PostgreSQL away for a while, a writer job spent its attempts
    within seconds, failed, and could not record it: its log stayed `running`, its holds
    `held` until they expired. The database being away is not the job's failure: the job
    waits for it (kept in progress) and finishes, charged once."""
    kws = await add_keywords(client, tenant, *SHOES_AND_COFFEE)
    progress = await task_progress(nc, "planner")
    js = nc.jetstream()
    relay_stop, worker_stop = asyncio.Event(), asyncio.Event()
    relay = asyncio.create_task(OutboxRelay(planner_db, js, service="planner").run(relay_stop))
    # Two attempts, retried at once: counted as failures, the outage would end the job.
    settings = planner_settings.model_copy(update={"job_max_deliver": 2})
    async with CuttableProxy.to(planner_settings.database_url) as proxy:
        away = Database(proxy.url)
        cutter = CutsTheDatabase(proxy)
        jobs = PlannerJobs(away, BillingClient(nc), settings,
                           Engines(cluster=cutter.cluster, ideas=cutter.local.ideas))
        worker = asyncio.create_task(JobWorker(
            "planner", "auto_cluster", jobs.auto_cluster, js, progress, max_deliver=2,
            ack_wait=planner_settings.job_ack_wait_seconds, retry_delay=0.05).run(worker_stop))
        try:
            r = await client.post(f"{API}/keywords/auto_cluster/", headers=tenant.headers(),
                                  json={"ids": [k["id"] for k in kws]})
            assert r.status_code == 200, r.text
            task_id = r.json()["task_id"]

            async def long_away() -> bool:
                return proxy.refused >= 10

            await eventually(long_away, timeout=60)
            proxy.restore()
            doc = await finished_task(progress, task_id)
        finally:
            worker_stop.set()
            relay_stop.set()
            await asyncio.gather(worker, relay, return_exceptions=True)
            await away.dispose()
    assert doc["state"] == "SUCCESS", doc
    log = await ai_task_log(planner_db, tenant.account_id, task_id)
    assert (log["status"], log["credits_charged"]) == ("success", 10)
    mine = await billing.holds(tenant.account_id)
    assert [(h.status, h.captured_credits) for h in mine] == [("captured", 10)]
    assert [d.amount for d in await billing.debits(tenant.account_id)] == [-10]
    clusters = (await client.get(f"{API}/clusters/", headers=tenant.headers())).json()
    assert clusters["count"] == 2  # saved once


class Broken:
    async def cluster(self, keywords: Sequence[KeywordInput],
                      existing: Sequence[ExistingCluster],
                      anchors: Sequence[TopicAnchor] = ()) -> ClusteringResult:
        raise ValueError("the engine refuses")


async def test_failed_job_releases_its_hold(
    client: httpx.AsyncClient, tenant: Tenant, planner_db: Database,
    planner_settings: PlannerSettings, billing: Ledger, nc: NATS,
) -> None:
    kws = await add_keywords(client, tenant, *SHOES_AND_COFFEE[:2])
    progress = await task_progress(nc, "planner")
    engines = Engines(cluster=Broken().cluster, ideas=Engines.local().ideas)
    async with running_worker(planner_settings, engines=engines):
        r = await client.post(f"{API}/keywords/auto_cluster/", headers=tenant.headers(),
                              json={"ids": [k["id"] for k in kws]})
        doc = await finished_task(progress, r.json()["task_id"])
    assert doc["state"] == "FAILURE"
    assert "refuses" in doc["meta"]["error"]
    log = await ai_task_log(planner_db, tenant.account_id, r.json()["task_id"])
    assert log["status"] == "failed"
    assert "refuses" in log["error"]
    mine = await billing.holds(tenant.account_id)
    assert [(h.status, h.amount) for h in mine] == [("released", 10)]
    assert await billing.debits(tenant.account_id) == []
    balance = await billing.balance(tenant.account_id)
    assert (balance.plan_credits + balance.purchased_credits, balance.held) == (1000, 0)
    still = (await client.get(f"{API}/keywords/?status=active", headers=tenant.headers())).json()
    assert still["count"] == 2
