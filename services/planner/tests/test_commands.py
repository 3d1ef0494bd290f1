"""`planner.lookup_cluster` answered by planner's real worker (as its own NATS user) to a
caller connected as writer's: the account's live cluster as `planner.cluster.*` describes
it, nothing for another account's or a deleted one."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from libs.common import nats as nats_kernel
from libs.common.planner import PlannerClient
from libs.common.problems import ServiceUnavailable
from libs.common.testing.plugin import NatsIdentity
from services.planner.settings import PlannerSettings

from .conftest import API, MakeTenant, Tenant, running_worker

pytestmark = pytest.mark.timeout(90)


async def test_writer_looks_up_the_accounts_live_clusters_only(
        client: httpx.AsyncClient, tenant: Tenant, make_tenant: MakeTenant,
        planner_settings: PlannerSettings, nats_identity: NatsIdentity) -> None:
    h = tenant.headers()
    r = await client.post(f"{API}/clusters/", headers=h, json={
        "site_id": tenant.site_id, "sector_id": tenant.sector_id, "name": "Burr grinders",
        "description": "Grinders with burrs"})
    assert r.status_code == 201, r.text
    made = r.json()
    gone = (await client.post(f"{API}/clusters/", headers=h, json={
        "site_id": tenant.site_id, "sector_id": tenant.sector_id, "name": "Blade grinders"}
    )).json()
    assert (await client.delete(f"{API}/clusters/{gone['id']}/", headers=h)).status_code == 204
    other = await make_tenant()

    writer = nats_identity("writer")
    nc = await nats_kernel.connect(writer["nats_url"], "test-writer",
                                   user=writer.get("nats_user"),
                                   password=writer.get("nats_password"))
    try:
        lookups = PlannerClient(nc, timeout=2.0)
        async with running_worker(planner_settings):
            found = None
            for _ in range(100):  # until the worker's responders are up
                try:
                    found = await lookups.lookup_cluster(tenant.account_id, made["id"])
                    break
                except ServiceUnavailable:
                    await asyncio.sleep(0.1)
            assert found is not None
            assert found.model_dump() == {
                "id": made["id"], "account_id": tenant.account_id,
                "site_id": tenant.site_id, "sector_id": tenant.sector_id,
                "name": "Burr grinders", "description": "Grinders with burrs", "topic": "",
                "status": "active"}
            assert await lookups.lookup_cluster(other.account_id, made["id"]) is None
            assert await lookups.lookup_cluster(tenant.account_id, gone["id"]) is None
            assert await lookups.lookup_cluster(tenant.account_id, 999_999_999) is None
        # No planner answering: the caller is told so, never a made-up answer.
        with pytest.raises(ServiceUnavailable):
            await PlannerClient(nc, timeout=0.5, retries=1).lookup_cluster(
                tenant.account_id, made["id"])
    finally:
        await nc.drain()
