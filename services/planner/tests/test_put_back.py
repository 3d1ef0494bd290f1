"""What clients of the reference send (issue 13 D1): a keyword, cluster or idea as GET
answers it, edited and PUT back, is accepted (its read-only fields ignored); names that
are no field are ignored too, as DRF ignores them (ADR 0041); null where the column holds
none is a 400, never a 5xx (M5)."""

from __future__ import annotations

from typing import Any

import httpx

from libs.common.testing.checks import refusing_unknown_names

from .conftest import API, Tenant, add_keywords

HUGE = 2**63


async def _put_back(client: httpx.AsyncClient, t: Tenant, url: str,
                    edit: dict[str, Any]) -> dict[str, Any]:
    got = await client.get(url, headers=t.headers())
    assert got.status_code == 200, got.text
    body = {**got.json(), **edit}
    put = await client.put(url, json=body, headers=t.headers())
    assert put.status_code == 200, put.text
    again = (await client.get(url, headers=t.headers())).json()
    for key, value in edit.items():
        assert again[key] == value, (url, key)
    return again


async def _cluster(client: httpx.AsyncClient, t: Tenant, name: str = "Shoes") -> dict[str, Any]:
    r = await client.post(f"{API}/clusters/", json={
        "name": name, "site_id": t.site_id, "sector_id": t.sector_id}, headers=t.headers())
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _idea(client: httpx.AsyncClient, t: Tenant, cluster_id: int) -> dict[str, Any]:
    r = await client.post(f"{API}/ideas/", json={
        "idea_title": "Best running shoes", "site_id": t.site_id, "sector_id": t.sector_id,
        "cluster_id": cluster_id}, headers=t.headers())
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_a_get_answer_put_back_is_accepted(client: httpx.AsyncClient,
                                                 tenant: Tenant) -> None:
    t = tenant
    cluster = await _cluster(client, t)
    (keyword,) = await add_keywords(client, t, {"keyword": "trail shoes", "volume": 10})
    kw = await _put_back(client, t, f"{API}/keywords/{keyword['id']}/",
                         {"volume": 20, "cluster_id": cluster["id"]})
    assert kw["keyword"] == "trail shoes"
    back = await _put_back(client, t, f"{API}/clusters/{cluster['id']}/",
                           {"description": "All shoes"})
    assert back["keywords_count"] == 1  # a read-only count put back changed nothing
    idea = await _idea(client, t, cluster["id"])
    again = await _put_back(client, t, f"{API}/ideas/{idea['id']}/",
                            {"description": "Ten picks"})
    assert again["idea_title"] == "Best running shoes"
    # PATCH with read-only fields alone changes nothing and is no error either.
    r = await client.patch(f"{API}/keywords/{keyword['id']}/",
                           json={"id": 1, "created_at": "2020-01-01T00:00:00Z",
                                 "sector_name": "x", "cluster_name": "y"}, headers=t.headers())
    assert r.status_code == 200, r.text
    assert r.json()["id"] == keyword["id"]


def _unchanged_but(before: dict[str, Any], after: dict[str, Any], *edited: str) -> None:
    skip = {*edited, "updated_at"}
    assert {k: v for k, v in after.items() if k not in skip} == {
        k: v for k, v in before.items() if k not in skip}


