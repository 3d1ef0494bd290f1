"""Issue 14 in the planner: intent from the rules on create, update and import unless one
is given; clusters carry a topic (filter, output) and an intent that follows their
keywords; auto_cluster takes the user's topics and gives the same clusters as
`igny8 cluster` on the same keywords."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import httpx
from nats.aio.client import Client as NATS

from libs.common.testing.checks import finished_task, task_progress
from services.planner.cluster_file import cluster_csv

from .conftest import API, Tenant, add_keywords, running_worker

# The 18 keywords: three obvious topics.
CHAIRS_AND_DESKS = [
    ("ergonomic office chair", 1900), ("mesh office chair", 880), ("best office chair", 4400),
    ("office chair with lumbar support", 390), ("cheap office chair", 720),
    ("office chair for back pain", 590), ("best standing desk", 6600),
    ("electric standing desk", 1300), ("standing desk converter", 2900),
    ("adjustable standing desk", 1000), ("standing desk for home office", 210),
    ("l shaped standing desk", 480), ("shiatsu massage chair", 1600),
    ("best massage chair", 5400), ("full body massage chair", 720),
    ("zero gravity massage chair", 1300), ("massage chair for home", 260),
    ("cheap massage chair", 590),
]


async def test_intent_from_rules_unless_given(client: httpx.AsyncClient, tenant: Tenant) -> None:
    rows = await add_keywords(client, tenant, {"keyword": "cheap massage chair"},
                              {"keyword": "best massage chairs"},
                              {"keyword": "massage chair reviews"},
                              {"keyword": "how to use a massage chair"},
                              {"keyword": "massage chair", "intent": "navigational"})
    assert [r["intent"] for r in rows] == [
        "transactional", "commercial", "commercial", "informational", "navigational"]
    # New text without an intent: classified again; with one: kept.
    kid = rows[3]["id"]
    r = await client.patch(f"{API}/keywords/{kid}/", headers=tenant.headers(),
                           json={"keyword": "buy a massage chair"})
    assert r.status_code == 200, r.text
    assert r.json()["intent"] == "transactional"
    r = await client.patch(f"{API}/keywords/{kid}/", headers=tenant.headers(),
                           json={"keyword": "massage chair store", "intent": "navigational"})
    assert r.json()["intent"] == "navigational"
    r = await client.patch(f"{API}/keywords/{kid}/", headers=tenant.headers(),
                           json={"volume": 10})
    assert r.json()["intent"] == "navigational"


async def test_import_classifies_rows_without_intent(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    csv_text = ("keyword,volume,intent\n"
                "cheap standing desk,10,\n"
                "standing desk vs sitting desk,20,\n"
                "standing desk,30,navigational\n")
    r = await client.post(
        f"{API}/keywords/import_keywords/", headers=tenant.headers(),
        data={"site_id": str(tenant.site_id), "sector_id": str(tenant.sector_id)},
        files={"file": ("k.csv", csv_text.encode(), "text/csv")})
    assert r.status_code == 200, r.text
    listed = (await client.get(f"{API}/keywords/?ordering=volume",
                               headers=tenant.headers())).json()["results"]
    assert [(k["keyword"], k["intent"]) for k in listed] == [
        ("cheap standing desk", "transactional"),
        ("standing desk vs sitting desk", "commercial"),
        ("standing desk", "navigational"),
    ]


async def _auto_cluster(client: httpx.AsyncClient, tenant: Tenant, nc: NATS,
                        planner_settings: Any, body: dict[str, Any]) -> list[dict[str, Any]]:
    progress = await task_progress(nc, "planner")
    async with running_worker(planner_settings):
        r = await client.post(f"{API}/keywords/auto_cluster/", headers=tenant.headers(),
                              json=body)
        assert r.status_code == 200, r.text
        doc = await finished_task(progress, r.json()["task_id"])
        assert doc["state"] == "SUCCESS", doc
    return (await client.get(f"{API}/clusters/?page_size=100",
                             headers=tenant.headers())).json()["results"]


async def test_api_clusters_match_the_cli(
    client: httpx.AsyncClient, tenant: Tenant, nc: NATS, planner_settings: Any,
    tmp_path: Path,
) -> None:
    kws = await add_keywords(client, tenant,
                             *({"keyword": k, "volume": v} for k, v in CHAIRS_AND_DESKS))
    clusters = await _auto_cluster(client, tenant, nc, planner_settings,
                                   {"ids": [k["id"] for k in kws]})
    listed = (await client.get(f"{API}/keywords/?page_size=100",
                               headers=tenant.headers())).json()["results"]
    by_id = {c["id"]: c for c in clusters}
    api = {k["keyword"]: (by_id[k["cluster_id"]]["name"], by_id[k["cluster_id"]]["topic"])
           for k in listed}

    src = tmp_path / "k.csv"
    src.write_text("keyword,volume\n" + "".join(f"{k},{v}\n" for k, v in CHAIRS_AND_DESKS))
    report = cluster_csv(src, tmp_path / "out.csv")
    with report.output_path.open() as fh:
        cli = {r["keyword"]: (r["cluster_name"], r["topic"]) for r in csv.DictReader(fh)}
    assert api == cli
    assert len({t for _, t in api.values()}) == 3
    # The topic is a filter; a cluster's intent follows its keywords.
    topic = api["shiatsu massage chair"][1]
    r = await client.get(f"{API}/clusters/", params={"topic": topic}, headers=tenant.headers())
    assert {c["topic"] for c in r.json()["results"]} == {topic}
    assert r.json()["count"] == len({n for n, t in api.values() if t == topic})
    for c in clusters:
        assert c["intent"] in {"informational", "navigational", "commercial", "transactional"}
    r = await client.get(f"{API}/clusters/", params={"intent": "sideways"},
                         headers=tenant.headers())
    assert r.status_code == 400
    assert "intent" in r.text


async def test_auto_cluster_takes_the_users_topics(
    client: httpx.AsyncClient, tenant: Tenant, nc: NATS, planner_settings: Any,
) -> None:
    kws = await add_keywords(client, tenant,
                             *({"keyword": k, "volume": v} for k, v in CHAIRS_AND_DESKS))
    r = await client.post(f"{API}/keywords/auto_cluster/", headers=tenant.headers(),
                          json={"ids": [kws[0]["id"]], "topics": ["  "]})
    assert r.status_code == 400, r.text
    assert "topics" in r.text
    clusters = await _auto_cluster(
        client, tenant, nc, planner_settings,
        {"ids": [k["id"] for k in kws], "topics": ["Massage Chairs", "Office Chairs"],
         "seed_keywords": {"Standing Desks": ["best standing desk"]}})
    assert {c["topic"] for c in clusters} == {"Massage Chairs", "Office Chairs",
                                              "Standing Desks"}
    listed = (await client.get(f"{API}/keywords/?page_size=100",
                               headers=tenant.headers())).json()["results"]
    topic_of = {c["id"]: c["topic"] for c in clusters}
    for k in listed:
        want = ("Massage Chairs" if "massage" in k["keyword"] else
                "Standing Desks" if "desk" in k["keyword"] else "Office Chairs")
        assert topic_of[k["cluster_id"]] == want, k["keyword"]


async def test_cluster_topic_is_kept_and_intent_follows_keywords(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    r = await client.post(f"{API}/clusters/", headers=tenant.headers(), json={
        "name": "Desks", "site_id": tenant.site_id, "sector_id": tenant.sector_id,
        "topic": "  Standing   Desks "})
    assert r.status_code == 201, r.text
    cluster = r.json()
    assert (cluster["topic"], cluster["intent"]) == ("Standing Desks", "informational")
    await add_keywords(client, tenant,
                       {"keyword": "buy standing desk", "volume": 500, "cluster_id": cluster["id"]},
                       {"keyword": "standing desk benefits", "volume": 90,
                        "cluster_id": cluster["id"]})
    got = (await client.get(f"{API}/clusters/{cluster['id']}/", headers=tenant.headers())).json()
    assert got["intent"] == "transactional"
