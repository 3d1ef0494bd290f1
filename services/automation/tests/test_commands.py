"""The commands automation relies on, answered by the real workers: billing's quote, and
planner's and writer's pipeline commands (a step asked twice under one key is one job)."""

from __future__ import annotations

import httpx
import pytest
from nats.aio.client import Client as NATS

from libs.common.billing import BillingClient
from libs.common.pipeline import PipelineClient, task_id_for
from libs.common.problems import ValidationFailed
from libs.common.testing.factories import Tenant
from services.automation.tests.conftest import add_keywords
from services.billing.testing import Ledger


async def test_billing_quotes_prices_and_the_balance(nc: NATS, billing: Ledger,
                                                     tenant: Tenant) -> None:
    quote = await BillingClient(nc).quote(tenant.account_id, [
        ("clustering", 1), ("content_generation", 1500), ("image_generation", 3)])
    assert quote.balance == await billing.spendable(tenant.account_id)
    assert quote.available == quote.balance
    assert [q.credits for q in quote.quotes] == [10, 15, quote.quotes[2].credits]
    assert quote.quotes[2].credits > 0
    with pytest.raises(ValidationFailed):
        await BillingClient(nc).quote(tenant.account_id, [("no_such_operation", 1)])


async def test_a_step_asked_twice_under_one_key_is_one_job_and_one_hold(
        nc: NATS, planner: httpx.AsyncClient, billing: Ledger, tenant: Tenant) -> None:
    ids = await add_keywords(planner, tenant, ["quiet blender", "blender for smoothies"])
    client = PipelineClient(nc, timeout=5)
    pending = await client.pending(tenant.account_id, tenant.site_id, stage=1, limit=10)
    assert sorted(pending.ids) == sorted(ids)
    assert {pending.items[str(i)]["sector_id"] for i in ids} == {tenant.sector_id}
    key = f"test:{tenant.account_id}:1:0"
    first = await client.queue(tenant.account_id, tenant.site_id, stage=1, ids=ids, key=key)
    again = await client.queue(tenant.account_id, tenant.site_id, stage=1, ids=ids, key=key)
    assert first.task_id == again.task_id == task_id_for(key)
    assert (first.replayed, again.replayed) == (False, True)
    assert len(await billing.holds(tenant.account_id)) == 1
    other = await PipelineClient(nc).pending(tenant.account_id + 999_999, tenant.site_id,
                                             stage=1, limit=10)
    assert other.count == 0  # another account sees nothing of this site
