"""Pause, resume and cancel on runs the worker advances, and the scheduler with two
automation processes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from libs.common.db import Database, TenantScope
from libs.common.testing.checks import eventually, rows
from libs.common.testing.factories import Tenant
from libs.common.testing.fake_auth import FakeAuth
from libs.common.testing.fake_openai import FakeOpenAI
from services.automation.orchestration import next_run_at
from services.automation.settings import AutomationSettings
from services.automation.tests.conftest import API, add_keywords, automation_worker
from services.billing.testing import Ledger

WORDS = ["standing desk", "electric standing desk", "standing desk converter",
         "best standing desk", "standing desk mat", "adjustable standing desk"]


async def state(client: httpx.AsyncClient, t: Tenant, run_id: str) -> dict[str, Any]:
    r = await client.get(f"{API}/history/?site_id={t.site_id}", headers=t.headers())
    return next(run for run in r.json() if run["run_id"] == run_id)


async def steps(db: Database, t: Tenant) -> list[dict[str, Any]]:
    return await rows(db, t.account_id, "SELECT stage, batch, status FROM automation_steps "
                      "WHERE account_id = :a ORDER BY id")


async def reaching(client: httpx.AsyncClient, t: Tenant, run_id: str, status: str,
                   timeout: float = 60) -> dict[str, Any]:
    """The run, once its status is `status`."""

    async def reached() -> bool:
        return (await state(client, t, run_id))["status"] == status

    await eventually(reached, timeout=timeout, every=0.5)
    return await state(client, t, run_id)


async def resume(client: httpx.AsyncClient, t: Tenant, run_id: str) -> None:
    r = await client.post(f"{API}/resume/?run_id={run_id}", headers=t.headers())
    assert r.json()["status"] == "running", r.text


async def started_in_batches_of_two(client: httpx.AsyncClient, planner: httpx.AsyncClient,
                                    t: Tenant) -> str:
    """A run of WORDS whose stage 1 takes two keywords a batch (three batches): room to
    pause, cancel or run out of credits between two of them."""
    await add_keywords(planner, t, WORDS)
    await client.patch(f"{API}/update_config/?site_id={t.site_id}", headers=t.headers(),
                       json={"stage_1_batch_size": 2})
    r = await client.post(f"{API}/run_now/?site_id={t.site_id}", headers=t.headers())
    return str(r.json()["run_id"])


async def running_step(client: httpx.AsyncClient, t: Tenant) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def seen() -> bool:
        r = await client.get(f"{API}/current_processing/?site_id={t.site_id}",
                             headers=t.headers())
        body = r.json()
        if body and body["step"] and body["step"]["status"] == "running":
            found.update(body)
            return True
        return False

    await eventually(seen, timeout=60, every=0.05)
    return found


@pytest.mark.timeout(300)
async def test_pause_waits_for_the_current_batch_then_resume_finishes(
        client: httpx.AsyncClient, planner: httpx.AsyncClient, settings: AutomationSettings,
        automation_db: Database, tenant: Tenant) -> None:
    h = tenant.headers()
    async with automation_worker(settings):
        run_id = await started_in_batches_of_two(client, planner, tenant)
        current = await running_step(client, tenant)
        assert current["stage"] == 1
        assert len(current["items"]) == 2
        r = await client.post(f"{API}/pause/?run_id={run_id}", headers=h)
        assert r.status_code == 200, r.text
        assert r.json()["status"] in ("running", "paused")

        await reaching(client, tenant, run_id, "paused")
        held = await steps(automation_db, tenant)
        assert held
        assert {s["status"] for s in held} <= {"done", "failed"}
        # Paused: no new batch starts.
        await asyncio.sleep(1.5)
        assert await steps(automation_db, tenant) == held
        await resume(client, tenant, run_id)
        run = await reaching(client, tenant, run_id, "completed", timeout=240)
        assert run["stage_results"][0]["processed"] == len(WORDS)
        kinds = [line["message"] for line in (await client.get(
            f"{API}/logs/?run_id={run_id}&lines=500", headers=h)).json()["lines"]]
        assert any(k.startswith("Paused at stage 1") for k in kinds)
        assert any(k.startswith("Resumed at stage 1") for k in kinds)


@pytest.mark.timeout(300)
async def test_a_run_out_of_credits_pauses_and_after_a_top_up_does_the_batch_it_could_not(
        client: httpx.AsyncClient, planner: httpx.AsyncClient, settings: AutomationSettings,
        automation_db: Database, billing: Ledger, tenant: Tenant) -> None:
    h = tenant.headers()
    async with automation_worker(settings):
        run_id = await started_in_batches_of_two(client, planner, tenant)
        await running_step(client, tenant)
        await client.post(f"{API}/pause/?run_id={run_id}", headers=h)
        await reaching(client, tenant, run_id, "paused")
        balance = await billing.balance(tenant.account_id)
        spendable = balance.plan_credits + balance.purchased_credits - balance.held
        await billing.adjust(tenant.account_id, -spendable)  # spent elsewhere meanwhile
        await resume(client, tenant, run_id)
        run = await reaching(client, tenant, run_id, "paused")
        assert "insufficient credits" in run["error"]
        assert run["stage_results"][0]["failed"] == 0  # nothing parked: the batch waits
        assert "queued" in {s["status"] for s in await steps(automation_db, tenant)}

        await billing.adjust(tenant.account_id, 1000)  # the top-up
        await resume(client, tenant, run_id)
        run = await reaching(client, tenant, run_id, "completed", timeout=240)
        assert run["stage_results"][0]["processed"] == len(WORDS)
        assert run["stage_results"][0]["failed"] == 0


@pytest.mark.timeout(300)
async def test_cancel_stops_after_the_current_batch(
        client: httpx.AsyncClient, planner: httpx.AsyncClient, settings: AutomationSettings,
        automation_db: Database, tenant: Tenant) -> None:
    h = tenant.headers()
    async with automation_worker(settings):
        run_id = await started_in_batches_of_two(client, planner, tenant)
        await running_step(client, tenant)
        r = await client.post(f"{API}/cancel/?run_id={run_id}", headers=h)
        assert r.status_code == 200, r.text

        await reaching(client, tenant, run_id, "cancelled")
        made = await steps(automation_db, tenant)
        assert {s["status"] for s in made} <= {"done", "failed"}
        assert len(made) < 3  # the remaining batches never started
        run = await state(client, tenant, run_id)
        assert run["current_stage"] == 1
        assert run["finished_at"]


def test_next_run_at_in_the_sites_time_zone() -> None:
    base = {"scheduled_time": "09:30", "timezone": "Europe/Berlin"}
    after = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)  # Thursday, 11:00 in Berlin
    assert next_run_at({**base, "frequency": "daily"}, after) == datetime(
        2026, 12, 4, 8, 30, tzinfo=UTC)
    assert next_run_at({**base, "frequency": "weekly"}, after) == datetime(
        2026, 12, 7, 8, 30, tzinfo=UTC)  # Monday
    assert next_run_at({**base, "frequency": "monthly"}, after) == datetime(
        2027, 1, 1, 8, 30, tzinfo=UTC)
    early = datetime(2026, 12, 3, 7, 0, tzinfo=UTC)  # 08:00 in Berlin: today still
    assert next_run_at({**base, "frequency": "daily"}, early) == datetime(
        2026, 12, 3, 8, 30, tzinfo=UTC)
    summer = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)
    assert next_run_at({**base, "frequency": "daily"}, summer) == datetime(
        2026, 7, 1, 7, 30, tzinfo=UTC)


@pytest.mark.timeout(180)
async def test_two_automation_processes_start_one_run_for_a_due_schedule(
        client: httpx.AsyncClient, settings: AutomationSettings, automation_db: Database,
        tenant: Tenant) -> None:
    h = tenant.headers()
    r = await client.patch(f"{API}/update_config/?site_id={tenant.site_id}", headers=h,
                           json={"enabled": True, "frequency": "daily",
                                 "scheduled_time": "03:00"})
    assert r.status_code == 200, r.text
    assert r.json()["next_run_at"]
    due = datetime.now(UTC) - timedelta(minutes=1)
    async with automation_db.session(TenantScope.account(tenant.account_id)) as s:
        await s.execute(text("UPDATE automation_configs SET next_run_at = :due "
                             "WHERE site_id = :site"), {"due": due, "site": tenant.site_id})
        await s.commit()
    async with automation_worker(settings), automation_worker(settings):
        async def started() -> bool:
            r = await client.get(f"{API}/history/?site_id={tenant.site_id}", headers=h)
            return len(r.json()) >= 1

        await eventually(started, timeout=60)
        await asyncio.sleep(2 * settings.schedule_check_seconds + 0.5)
    history = (await client.get(f"{API}/history/?site_id={tenant.site_id}",
                                headers=h)).json()
    assert len(history) == 1
    assert history[0]["trigger"] == "scheduled"
    config = (await client.get(f"{API}/config/?site_id={tenant.site_id}", headers=h)).json()
    assert datetime.fromisoformat(config["next_run_at"]) > datetime.now(UTC)
    assert config["last_run_at"] is not None


@pytest.mark.timeout(300)
async def test_refused_credentials_pause_the_run_and_the_resume_does_the_batch(
        client: httpx.AsyncClient, planner: httpx.AsyncClient, settings: AutomationSettings,
        fake_auth: FakeAuth, fake_openai: FakeOpenAI, tenant: Tenant) -> None:
    h = tenant.headers()
    await add_keywords(planner, tenant, WORDS[:3])
    fake_auth.set_openai(tenant.account_id, fake_openai.url, "sk-wrong", "gpt-4o-mini")
    try:
        async with automation_worker(settings):
            run_id = (await client.post(f"{API}/run_now/?site_id={tenant.site_id}",
                                        headers=h)).json()["run_id"]

            run = await reaching(client, tenant, run_id, "paused", timeout=120)
            assert "credentials" in run["error"]
            assert run["stage_results"][0]["failed"] == 0  # nothing parked: the batch waits
            fake_auth.openai.pop(tenant.account_id)  # the integration fixed (local engines)
            await resume(client, tenant, run_id)
            run = await reaching(client, tenant, run_id, "completed", timeout=120)
            assert run["stage_results"][0]["processed"] == 3
            assert run["stage_results"][0]["failed"] == 0
    finally:
        fake_auth.openai.pop(tenant.account_id, None)
