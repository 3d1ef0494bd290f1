"""Tenant isolation on every endpoint: another account's ids answer 404 (or are simply not
there for bulk actions and lists) and are never touched. Site access for editors and
viewers."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text

from libs.common.db import Database, TenantScope

from .conftest import API, Ledger, MakeTenant, Tenant, add_keywords


async def _victim(client: httpx.AsyncClient, t: Tenant) -> dict[str, Any]:
    kw = (await add_keywords(client, t, {"keyword": "secret keyword", "volume": 7}))[0]
    cluster = (await client.post(f"{API}/clusters/", headers=t.headers(), json={
        "name": "Secret cluster", "site_id": t.site_id, "sector_id": t.sector_id})).json()
    idea = (await client.post(f"{API}/ideas/", headers=t.headers(), json={
        "idea_title": "Secret idea", "site_id": t.site_id, "sector_id": t.sector_id,
        "cluster_id": cluster["id"]})).json()
    return {"keyword": kw, "cluster": cluster, "idea": idea}


async def test_another_accounts_ids_are_not_found_and_never_touched(
    client: httpx.AsyncClient, make_tenant: MakeTenant, planner_db: Database, billing: Ledger,
) -> None:
    victim = await make_tenant()
    intruder = await make_tenant()
    await add_keywords(client, intruder, {"keyword": "my own"})
    v = await _victim(client, victim)
    kid, cid, iid = v["keyword"]["id"], v["cluster"]["id"], v["idea"]["id"]
    h = intruder.headers()

    for path in (f"keywords/{kid}/", f"clusters/{cid}/", f"ideas/{iid}/"):
        assert (await client.get(f"{API}/{path}", headers=h)).status_code == 404
        assert (await client.patch(f"{API}/{path}", json={}, headers=h)).status_code == 404
        assert (await client.put(f"{API}/{path}", json={}, headers=h)).status_code == 404
        assert (await client.delete(f"{API}/{path}", headers=h)).status_code == 404
    renamed = await client.patch(f"{API}/clusters/{cid}/", json={"name": "pwned"}, headers=h)
    assert renamed.status_code == 404

    bulk = {
        "keywords/bulk_delete/": {"ids": [kid]},
        "keywords/bulk_update_status/": {"ids": [kid], "status": "archived"},
        "keywords/bulk_update/": {"ids": [kid], "status": "archived"},
        "clusters/bulk_delete/": {"ids": [cid]},
        "ideas/bulk_delete/": {"ids": [iid]},
        "ideas/bulk_queue_to_writer/": {"ids": [iid]},
    }
    for path, body in bulk.items():
        r = await client.post(f"{API}/{path}", json=body, headers=h)
        assert r.status_code == 200, (path, r.text)
        counts = {k: v for k, v in r.json()["data"].items() if k.endswith("_count")}
        assert counts, (path, r.json())
        assert set(counts.values()) == {0}, (path, r.json())

    holds_before = len(await billing.holds())
    assert (await client.post(f"{API}/keywords/auto_cluster/", json={"ids": [kid]},
                              headers=h)).status_code == 404
    assert (await client.post(f"{API}/clusters/auto_generate_ideas/", json={"ids": [cid]},
                              headers=h)).status_code == 404
    assert len(await billing.holds()) == holds_before  # no credits held for others' rows
    assert await billing.holds(intruder.account_id) == []
    assert (await billing.balance(intruder.account_id)).held == 0

    # Creating into the victim's site or cluster.
    into_site = await client.post(f"{API}/keywords/", headers=h, json={
        "keyword": "x", "site_id": victim.site_id, "sector_id": victim.sector_id})
    assert into_site.status_code == 404
    into_cluster = await client.post(f"{API}/ideas/", headers=h, json={
        "idea_title": "x", "site_id": intruder.site_id, "sector_id": intruder.sector_id,
        "cluster_id": cid})
    assert into_cluster.status_code == 400
    seeds = await client.post(f"{API}/keywords/bulk_add_from_seed/", headers=h, json={
        "seed_keyword_ids": [1], "site_id": victim.site_id, "sector_id": victim.sector_id})
    assert seeds.status_code == 404
    imported = await client.post(
        f"{API}/keywords/import_keywords/", headers=h,
        files={"file": ("k.csv", b"keyword\nx\n", "text/csv")},
        data={"site_id": str(victim.site_id), "sector_id": str(victim.sector_id)})
    assert imported.status_code == 404

    # Lists and exports: filters naming the victim's site or cluster find nothing.
    for path in (f"keywords/?site_id={victim.site_id}", f"keywords/?cluster_id={cid}",
                 f"clusters/?site_id={victim.site_id}", f"ideas/?cluster_id={cid}",
                 "keywords/?search=secret", "clusters/?search=secret", "ideas/?search=secret"):
        assert (await client.get(f"{API}/{path}", headers=h)).json()["count"] == 0, path
    export = await client.get(f"{API}/keywords/export/?search=secret", headers=h)
    assert export.text.strip().count("\n") == 0  # the header only

    # Untouched.
    assert (await client.get(f"{API}/keywords/{kid}/", headers=victim.headers())).json()[
        "status"] == "active"
    assert (await client.get(f"{API}/clusters/{cid}/", headers=victim.headers())).json()[
        "name"] == "Secret cluster"
    assert (await client.get(f"{API}/ideas/{iid}/", headers=victim.headers())).json()[
        "status"] == "new"

    # The second wall: with the repositories' filters bypassed, RLS still hides the rows.
    async with planner_db.session(TenantScope.account(intruder.account_id)) as s:
        for table in ("keywords", "clusters", "content_ideas", "keywords_visible",
                      "keyword_counts", "sites", "sectors"):
            n = (await s.execute(text(
                f"SELECT count(*) FROM {table} WHERE account_id = :a"),
                {"a": victim.account_id})).scalar_one()
            assert n == 0, table


async def test_editors_and_viewers_see_only_granted_sites(
    client: httpx.AsyncClient, tenant: Tenant, fake_auth: Any, planner_db: Database,
) -> None:
    second_site, second_sectors = fake_auth.add_site(tenant.account_id)
    await add_keywords(client, tenant, {"keyword": "on site one"})
    r = await client.post(f"{API}/keywords/", headers=tenant.headers(), json={
        "keyword": "on site two", "site_id": second_site, "sector_id": second_sectors[0]})
    assert r.status_code == 201
    editor_id = tenant.user_id + 1
    async with planner_db.session(TenantScope.account(tenant.account_id)) as s:
        await s.execute(text("INSERT INTO site_access (user_id, site_id, account_id)"
                             " VALUES (:u, :s, :a)"),
                        {"u": editor_id, "s": second_site, "a": tenant.account_id})
        await s.commit()
    editor = tenant.headers("editor", user_id=editor_id)
    listed = await client.get(f"{API}/keywords/", headers=editor)
    assert [k["keyword"] for k in listed.json()["results"]] == ["on site two"]
    assert listed.json()["count"] == 1
    owner = await client.get(f"{API}/keywords/", headers=tenant.headers())
    assert owner.json()["count"] == 2
    denied = await client.post(f"{API}/keywords/", headers=editor, json={
        "keyword": "x", "site_id": tenant.site_id, "sector_id": tenant.sector_id})
    assert denied.status_code == 403
    allowed = await client.post(f"{API}/keywords/", headers=editor, json={
        "keyword": "x", "site_id": second_site, "sector_id": second_sectors[0]})
    assert allowed.status_code == 201
    viewer = await client.get(f"{API}/keywords/", headers=tenant.headers("viewer",
                                                                          user_id=editor_id + 1))
    assert viewer.json()["count"] == 0
    # A site key's token sees its own site only.
    bot = tenant.headers("system_bot", site_id=tenant.site_id)
    assert [k["keyword"] for k in (await client.get(f"{API}/keywords/", headers=bot)).json()[
        "results"]] == ["on site one"]