async def test_names_that_are_no_field_are_ignored(client: httpx.AsyncClient,
                                                   tenant: Tenant) -> None:
    """DRF's serializer reads only its writable fields: an unknown name, a fixed one
    (`site_id`, `sector_id` of an update) or a read-only one is dropped, the rest applied,
    and nothing an ignored name names changes."""
    t = tenant
    cluster = await _cluster(client, t, "Boots")
    url = f"{API}/clusters/{cluster['id']}/"
    r = await client.put(url, headers=t.headers(), json={
        "description": "Leather", "colour": "red", "site_id": t.site_id + 1,
        "sector_id": t.sector_id + 1, "account_id": t.account_id + 1, "id": 1,
        "keywords_count": 99})
    assert r.status_code == 200, r.text
    after = (await client.get(url, headers=t.headers())).json()
    assert after["description"] == "Leather"
    _unchanged_but(cluster, after, "description")

    created = await client.post(f"{API}/keywords/", headers=t.headers(), json={
        "keyword": "x", "site_id": t.site_id, "sector_id": t.sector_id, "colour": "red",
        "account_id": t.account_id + 1})
    assert created.status_code == 201, created.text
    keyword = created.json()
    kw_url = f"{API}/keywords/{keyword['id']}/"
    r = await client.patch(kw_url, headers=t.headers(), json={
        "volume": 7, "site_id": t.site_id + 1, "sector_id": t.sector_id + 1,
        "seed_keyword_id": 1, "nonsense": [1]})
    assert r.status_code == 200, r.text
    again = (await client.get(kw_url, headers=t.headers())).json()
    assert (again["volume"], again["site_id"], again["sector_id"]) == (
        7, t.site_id, t.sector_id)
    _unchanged_but(keyword, again, "volume")

    # An action body's unknown name is ignored and the action done.
    r = await client.post(f"{API}/keywords/bulk_update_status/", headers=t.headers(),
                          json={"ids": [keyword["id"]], "status": "archived", "foo": 1})
    assert r.status_code == 200, r.text
    assert (await client.get(kw_url, headers=t.headers())).json()["status"] == "archived"
    r = await client.post(f"{API}/keywords/bulk_delete/", headers=t.headers(),
                          json={"ids": [keyword["id"]], "foo": 1})
    assert r.status_code == 200, r.text
    assert (await client.get(kw_url, headers=t.headers())).status_code == 404
    schema = (await client.get("/openapi.json")).json()
    assert refusing_unknown_names(schema) == []


async def test_null_where_the_resource_never_shows_null_is_a_400(
        client: httpx.AsyncClient, tenant: Tenant) -> None:
    t = tenant
    cluster = await _cluster(client, t, "Sandals")
    idea = await _idea(client, t, cluster["id"])
    (keyword,) = await add_keywords(client, t, {"keyword": "flip flops"})
    for url, field in ((f"{API}/clusters/{cluster['id']}/", "name"),
                       (f"{API}/clusters/{cluster['id']}/", "description"),
                       (f"{API}/ideas/{idea['id']}/", "idea_title"),
                       (f"{API}/ideas/{idea['id']}/", "keywords"),
                       (f"{API}/keywords/{keyword['id']}/", "volume"),
                       (f"{API}/keywords/{keyword['id']}/", "status")):
        r = await client.patch(url, json={field: None}, headers=t.headers())
        assert r.status_code == 400, (url, field, r.text)
        assert field in r.json()["errors"]
    # A column that holds null takes it: the keyword leaves its cluster.
    r = await client.patch(f"{API}/keywords/{keyword['id']}/", json={"cluster_id": None},
                           headers=t.headers())
    assert r.status_code == 200, r.text


async def test_bad_ids_on_clusters_and_ideas_are_400s(client: httpx.AsyncClient,
                                                      tenant: Tenant) -> None:
    """M5 on the other lists and creates: ids past bigint, and below 1."""
    t = tenant
    for path, qs, field in (("clusters", f"sector_id={HUGE}", "sector_id"),
                            ("ideas", f"cluster_id={HUGE}", "cluster_id")):
        r = await client.get(f"{API}/{path}/?{qs}", headers=t.headers())
        assert r.status_code == 400, (path, qs, r.text)
        assert field in r.json()["errors"]
    # Pages as DRF reads them: a page past bigint is past the end, a size is capped.
    assert (await client.get(f"{API}/clusters/?page={HUGE}", headers=t.headers())
            ).status_code == 404
    assert (await client.get(f"{API}/ideas/?page_size={HUGE}", headers=t.headers())
            ).status_code == 200
    for path, body, field in (
            ("clusters", {"name": "x", "site_id": -1, "sector_id": t.sector_id}, "site_id"),
            ("ideas", {"idea_title": "x", "site_id": -1, "sector_id": t.sector_id}, "site_id"),
            ("ideas", {"idea_title": "x", "site_id": t.site_id, "sector_id": t.sector_id,
                       "cluster_id": HUGE}, "cluster_id"),
            ("keywords/bulk_add_from_seed", {"seed_keyword_ids": [1], "site_id": -1,
                                              "sector_id": t.sector_id}, "site_id")):
        r = await client.post(f"{API}/{path}/", json=body, headers=t.headers())
        assert r.status_code == 400, (path, r.text)
        assert field in r.json()["errors"]
