"""The database away (restarting, failing over): automation's worker reaches PostgreSQL
through a TCP proxy the test cuts — every connection closed, new ones refused — for many
of the engine's ticks, then restores. The worker must ride the outage out (its engine and
scheduler poll the database at every tick; a loop that fails five times in a row ends the
worker, and `igny8 up` gives up on a worker that keeps ending) and move runs again after."""

from __future__ import annotations

from typing import Any

import httpx

from libs.common.runtime import RestartPolicy
from libs.common.testing.checks import eventually
from libs.common.testing.factories import Tenant
from libs.common.testing.tcpproxy import CuttableProxy
from services.automation.settings import AutomationSettings
from services.automation.tests.conftest import API, automation_worker


async def test_the_worker_rides_out_the_database_going_away_and_moves_runs_after(
        client: httpx.AsyncClient, settings: AutomationSettings, tenant: Tenant) -> None:
    h = tenant.headers()
    # Restarts in quick succession: without riding the outage out, a polling loop would
    # fail its five times in a row within the outage, ending the worker.
    quick = RestartPolicy(first_delay=0.01, max_delay=0.05)
    async with CuttableProxy.to(settings.database_url) as proxy, \
            automation_worker(settings.model_copy(update={"database_url": proxy.url}),
                              restart=quick):
        proxy.cut()

        async def long_away() -> bool:
            # Many ticks of the engine (0.2 s) and scheduler (0.5 s), each refused.
            return proxy.refused >= 40

        await eventually(long_away, timeout=60, every=0.1)
        proxy.restore()
        # A run started after the database is back (through the API, its own connection)
        # is moved by the same worker to its end: the tenant has no keywords, so every
        # stage closes at once.
        r = await client.post(f"{API}/run_now/?site_id={tenant.site_id}", headers=h)
        assert r.status_code == 200, r.text
        run_id = r.json()["run_id"]

        async def the_run() -> dict[str, Any]:
            runs = (await client.get(f"{API}/history/?site_id={tenant.site_id}",
                                     headers=h)).json()
            return dict(next(run for run in runs if run["run_id"] == run_id))

        async def finished() -> bool:
            return (await the_run())["status"] != "running"

        await eventually(finished, timeout=120, every=0.2)
        run = await the_run()
        assert run["status"] == "completed", run
