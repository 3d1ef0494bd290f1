"""Keywords through the HTTP API: CRUD, every filter and ordering, search, pagination,
bulk actions, seeds, plan limits, the read-model miss."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text

from libs.common.db import Database, TenantScope

from .conftest import API, FakeAuth, Tenant, add_keywords


async def _list(client: httpx.AsyncClient, t: Tenant, query: str = "",
                role: str = "owner") -> dict[str, Any]:
    r = await client.get(f"{API}/keywords/?{query}", headers=t.headers(role))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _names(page: dict[str, Any]) -> list[str]:
    return [k["keyword"] for k in page["results"]]


async def _seed_set(client: httpx.AsyncClient, t: Tenant) -> list[dict[str, Any]]:
    rows = await add_keywords(
        client, t,
        {"keyword": "best running shoes", "volume": 900, "difficulty": 40, "intent": "commercial"},
        {"keyword": "running shoes for women", "volume": 300, "difficulty": 20},
        {"keyword": "buy trail shoes", "volume": 50, "difficulty": 70, "intent": "transactional"},
        {"keyword": "how to lace shoes", "volume": 1200, "difficulty": 10},
    )
    rows += await add_keywords(client, t, {"keyword": "best hiking boots", "volume": 500,
                                           "difficulty": 55, "status": "archived"},
                               sector_id=t.sector_ids[1])
    return rows


async def test_crud_and_read_model_miss(client: httpx.AsyncClient, tenant: Tenant,
                                        fake_auth: FakeAuth) -> None:
    before = len(fake_auth.lookups)
    created = (await add_keywords(client, tenant, {"keyword": "  Blue   Widgets ",
                                                   "volume": 10}))[0]
    assert created["keyword"] == "Blue Widgets"
    assert created["status"] == "active"
    assert created["intent"] == "informational"
    assert created["sector_name"] == "Sector 0"
    # The site was unknown to planner: auth was asked once, then the read model answers.
    assert len(fake_auth.lookups) == before + 1
    await add_keywords(client, tenant, {"keyword": "red widgets"})
    assert len(fake_auth.lookups) == before + 1

    duplicate = await client.post(f"{API}/keywords/", headers=tenant.headers(), json={
        "keyword": "blue widgets", "site_id": tenant.site_id, "sector_id": tenant.sector_id})
    assert duplicate.status_code == 409
    other_sector = await client.post(f"{API}/keywords/", headers=tenant.headers(), json={
        "keyword": "blue widgets", "site_id": tenant.site_id, "sector_id": tenant.sector_ids[1]})
    assert other_sector.status_code == 201

    url = f"{API}/keywords/{created['id']}/"
    assert (await client.get(url, headers=tenant.headers("admin"))).json()["id"] == created["id"]
    patched = await client.patch(url, json={"volume": 99, "difficulty": 100},
                                 headers=tenant.headers("admin"))
    assert patched.status_code == 200
    assert (patched.json()["volume"], patched.json()["difficulty"]) == (99, 100)
    bad = await client.put(url, json={"difficulty": 101}, headers=tenant.headers())
    assert bad.status_code == 400
    assert "difficulty" in bad.json()["errors"]
    clash = await client.put(url, json={"keyword": "RED widgets"}, headers=tenant.headers())
    assert clash.status_code == 409
    denied = await client.patch(url, json={"volume": 1}, headers=tenant.headers("viewer"))
    assert denied.status_code == 403

    assert (await client.delete(url, headers=tenant.headers())).status_code == 204
    assert (await client.get(url, headers=tenant.headers())).status_code == 404
    assert (await client.delete(url, headers=tenant.headers())).status_code == 404
    # Soft delete: the text is free again.
    again = await add_keywords(client, tenant, {"keyword": "blue widgets"})
    assert again[0]["id"] != created["id"]

    unknown_site = await client.post(f"{API}/keywords/", headers=tenant.headers(), json={
        "keyword": "x", "site_id": 1, "sector_id": 2})
    assert unknown_site.status_code == 404
    wrong_sector = await client.post(f"{API}/keywords/", headers=tenant.headers(), json={
        "keyword": "x", "site_id": tenant.site_id, "sector_id": 2})
    assert wrong_sector.status_code == 400


async def test_every_filter(client: httpx.AsyncClient, tenant: Tenant) -> None:
    rows = await _seed_set(client, tenant)
    ids = {r["keyword"]: r["id"] for r in rows}
    t = tenant
    assert (await _list(client, t))["count"] == 5
    assert set(_names(await _list(client, t, "status=archived"))) == {"best hiking boots"}
    assert (await _list(client, t, "status=active"))["count"] == 4
    assert set(_names(await _list(client, t, "seed_keyword__intent=transactional"))) == {
        "buy trail shoes"}
    assert (await _list(client, t, "difficulty_min=40&difficulty_max=55"))["count"] == 2
    assert set(_names(await _list(client, t, "volume_min=300&volume_max=900"))) == {
        "best running shoes", "running shoes for women", "best hiking boots"}
    assert (await _list(client, t, f"site_id={t.site_id}"))["count"] == 5
    assert (await _list(client, t, f"sector_id={t.sector_ids[1]}"))["count"] == 1
    assert (await _list(client, t, f"sector_id={t.sector_ids[0]}&status=active"))["count"] == 4
    assert set(_names(await _list(client, t, "search=BEST"))) == {"best running shoes",
                                                                   "best hiking boots"}
    assert (await _list(client, t, "search=50%25"))["count"] == 0  # LIKE wildcards are literal
    assert (await _list(client, t, "search=best&volume_min=600"))["count"] == 1

    cluster = await client.post(f"{API}/clusters/", headers=t.headers(), json={
        "name": "Running", "site_id": t.site_id, "sector_id": t.sector_id})
    cid = cluster.json()["id"]
    for name in ("best running shoes", "running shoes for women"):
        r = await client.patch(f"{API}/keywords/{ids[name]}/", json={"cluster_id": cid},
                               headers=t.headers())
        assert r.status_code == 200
        assert r.json()["cluster_name"] == "Running"
    assert (await _list(client, t, f"cluster_id={cid}"))["count"] == 2

    # Filtered counts are cached against the account's keyword version: still exact.
    assert (await _list(client, t, "search=boots&volume_min=1"))["count"] == 1
    assert (await _list(client, t, "search=boots&volume_min=1"))["count"] == 1
    extra = await add_keywords(client, t, {"keyword": "cheap boots", "volume": 5})
    assert (await _list(client, t, "search=boots&volume_min=1"))["count"] == 2
    await client.patch(f"{API}/keywords/{extra[0]['id']}/", json={"volume": 0},
                       headers=t.headers())
    assert (await _list(client, t, "search=boots&volume_min=1"))["count"] == 1
    await client.delete(f"{API}/keywords/{ids['best hiking boots']}/", headers=t.headers())
    assert (await _list(client, t, "search=boots&volume_min=1"))["count"] == 0

    invalid = await client.get(f"{API}/keywords/?status=bogus", headers=t.headers())
    assert invalid.status_code == 400
    assert "status" in invalid.json()["errors"]


async def test_seed_filter_and_bulk_add(client: httpx.AsyncClient, tenant: Tenant,
                                        fake_auth: FakeAuth) -> None:
    a = fake_auth.add_seed("seo audit tool", volume=800, difficulty=60, intent="commercial")
    b = fake_auth.add_seed("what is seo", volume=5000, difficulty=20, intent="informational")
    await add_keywords(client, tenant, {"keyword": "SEO audit tool"})  # already there
    r = await client.post(f"{API}/keywords/bulk_add_from_seed/", headers=tenant.headers(), json={
        "seed_keyword_ids": [a, b, 999], "site_id": tenant.site_id, "sector_id": tenant.sector_id})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["data"]["created"] == 1
    assert body["data"]["skipped"] == 1
    assert body["data"]["not_found"] == [999]
    added = body["data"]["keywords"][0]
    assert (added["keyword"], added["volume"], added["intent"]) == ("what is seo", 5000,
                                                                    "informational")
    page = await _list(client, tenant, f"seed_keyword_id={b}")
    assert _names(page) == ["what is seo"]
    again = await client.post(f"{API}/keywords/bulk_add_from_seed/", headers=tenant.headers(),
                              json={"seed_keyword_ids": [a, b], "site_id": tenant.site_id,
                                    "sector_id": tenant.sector_id})
    assert again.json()["data"]["created"] == 0


async def test_bulk_add_from_seed_skips_by_the_databases_lowercasing(
        client: httpx.AsyncClient, tenant: Tenant, fake_auth: FakeAuth,
        planner_db: Database) -> None:
    """A text is a duplicate when PostgreSQL's lower() says so (the unique index, ADR
    0012), not Python's: under the test database's C collation lower() leaves 'ẞ' (and
    'É', 'İ') as they are, where str.lower() makes 'ẞ' 'ß'. Counted with str.lower(),
    'STRAẞE KARTE' was skipped as the sector's 'Straße Karte' and 'ß map' as the batch's
    'ẞ MAP', though the database holds them as different texts."""
    async with planner_db.session(TenantScope.system()) as s:
        lowered = (await s.execute(text("SELECT lower('STRAẞE'), lower('Straße')"))).one()
    assert tuple(lowered) == ("straẞe", "straße"), (
        f"the premise is the C collation's lower(); this database's gives {tuple(lowered)}")
    await add_keywords(client, tenant, {"keyword": "Straße Karte"})
    seeds = [fake_auth.add_seed(name) for name in
             ("STRAẞE KARTE", "straße karte", "ẞ MAP", "ß map", "ß MAP")]
    r = await client.post(f"{API}/keywords/bulk_add_from_seed/", headers=tenant.headers(), json={
        "seed_keyword_ids": seeds, "site_id": tenant.site_id, "sector_id": tenant.sector_id})
    assert r.status_code == 200, r.text
    body = r.json()["data"]
    assert (body["created"], body["skipped"]) == (3, 2)
    assert sorted(k["keyword"] for k in body["keywords"]) == ["STRAẞE KARTE", "ß map", "ẞ MAP"]
    assert sorted(_names(await _list(client, tenant, "page_size=100"))) == [
        "STRAẞE KARTE", "Straße Karte", "ß map", "ẞ MAP"]


async def test_bulk_add_from_seed_counts_only_new_texts_against_the_plan(
        client: httpx.AsyncClient, tenant: Tenant, fake_auth: FakeAuth,
        planner_db: Database) -> None:
    await _tiny_plan(planner_db, tenant, max_keywords=3)
    await add_keywords(client, tenant, {"keyword": "one"}, {"keyword": "two"})

    async def add(*names: str) -> httpx.Response:
        return await client.post(f"{API}/keywords/bulk_add_from_seed/", headers=tenant.headers(),
                                 json={"seed_keyword_ids": [fake_auth.add_seed(n) for n in names],
                                       "site_id": tenant.site_id, "sector_id": tenant.sector_id})

    fits = await add("ONE", "Two", "three")  # two of them are there already
    assert fits.status_code == 200, fits.text
    assert (fits.json()["data"]["created"], fits.json()["data"]["skipped"]) == (1, 2)
    over = await add("four")
    assert over.status_code == 403
    assert "limit" in over.json()["detail"]
    assert (await _list(client, tenant))["count"] == 3  # nothing of the refused batch kept


async def _tiny_plan(planner_db: Database, tenant: Tenant, *, max_keywords: int) -> None:
    plan_id = tenant.account_id  # any id unique to this test
    async with planner_db.session(TenantScope.account(tenant.account_id)) as s:
        await s.execute(text("INSERT INTO accounts (account_id, status, plan_id, deleted)"
                             " VALUES (:a, 'active', :p, false)"),
                        {"a": tenant.account_id, "p": plan_id})
        await s.commit()
    async with planner_db.session(TenantScope.system()) as s:
        await s.execute(text("INSERT INTO plans (id, slug, max_keywords, is_active)"
                             " VALUES (:p, 'tiny', :m, true)"), {"p": plan_id, "m": max_keywords})
        await s.commit()


async def test_ordering(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await _seed_set(client, tenant)
    t = tenant
    default = _names(await _list(client, t))
    assert default[0] == "best hiking boots"  # newest first
    assert _names(await _list(client, t, "ordering=created_at"))[0] == "best running shoes"
    by_volume = _names(await _list(client, t, "ordering=-volume"))
    assert by_volume == ["how to lace shoes", "best running shoes", "best hiking boots",
                         "running shoes for women", "buy trail shoes"]
    assert _names(await _list(client, t, "ordering=seed_keyword__volume")) == by_volume[::-1]
    assert _names(await _list(client, t, "ordering=-seed_keyword__difficulty"))[0] == (
        "buy trail shoes")
    assert _names(await _list(client, t, "ordering=difficulty"))[0] == "how to lace shoes"
    combined = _names(await _list(client, t, "ordering=status,-volume"))
    assert combined[-1] == "best hiking boots"
    assert combined[0] == "how to lace shoes"
    # Unknown terms are dropped, as DRF's OrderingFilter drops them (ADR 0041).
    assert _names(await _list(client, t, "ordering=password")) == default
    assert _names(await _list(client, t, "ordering=status,password,-volume")) == combined
    # A term holding U+0000 names no column either: dropped, not refused (ADR 0041).
    assert _names(await _list(client, t, "ordering=status,pass%00word,-volume")) == combined
    # An unknown query parameter is ignored, as django-filter ignores it.
    assert _names(await _list(client, t, "colour=red&ordering=status,-volume")) == combined


async def test_pagination_caps(client: httpx.AsyncClient, tenant: Tenant,
                               planner_db: Database) -> None:
    async with planner_db.session(TenantScope.account(tenant.account_id)) as s:
        await add_keywords(client, tenant, {"keyword": "seed row"})  # makes the read model
        await s.execute(text(
            "INSERT INTO keywords (account_id, site_id, sector_id, keyword, volume, difficulty,"
            " intent, status, disabled)"
            " SELECT :a, :s, :x, 'kw ' || g, g, g % 100, 'informational', 'active', false"
            " FROM generate_series(1, 149) g"),
            {"a": tenant.account_id, "s": tenant.site_id, "x": tenant.sector_id})
        await s.commit()
    first = await _list(client, tenant)
    assert first["count"] == 150
    assert len(first["results"]) == 10
    assert first["previous"] is None
    assert first["next"].endswith("page=2")
    capped = await _list(client, tenant, "page_size=1000")
    assert len(capped["results"]) == 100
    last = await _list(client, tenant, "page=2&page_size=100")
    assert len(last["results"]) == 50
    assert last["next"] is None
    beyond = await client.get(f"{API}/keywords/?page=3&page_size=100", headers=tenant.headers())
    assert beyond.status_code == 404
    # DRF's `page=last`: the last page of the (cached) count, linked by number.
    by_name = await _list(client, tenant, "page=last&page_size=100&ordering=volume")
    by_number = await _list(client, tenant, "page=2&page_size=100&ordering=volume")
    assert by_name["results"] == by_number["results"]
    assert (len(by_name["results"]), by_name["next"]) == (50, None)
    assert by_name["previous"].endswith("/keywords/?page_size=100&ordering=volume")
    zero = await _list(client, tenant, "page_size=0")  # DRF: the default size
    assert len(zero["results"]) == 10
    # Pages partition the list: no row twice, none missing.
    seen = []
    for n in range(1, 4):
        page = await _list(client, tenant, f"page={n}&page_size=50")
        seen += [k["id"] for k in page["results"]]
    assert len(set(seen)) == 150


async def test_bulk_actions_and_counts_stay_exact(client: httpx.AsyncClient, tenant: Tenant,
                                                  make_tenant: Any) -> None:
    rows = await _seed_set(client, tenant)
    ids = [r["id"] for r in rows]
    r = await client.post(f"{API}/keywords/bulk_update_status/", headers=tenant.headers(),
                          json={"ids": ids[:3], "status": "archived"})
    assert r.json()["data"] == {"updated_count": 3}
    assert (await _list(client, tenant, "status=archived"))["count"] == 4
    alias = await client.post(f"{API}/keywords/bulk_update/", headers=tenant.headers(),
                              json={"ids": ids[:1], "status": "active"})
    assert alias.json()["data"] == {"updated_count": 1}
    assert (await _list(client, tenant, "status=active"))["count"] == 2
    bad = await client.post(f"{API}/keywords/bulk_update_status/", headers=tenant.headers(),
                            json={"ids": ids, "status": "gone"})
    assert bad.status_code == 400
    deleted = await client.post(f"{API}/keywords/bulk_delete/", headers=tenant.headers(),
                                json={"ids": ids[:2]})
    assert deleted.json()["data"] == {"deleted_count": 2}
    assert (await _list(client, tenant))["count"] == 3
    assert (await _list(client, tenant, "status=archived"))["count"] == 2
    viewer = await client.post(f"{API}/keywords/bulk_delete/", headers=tenant.headers("viewer"),
                               json={"ids": ids})
    assert viewer.status_code == 403


async def test_plan_keyword_limit(client: httpx.AsyncClient, tenant: Tenant,
                                  planner_db: Database) -> None:
    await _tiny_plan(planner_db, tenant, max_keywords=2)
    await add_keywords(client, tenant, {"keyword": "one"}, {"keyword": "two"})
    third = await client.post(f"{API}/keywords/", headers=tenant.headers(), json={
        "keyword": "three", "site_id": tenant.site_id, "sector_id": tenant.sector_id})
    assert third.status_code == 403
    assert "limit" in third.json()["detail"]


async def test_suspended_account_is_refused(client: httpx.AsyncClient, tenant: Tenant,
                                            planner_db: Database) -> None:
    async with planner_db.session(TenantScope.account(tenant.account_id)) as s:
        await s.execute(text("INSERT INTO accounts (account_id, status, deleted)"
                             " VALUES (:a, 'suspended', false)"), {"a": tenant.account_id})
        await s.commit()
    r = await client.get(f"{API}/keywords/", headers=tenant.headers())
    assert r.status_code == 403


async def test_numbers_the_database_cannot_hold_are_400s_or_404s(
        client: httpx.AsyncClient, tenant: Tenant) -> None:
    """Issue 13 M5: ids past bigint in a path, an id list, a filter or a page number, and
    ids below 1 in a body, are the caller's error, never a 5xx."""
    big = 2**63
    t = tenant
    for path in (f"keywords/{big}/", f"clusters/{big}/", f"ideas/{big}/"):  # no such row
        assert (await client.get(f"{API}/{path}", headers=t.headers())).status_code == 404
    for qs, field in ((f"cluster_id={big}", "cluster_id"), (f"volume_min={big}", "volume_min"),
                      ("status=bogus", "status")):
        r = await client.get(f"{API}/keywords/?{qs}", headers=t.headers())
        assert r.status_code == 400, (qs, r.text)
        assert field in r.json()["errors"]
    for page in (1133416100135823104, big):  # DRF's "Invalid page."
        assert (await client.get(f"{API}/keywords/?page={page}",
                                 headers=t.headers())).status_code == 404
    assert (await client.get(f"{API}/keywords/?status=", headers=t.headers())).status_code == 200
    for body, field in (({"keyword": "x", "site_id": -1, "sector_id": t.sector_id}, "site_id"),
                        ({"keyword": "x", "site_id": t.site_id, "sector_id": big}, "sector_id"),
                        ({"keyword": "x", "site_id": t.site_id, "sector_id": t.sector_id,
                          "volume": big}, "volume")):
        r = await client.post(f"{API}/keywords/", json=body, headers=t.headers())
        assert r.status_code == 400, r.text
        assert field in r.json()["errors"]
    r = await client.post(f"{API}/keywords/bulk_delete/", json={"ids": [1, big]},
                          headers=t.headers())
    assert r.status_code == 400
    assert "ids.1" in r.json()["errors"]
