"""A task's or content's `cluster_id` names one of the caller's planner clusters in the
body's site: writer's read model answers first, planner's `lookup_cluster` (its real
handler, on its own database) on a miss. Anything else is DRF's 400 naming the field, and
an update refused changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from libs.common.db import Database
from libs.common.testing.checks import rows

from .conftest import API, FakeAuth, MakeTenant, PlannerBook, Tenant, add_cluster, create, in_sector

pytestmark = pytest.mark.usefixtures("planner")

KINDS = ("tasks", "content")


def refused(r: httpx.Response, cluster_id: int) -> None:
    assert r.status_code == 400, r.text
    assert r.json()["errors"] == {
        "cluster_id": [f'Invalid pk "{cluster_id}" - object does not exist.']}


async def known(db: Database, t: Tenant, cluster_id: int) -> list[dict[str, Any]]:
    """The cluster as writer's read model has it (the tenant's scope)."""
    return await rows(db, t.account_id, "SELECT id, account_id, site_id, sector_id, name, "
                      "deleted FROM clusters WHERE id = :c", c=cluster_id)


@pytest.mark.parametrize("kind", KINDS)
async def test_an_unknown_cluster_is_refused_naming_the_field(
        client: httpx.AsyncClient, tenant: Tenant, kind: str) -> None:
    r = await client.post(f"{API}/{kind}/", headers=tenant.headers(), json=in_sector(
        tenant, title="Kettles", cluster_id=999_999_999))
    refused(r, 999_999_999)
    listed = await client.get(f"{API}/{kind}/", headers=tenant.headers())
    assert listed.json()["count"] == 0


@pytest.mark.parametrize("kind", KINDS)
async def test_another_tenants_cluster_is_refused(
        client: httpx.AsyncClient, tenant: Tenant, make_tenant: MakeTenant,
        writer_db: Database, planner: PlannerBook, kind: str) -> None:
    other = await make_tenant()
    # Known to writer's read model (planner's event came), and known only to planner.
    in_read_model = await add_cluster(writer_db, other)
    in_planner = (await planner.add_cluster(other.account_id, other.site_id or 0,
                                            other.sector_id))["id"]
    for cluster_id in (in_read_model, in_planner):
        r = await client.post(f"{API}/{kind}/", headers=tenant.headers(), json=in_sector(
            tenant, title="Kettles", cluster_id=cluster_id))
        refused(r, cluster_id)
    assert await known(writer_db, tenant, in_planner) == []  # nothing kept for the caller


@pytest.mark.parametrize("kind", KINDS)
async def test_the_callers_cluster_in_the_read_model_is_accepted(
        client: httpx.AsyncClient, tenant: Tenant, writer_db: Database, kind: str) -> None:
    cluster_id = await add_cluster(writer_db, tenant)
    (row,) = await create(client, tenant, f"writer/{kind}/", in_sector(
        tenant, title="Kettles", cluster_id=cluster_id))
    assert row["cluster_id"] == cluster_id
    (without,) = await create(client, tenant, f"writer/{kind}/", in_sector(
        tenant, title="Teapots", cluster_id=None))
    assert without["cluster_id"] is None


@pytest.mark.parametrize("kind", KINDS)
async def test_a_cluster_planner_just_made_is_looked_up_and_kept(
        client: httpx.AsyncClient, tenant: Tenant, writer_db: Database,
        planner: PlannerBook, kind: str) -> None:
    """Planner's event has not reached writer yet: planner answers, writer keeps it."""
    made = await planner.add_cluster(tenant.account_id, tenant.site_id or 0,
                                     tenant.sector_id, name="Gooseneck kettles",
                                     topic="Kettles")
    assert await known(writer_db, tenant, made["id"]) == []
    (row,) = await create(client, tenant, f"writer/{kind}/", in_sector(
        tenant, title="Kettles", cluster_id=made["id"]))
    assert row["cluster_id"] == made["id"]
    assert await known(writer_db, tenant, made["id"]) == [{
        "id": made["id"], "account_id": tenant.account_id, "site_id": tenant.site_id,
        "sector_id": tenant.sector_id, "name": "Gooseneck kettles", "deleted": False}]


async def test_a_cluster_planner_deleted_is_refused(
        client: httpx.AsyncClient, tenant: Tenant, planner: PlannerBook) -> None:
    made = await planner.add_cluster(tenant.account_id, tenant.site_id or 0,
                                     tenant.sector_id)
    await planner.delete_cluster(tenant.account_id, made["id"])
    r = await client.post(f"{API}/tasks/", headers=tenant.headers(), json=in_sector(
        tenant, title="Kettles", cluster_id=made["id"]))
    refused(r, made["id"])


@pytest.mark.parametrize("kind", KINDS)
async def test_a_cluster_of_another_site_of_the_account_is_refused(
        client: httpx.AsyncClient, tenant: Tenant, writer_db: Database,
        fake_auth: FakeAuth, kind: str) -> None:
    other_site, other_sectors = fake_auth.add_site(tenant.account_id)
    elsewhere = await add_cluster(writer_db, tenant, site_id=other_site,
                                  sector_id=other_sectors[0])
    r = await client.post(f"{API}/{kind}/", headers=tenant.headers(), json=in_sector(
        tenant, title="Kettles", cluster_id=elsewhere))
    refused(r, elsewhere)


@pytest.mark.parametrize("kind", KINDS)
async def test_an_update_to_a_bad_cluster_changes_nothing(
        client: httpx.AsyncClient, tenant: Tenant, make_tenant: MakeTenant,
        writer_db: Database, kind: str) -> None:
    own, other = await add_cluster(writer_db, tenant), await make_tenant()
    foreign = await add_cluster(writer_db, other)
    (row,) = await create(client, tenant, f"writer/{kind}/", in_sector(
        tenant, title="Kettles", cluster_id=own))
    url, h = f"{API}/{kind}/{row['id']}/", tenant.headers()
    for bad in (999_999_999, foreign):
        refused(await client.patch(url, headers=h, json={"cluster_id": bad,
                                                          "title": "Changed"}), bad)
        refused(await client.put(url, headers=h, json={**row, "cluster_id": bad,
                                                        "title": "Changed"}), bad)
    after = (await client.get(url, headers=h)).json()
    assert (after["cluster_id"], after["title"]) == (own, "Kettles")
    if kind == "content":
        assert after["revision"] == row["revision"]
    moved = await client.patch(url, headers=h, json={"cluster_id": None})
    assert moved.status_code == 200, moved.text
    assert moved.json()["cluster_id"] is None
    back = await client.patch(url, headers=h, json={"cluster_id": own})
    assert back.json()["cluster_id"] == own


async def test_planner_unreachable_on_a_miss_is_a_503_and_nothing_is_written(
        client: httpx.AsyncClient, tenant: Tenant, writer_db: Database,
        planner: PlannerBook) -> None:
    """As the directory answers when auth cannot be asked: never accepted unchecked. A
    cluster already in the read model needs no lookup."""
    made = await planner.add_cluster(tenant.account_id, tenant.site_id or 0,
                                     tenant.sector_id)
    known_here = await add_cluster(writer_db, tenant)
    async with planner.down():
        r = await client.post(f"{API}/tasks/", headers=tenant.headers(), json=in_sector(
            tenant, title="Kettles", cluster_id=made["id"]))
        assert r.status_code == 503, r.text
        (row,) = await create(client, tenant, "writer/tasks/", in_sector(
            tenant, title="Teapots", cluster_id=known_here))
    listed = (await client.get(f"{API}/tasks/", headers=tenant.headers())).json()
    assert [t["id"] for t in listed["results"]] == [row["id"]]
