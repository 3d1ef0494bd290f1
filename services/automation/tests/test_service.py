"""Automation's API and controls, with no automation worker running: a started run stays
where it is, so what the API does to it can be seen."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import httpx
from nats.aio.client import Client as NATS
from sqlalchemy import text

from libs.common.db import Database, TenantScope
from libs.common.events import Event
from libs.common.jobs import TaskProgress
from libs.common.natsauth import TASK_PROGRESS_BUCKET
from libs.common.pipeline import PipelineClient, QueueResult, task_id_for
from libs.common.testing.checks import eventually, refusing_unknown_names, rows
from libs.common.testing.factories import Tenant, next_id
from libs.common.testing.workers import running_worker
from libs.common.uow import unit_of_work
from services.automation.events import billing_consumer
from services.automation.orchestration import Orchestrator
from services.automation.settings import AutomationSettings
from services.automation.tests.conftest import API, MakeTenant, add_keywords
from services.automation.worker import run


async def test_the_api_answers_only_authenticated_callers(
        client: httpx.AsyncClient, tenant: Tenant) -> None:
    assert (await client.get(f"{API}/config/?site_id={tenant.site_id}")).status_code == 401


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).json() == {"database": "ok", "nats": "ok"}


async def test_the_worker_runs_its_loops(settings: AutomationSettings,
                                         client: httpx.AsyncClient) -> None:
    async with running_worker(run, settings) as health:
        assert health["status"] == "ok"
        assert health["loops"]["outbox-relay"]["state"] == "running"


async def test_config_defaults_then_update_with_checked_fields(
        client: httpx.AsyncClient, tenant: Tenant) -> None:
    h = tenant.headers()
    r = await client.get(f"{API}/config/?site_id={tenant.site_id}", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["enabled"] is False
    assert r.json()["publish_mode"] == "draft"
    assert r.json()["next_run_at"] is None
    r = await client.patch(f"{API}/update_config/?site_id={tenant.site_id}", headers=h, json={
        "enabled": True, "frequency": "weekly", "scheduled_time": "07:30",
        "timezone": "Europe/Berlin", "stage_4_batch_size": 3, "publish_mode": "auto",
        "quality_threshold": 90})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["stage_4_batch_size"] == 3
    assert body["frequency"] == "weekly"
    assert body["next_run_at"] is not None
    r = await client.get(f"{API}/config/?site_id={tenant.site_id}", headers=h)
    assert r.json()["quality_threshold"] == 90
    assert r.json()["stage_1_batch_size"] == 20
    for bad, field in (({"scheduled_time": "25:00"}, "scheduled_time"),
                       ({"timezone": "Mars/Olympus"}, "timezone"),
                       ({"stage_2_batch_size": 21}, "stage_2_batch_size"),
                       ({"publish_mode": "yolo", "nonsense": 1}, "publish_mode")):
        r = await client.put(f"{API}/update_config/?site_id={tenant.site_id}", headers=h,
                             json=bad)
        assert r.status_code == 400, (bad, r.text)
        assert list(r.json()["errors"]) == [field], r.text
    # A name that is no field is ignored, as DRF's serializer ignores it (ADR 0041), and
    # so is what the config shows but no body writes (its site, its last run).
    before = (await client.get(f"{API}/config/?site_id={tenant.site_id}", headers=h)).json()
    r = await client.put(f"{API}/update_config/?site_id={tenant.site_id}", headers=h, json={
        "quality_threshold": 80, "nonsense": 1, "site_id": tenant.site_id + 1,
        "account_id": tenant.account_id + 1, "last_run_at": "2020-01-01T00:00:00Z"})
    assert r.status_code == 200, r.text
    after = (await client.get(f"{API}/config/?site_id={tenant.site_id}", headers=h)).json()
    assert after == {**before, "quality_threshold": 80}
    assert refusing_unknown_names((await client.get("/openapi.json")).json()) == []


async def test_site_is_required_and_another_tenants_site_or_run_is_a_404(
        client: httpx.AsyncClient, make_tenant: MakeTenant) -> None:
    me, other = await make_tenant(), await make_tenant()
    r = await client.get(f"{API}/config/", headers=me.headers())
    assert r.status_code == 400
    assert "site_id" in r.json()["errors"]
    # An unknown query parameter is ignored, as django-filter ignores it.
    r = await client.get(f"{API}/history/?site_id={me.site_id}&colour=red&ordering=bogus",
                         headers=me.headers())
    assert (r.status_code, r.json()) == (200, []), r.text
    for path in ("config", "estimate", "history", "current_run", "pipeline_overview"):
        r = await client.get(f"{API}/{path}/?site_id={other.site_id}", headers=me.headers())
        assert r.status_code == 404, (path, r.text)
    r = await client.post(f"{API}/run_now/?site_id={other.site_id}", headers=me.headers())
    assert r.status_code == 404
    started = await client.post(f"{API}/run_now/?site_id={other.site_id}",
                                headers=other.headers())
    assert started.status_code == 200, started.text
    run_id = started.json()["run_id"]
    for action in ("pause", "resume", "cancel"):
        r = await client.post(f"{API}/{action}/?run_id={run_id}", headers=me.headers())
        assert r.status_code == 404, (action, r.text)
    r = await client.get(f"{API}/logs/?run_id={run_id}", headers=me.headers())
    assert r.status_code == 404
    await client.post(f"{API}/cancel/?run_id={run_id}", headers=other.headers())


async def test_the_document_says_site_id_and_run_id_are_required(
        client: httpx.AsyncClient) -> None:
    """They were documented as optional, and their absence answered 400 (schemathesis'
    positive_data_acceptance): the document says what the API answers."""
    paths = (await client.get("/openapi.json")).json()["paths"]
    required = {(method, path.removeprefix(API), p["name"]): p["required"]
                for path, item in paths.items() for method, op in item.items()
                for p in op.get("parameters", ()) if p["name"] in ("site_id", "run_id")}
    assert len(required) == 13
    assert all(required.values()), required


async def test_the_document_says_times_are_hh_mm(client: httpx.AsyncClient) -> None:
    """A time that is not HH:MM is a 400 (`_hhmm`), and the document said any string
    (schemathesis' positive_data_acceptance: 44 of its update_config bodies refused)."""
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    fields = schemas["ConfigUpdate"]["properties"]
    for name in ("scheduled_time", "publish_window_start", "publish_window_end"):
        pattern = re.compile(fields[name]["pattern"])
        assert pattern.search("23:59"), name
        assert pattern.search("00:00"), name
        assert not any(pattern.search(bad) for bad in ("24:00", "9:30", "12:60", "noon"))


async def test_estimate_counts_pending_work_and_a_short_balance_is_a_402(
        client: httpx.AsyncClient, planner: httpx.AsyncClient, make_tenant: MakeTenant) -> None:
    poor = await make_tenant(credits=10)
    await add_keywords(planner, poor, [f"budget standing desk {n}" for n in range(10)])
    r = await client.get(f"{API}/estimate/?site_id={poor.site_id}", headers=poor.headers())
    assert r.status_code == 200, r.text
    est = r.json()
    assert est["stages"][0]["pending"] == 10
    assert est["estimated_credits"] > 10
    assert est["current_balance"] == 10
    assert est["sufficient"] is False
    assert est["required_credits"] >= est["estimated_credits"] * 1.2
    r = await client.post(f"{API}/run_now/?site_id={poor.site_id}", headers=poor.headers())
    assert r.status_code == 402, r.text
    assert r.json()["errors"]["estimated_credits"] == [str(est["estimated_credits"])]
    r = await client.get(f"{API}/current_run/?site_id={poor.site_id}", headers=poor.headers())
    assert r.json() is None


async def test_run_now_twice_at_once_starts_one_run(
        client: httpx.AsyncClient, tenant: Tenant) -> None:
    url = f"{API}/run_now/?site_id={tenant.site_id}"
    answers = await asyncio.gather(*(client.post(url, headers=tenant.headers())
                                     for _ in range(4)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 409, 409, 409], [a.text for a in answers]
    r = await client.get(f"{API}/history/?site_id={tenant.site_id}", headers=tenant.headers())
    assert len(r.json()) == 1
    run_id = r.json()[0]["run_id"]
    await client.post(f"{API}/cancel/?run_id={run_id}", headers=tenant.headers())


async def test_pause_resume_cancel_a_run_no_worker_advances(
        client: httpx.AsyncClient, tenant: Tenant) -> None:
    h = tenant.headers()
    run_id = (await client.post(f"{API}/run_now/?site_id={tenant.site_id}",
                                headers=h)).json()["run_id"]
    current = (await client.get(f"{API}/current_run/?site_id={tenant.site_id}",
                                headers=h)).json()
    assert current["run_id"] == run_id
    assert current["status"] == "running"
    assert current["current_stage"] == 1
    assert len(current["stage_results"]) == 7
    r = await client.post(f"{API}/pause/?run_id={run_id}", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "paused"
    assert (await client.post(f"{API}/pause/?run_id={run_id}", headers=h)).status_code == 409
    r = await client.post(f"{API}/resume/?run_id={run_id}", headers=h)
    assert r.json()["status"] == "running"
    r = await client.post(f"{API}/cancel/?run_id={run_id}", headers=h)
    assert r.json()["status"] == "cancelled"
    assert r.json()["finished_at"]
    assert (await client.post(f"{API}/resume/?run_id={run_id}", headers=h)).status_code == 409
    r = await client.get(f"{API}/current_run/?site_id={tenant.site_id}", headers=h)
    assert r.json() is None
    lines = (await client.get(f"{API}/logs/?run_id={run_id}&lines=10",
                              headers=h)).json()["lines"]
    assert [line["message"] for line in lines][-1] == "Run cancelled."
    assert (await client.post(f"{API}/run_now/?site_id={tenant.site_id}",
                              headers=h)).status_code == 200


async def test_cancelling_a_paused_run_closes_its_open_step(
        client: httpx.AsyncClient, tenant: Tenant, automation_db: Database) -> None:
    """A run paused on refused credentials at stage 7 keeps its step and item open for
    the resume; cancelled instead, nothing of it may still read as running."""
    h = tenant.headers()
    run_id = (await client.post(f"{API}/run_now/?site_id={tenant.site_id}",
                                headers=h)).json()["run_id"]
    assert (await client.post(f"{API}/pause/?run_id={run_id}", headers=h)).status_code == 200
    async with automation_db.session(TenantScope.account(tenant.account_id)) as session:
        await session.execute(text(
            "WITH run AS (SELECT id FROM automation_runs WHERE run_id = :r), "
            "step AS (INSERT INTO automation_steps (account_id, run_pk, stage, batch, key, "
            "item_ids, status, attempts) SELECT :a, id, 7, 1, :r || ':7:1', '[41]', 'running', 1 "
            "FROM run RETURNING id, run_pk) "
            "INSERT INTO automation_items (account_id, run_pk, stage, item_id, step_id, "
            "status, reason) SELECT :a, run_pk, 7, 41, id, 'processing', '' FROM step"),
            {"a": tenant.account_id, "r": run_id})
        await session.commit()
    r = await client.post(f"{API}/cancel/?run_id={run_id}", headers=h)
    assert r.json()["status"] == "cancelled"
    (step,) = await rows(automation_db, tenant.account_id,
                         "SELECT status, error, finished_at FROM automation_steps")
    assert (step["status"], step["error"]) == ("failed", "run cancelled")
    assert step["finished_at"] is not None
    (item,) = await rows(automation_db, tenant.account_id,
                         "SELECT status, reason FROM automation_items")
    assert (item["status"], item["reason"]) == ("skipped", "run cancelled")


async def test_pipeline_overview_counts_each_stage(
        client: httpx.AsyncClient, planner: httpx.AsyncClient, tenant: Tenant) -> None:
    await add_keywords(planner, tenant, ["ergonomic office chair", "office chair lumbar"])
    r = await client.get(f"{API}/pipeline_overview/?site_id={tenant.site_id}",
                         headers=tenant.headers())
    assert r.status_code == 200, r.text
    assert [s["pending"] for s in r.json()["stages"]] == [2, 0, 0, 0, 0, 0, 0]
    r = await client.get(f"{API}/current_processing/?site_id={tenant.site_id}",
                         headers=tenant.headers())
    assert r.json() is None


async def add_step(db: Database, tenant: Tenant, run_id: str, *, stage: int, batch: int,
                   status: str, task_id: uuid.UUID, credits: int, finished: bool = False
                   ) -> None:
    """A step of the run whose job (`task_id`) says it charged `credits`."""
    async with db.session(TenantScope.account(tenant.account_id)) as session:
        await session.execute(text(
            "INSERT INTO automation_steps (account_id, run_pk, stage, batch, key, item_ids,"
            " status, attempts, task_id, result, finished_at) SELECT :a, id, :g,"
            " :b, :r || ':' || :g || ':' || :b, '[1]', :s, 1, :t,"
            " jsonb_build_object('credits', :c), CASE WHEN :f THEN now() END"
            " FROM automation_runs WHERE run_id = :r"),
            {"a": tenant.account_id, "r": run_id, "g": stage, "b": batch, "s": status,
             "t": task_id, "c": credits, "f": finished})
        await session.commit()


async def test_the_debit_that_completes_a_finished_steps_charges_wakes_the_engine(
        client: httpx.AsyncClient, tenant: Tenant, automation_db: Database) -> None:
    """A stage closes once billing's debits for its jobs have come in: the debit that
    completes a done step's charges wakes the engine, after its commit; the ones before,
    and any for a step still running, do not (a job's captures are many debits)."""
    h = tenant.headers()
    run_id = (await client.post(f"{API}/run_now/?site_id={tenant.site_id}",
                                headers=h)).json()["run_id"]
    assert (await client.post(f"{API}/pause/?run_id={run_id}", headers=h)).status_code == 200
    done, running = uuid.uuid4(), uuid.uuid4()
    await add_step(automation_db, tenant, run_id, stage=4, batch=1, status="done",
                   task_id=done, credits=5)
    await add_step(automation_db, tenant, run_id, stage=4, batch=2, status="running",
                   task_id=running, credits=5)
    wakes: list[str] = []
    consumer = billing_consumer(automation_db, None, lambda: wakes.append("woken"))

    async def debit(task_id: uuid.UUID, transaction_id: int, amount: int) -> None:
        event = Event(type="billing.credits.debited", account_id=tenant.account_id, data={
            "related_object_type": "ai_task", "related_object_id": str(task_id),
            "transaction_id": transaction_id, "amount": -amount,
            "operation_type": "content_generation"})
        async with unit_of_work(automation_db, TenantScope.account(tenant.account_id)) as uow:
            await consumer.handler(uow.session, event)
            assert wakes == [], "woken before the charge was committed"

    # Ledger transaction ids are unique across accounts: fresh ones, not 1, 2, 3.
    await debit(done, next_id(), 3)
    await debit(running, next_id(), 5)
    assert wakes == []
    await debit(done, next_id(), 2)
    assert wakes == ["woken"]


async def test_debits_that_arrive_together_are_charged_once_each_in_one_unit_of_work(
        client: httpx.AsyncClient, tenant: Tenant, automation_db: Database) -> None:
    """A job's per-item captures are as many debits, which the consumer gets in one fetch:
    its batch handler charges each ledger transaction once (one statement for the charges,
    the run's total changed once), and the batch that completes a done step's charges
    wakes the engine once, after its commit."""
    h = tenant.headers()
    run_id = (await client.post(f"{API}/run_now/?site_id={tenant.site_id}",
                                headers=h)).json()["run_id"]
    assert (await client.post(f"{API}/pause/?run_id={run_id}", headers=h)).status_code == 200
    task_id = uuid.uuid4()
    await add_step(automation_db, tenant, run_id, stage=5, batch=0, status="done",
                   task_id=task_id, credits=6)
    wakes: list[str] = []
    consumer = billing_consumer(automation_db, None, lambda: wakes.append("woken"))
    assert consumer.batch_handler is not None

    def debit(transaction_id: int, amount: int) -> Event:
        return Event(type="billing.credits.debited", account_id=tenant.account_id, data={
            "related_object_type": "ai_task", "related_object_id": str(task_id),
            "transaction_id": transaction_id, "amount": -amount,
            "operation_type": "image_prompt_extraction"})

    first, second, third = next_id(), next_id(), next_id()
    async with unit_of_work(automation_db, TenantScope.account(tenant.account_id)) as uow:
        await consumer.batch_handler(uow.session, [debit(first, 2), debit(second, 2)])
    assert wakes == []
    async with unit_of_work(automation_db, TenantScope.account(tenant.account_id)) as uow:
        # A transaction charged already (another event of it) and the last one.
        await consumer.batch_handler(uow.session, [debit(second, 2), debit(third, 2),
                                                   debit(third, 2)])
        assert wakes == [], "woken before the charges were committed"
    assert wakes == ["woken"]
    charges = await rows(automation_db, tenant.account_id,
                         "SELECT transaction_id, amount FROM automation_charges"
                         " WHERE task_id = :t ORDER BY transaction_id", t=task_id)
    assert [(c["transaction_id"], c["amount"]) for c in charges] == [
        (first, 2), (second, 2), (third, 2)]
    (run,) = await rows(automation_db, tenant.account_id,
                        "SELECT total_credits FROM automation_runs WHERE run_id = :r", r=run_id)
    assert run["total_credits"] == 6


async def test_a_stage_whose_debits_never_arrive_closes_after_the_settle_wait(
        client: httpx.AsyncClient, tenant: Tenant, automation_db: Database,
        settings: AutomationSettings, nc: NATS) -> None:
    """A stage whose work is done waits for billing's debits of its jobs (events that come
    after the jobs end); debits that never come (billing's event lost, a capture that never
    happened) must not hold the run in its stage for ever: after `settle_wait_seconds` it
    closes anyway, with a warning naming the task, and the run goes on."""
    h = tenant.headers()
    run_id = (await client.post(f"{API}/run_now/?site_id={tenant.site_id}",
                                headers=h)).json()["run_id"]
    task_id = uuid.uuid4()
    # Stage 1's only step is done, its job saying it charged 5 credits; no keyword is left
    # for the stage (the tenant has none), and no debit of the task ever comes.
    await add_step(automation_db, tenant, run_id, stage=1, batch=0, status="done",
                   task_id=task_id, credits=5, finished=True)

    async def stage_of_run() -> tuple[int, dict[str, Any]]:
        (found,) = await rows(automation_db, tenant.account_id,
                              "SELECT current_stage, results FROM automation_runs "
                              "WHERE run_id = :r", r=run_id)
        return found["current_stage"], dict(found["results"] or {})

    progress = TaskProgress(await nc.jetstream().key_value(TASK_PROGRESS_BUCKET))

    def engine(s: AutomationSettings) -> Orchestrator:
        return Orchestrator(automation_db, PipelineClient(nc, timeout=5.0), progress, s)

    (run_pk,) = [r["id"] for r in await rows(
        automation_db, tenant.account_id,
        "SELECT id FROM automation_runs WHERE run_id = :r", r=run_id)]
    # With the default wait, just after the step finished: the stage waits.
    assert settings.settle_wait_seconds >= 30
    await engine(settings).advance(run_pk, tenant.account_id)
    stage, results = await stage_of_run()
    assert stage == 1
    assert "finished_at" not in results["1"], results
    # ... waiting for the debits, not for an owner that did not answer (nothing said).
    assert await rows(automation_db, tenant.account_id,
                      "SELECT message FROM automation_logs WHERE level = 'warning'") == []

    # With a short wait, once it has passed: the stage closes without the debits.
    short = settings.model_copy(update={"settle_wait_seconds": 0.2})
    quick = engine(short)

    async def closed() -> bool:
        await quick.advance(run_pk, tenant.account_id)
        return (await stage_of_run())[0] > 1

    await eventually(closed, timeout=30, every=0.2)
    _, results = await stage_of_run()
    assert "finished_at" in results["1"], results
    warnings = await rows(automation_db, tenant.account_id,
                          "SELECT message FROM automation_logs WHERE level = 'warning' "
                          "AND stage = 1")
    assert any(str(task_id) in w["message"] and "have not all arrived" in w["message"]
               for w in warnings), warnings


class AskedPipeline(PipelineClient):
    """Owners that take every step and whose jobs do not start yet (their progress stays
    empty): what the engine asks is counted."""

    def __init__(self, nc: NATS) -> None:
        super().__init__(nc, timeout=5.0)
        self.asked: list[str] = []

    async def queue(self, account_id: int, site_id: int, *, stage: int, ids: list[int],
                    key: str, user_id: int | None = None,
                    run_id: str | None = None) -> QueueResult:
        self.asked.append(key)
        return QueueResult(stage=stage, task_id=task_id_for(key), ids=ids)


async def test_a_step_asked_again_after_a_long_pause_is_not_stale_at_once(
        client: httpx.AsyncClient, tenant: Tenant, automation_db: Database,
        settings: AutomationSettings, nc: NATS) -> None:
    """A step re-queued (refused credits or credentials) waits out the pause with its
    items and is asked again at the resume. A job that shows no sign of starting
    `STALE_JOB` after it was asked is asked for again; judged from when the step was
    recorded, a step recorded before an hour's pause was stale the moment it was asked
    again, and was asked again and again within one advance."""
    h = tenant.headers()
    run_id = (await client.post(f"{API}/run_now/?site_id={tenant.site_id}",
                                headers=h)).json()["run_id"]
    # Its first ask an hour ago, then the pause; resumed now, the step queued again.
    await add_step(automation_db, tenant, run_id, stage=1, batch=0, status="queued",
                   task_id=uuid.uuid4(), credits=0)
    async with automation_db.session(TenantScope.account(tenant.account_id)) as session:
        await session.execute(text(
            "UPDATE automation_steps SET created_at = now() - interval '1 hour',"
            " asked_at = now() - interval '1 hour' WHERE account_id = :a"),
            {"a": tenant.account_id})
        await session.commit()
    (run_pk,) = [r["id"] for r in await rows(
        automation_db, tenant.account_id,
        "SELECT id FROM automation_runs WHERE run_id = :r", r=run_id)]
    progress = TaskProgress(await nc.jetstream().key_value(TASK_PROGRESS_BUCKET))
    owners = AskedPipeline(nc)
    engine = Orchestrator(automation_db, owners, progress, settings)

    await engine.advance(run_pk, tenant.account_id)
    await engine.advance(run_pk, tenant.account_id)
    assert owners.asked == [f"{run_id}:1:0"]  # asked once, then followed
    (step,) = await rows(automation_db, tenant.account_id,
                         "SELECT status, attempts, now() - asked_at < interval '1 minute'"
                         " AS just_asked FROM automation_steps WHERE account_id = :a")
    assert (step["status"], step["attempts"], step["just_asked"]) == ("running", 2, True)
    assert await rows(automation_db, tenant.account_id,
                      "SELECT message FROM automation_logs WHERE level = 'warning'") == []

    # A job still not started STALE_JOB (times the attempts) after that ask is asked for
    # again, as before.
    async with automation_db.session(TenantScope.account(tenant.account_id)) as session:
        await session.execute(text(
            "UPDATE automation_steps SET asked_at = now() - interval '7 minutes'"
            " WHERE account_id = :a"), {"a": tenant.account_id})
        await session.commit()
    await engine.advance(run_pk, tenant.account_id)
    assert owners.asked == [f"{run_id}:1:0"] * 2
