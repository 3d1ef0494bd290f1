"""Faults: the automation worker killed (SIGKILL, as a separate process) in the middle of a
stage and started again; the run completes, no step or item is processed twice, no
capture is made twice, and no run is left `running`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from libs.common.db import Database
from libs.common.embedded import free_port
from libs.common.testing.factories import Tenant
from services.automation.settings import AutomationSettings
from services.automation.tests.conftest import API, add_keywords, eventually, rows
from services.billing.testing import Ledger

WORDS = ["espresso machine", "best espresso machine for home", "espresso machine grinder",
         "manual espresso machine", "espresso machine cleaning", "espresso descaling",
         "running shoes", "trail running shoes", "running shoes flat feet",
         "cushioned running shoes", "carbon plate running shoes", "running shoes women"]


def worker_env(settings: AutomationSettings) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("database_url", "nats_url", "environment", "command_timeout_seconds",
                 "tick_seconds", "schedule_check_seconds", "step_retry_seconds"):
        env[f"IGNY8_{name.upper()}"] = str(getattr(settings, name))
    env["IGNY8_METRICS_HOST"] = "127.0.0.1"
    env["IGNY8_METRICS_PORT"] = str(free_port(None))
    return env


@contextlib.asynccontextmanager
async def worker_process(settings: AutomationSettings
                         ) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m services.automation.worker` as its own process (killed on exit)."""
    env = worker_env(settings)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.automation.worker", env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{env['IGNY8_METRICS_PORT']}/healthz"
    try:
        async with httpx.AsyncClient() as client:
            async def healthy() -> bool:
                assert proc.returncode is None, "the worker process ended"
                try:
                    return (await client.get(url)).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(healthy, timeout=60)
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await asyncio.wait_for(proc.wait(), 10)


async def history(client: httpx.AsyncClient, t: Tenant) -> list[dict[str, Any]]:
    r = await client.get(f"{API}/history/?site_id={t.site_id}", headers=t.headers())
    return list(r.json())


@pytest.mark.timeout(600)
async def test_a_killed_automation_worker_restarts_and_the_run_completes_once(
        client: httpx.AsyncClient, planner: httpx.AsyncClient, settings: AutomationSettings,
        automation_db: Database, billing: Ledger, tenant: Tenant) -> None:
    h = tenant.headers()
    await add_keywords(planner, tenant, WORDS)
    await client.patch(f"{API}/update_config/?site_id={tenant.site_id}", headers=h,
                       json={"stage_4_batch_size": 2, "stage_6_batch_size": 4})
    run_id = (await client.post(f"{API}/run_now/?site_id={tenant.site_id}",
                                headers=h)).json()["run_id"]
    kills = 0
    for stage in (2, 4, 6):
        async with worker_process(settings) as proc:
            async def reached(stage: int = stage) -> bool:
                r = await client.get(f"{API}/current_processing/?site_id={tenant.site_id}",
                                     headers=h)
                body = r.json()
                if body is None:
                    return True  # finished before this stage was seen
                return bool(body["stage"] >= stage and body["step"]
                            and body["step"]["status"] == "running")

            await eventually(reached, timeout=240, every=0.1)
            proc.send_signal(signal.SIGKILL)
            await asyncio.wait_for(proc.wait(), 10)
            kills += 1
        await asyncio.sleep(1.0)
    async with worker_process(settings):
        async def done() -> bool:
            return (await history(client, tenant))[0]["status"] != "running"

        await eventually(done, timeout=400, every=1.0)

        # The last debits reach the run after it completed (billing's events): while the
        # worker runs, its credits become exactly the ledger's.
        async def reconciled() -> bool:
            total = (await history(client, tenant))[0]["total_credits"]
            return total == sum(abs(d.amount) for d in await billing.debits(tenant.account_id))

        await eventually(reconciled, timeout=60)
    assert kills == 3
    (run,) = await history(client, tenant)
    assert run["run_id"] == run_id
    assert run["status"] == "completed", run
    stages = {s["stage"]: s for s in run["stage_results"]}
    assert stages[1]["processed"] == len(WORDS)
    assert all(s["failed"] == 0 for s in stages.values()), stages
    assert stages[4]["created"] == stages[3]["created"]

    steps = await rows(automation_db, tenant.account_id,
                       "SELECT key, task_id, status FROM automation_steps WHERE account_id = :a")
    assert len({s["key"] for s in steps}) == len(steps)
    assert {s["status"] for s in steps} == {"done"}
    items = await rows(automation_db, tenant.account_id,
                       "SELECT stage, item_id, count(*) AS n FROM automation_items "
                       "WHERE account_id = :a GROUP BY stage, item_id HAVING count(*) > 1")
    assert items == []
    # Billing captured each hold once, and the run's credits are exactly the ledger's.
    holds = await billing.holds(tenant.account_id)
    assert all(hold.status != "held" for hold in holds)
    usage = await billing.usage_logs(tenant.account_id)
    captured = [u.hold_id for u in usage]
    assert len(captured) == len(set(captured))  # one capture per hold
    # Each job of the run was queued once: one AI task per step.
    task_ids = {str(s["task_id"]) for s in steps if s["task_id"] is not None}
    assert {u.related_object_id for u in usage} <= task_ids
