"""The catalogue (plans, industries, seed keywords and their import), the worker's
command responders, and the account's prompts (integrations: `test_integrations.py`)."""

from __future__ import annotations

import asyncio

import httpx
import orjson
from nats.aio.client import Client as NATS
from sqlalchemy import update

from libs.common.db import Database, TenantScope
from libs.common.runtime import WorkerContext
from libs.common.security import Principal
from libs.common.testing.checks import waiting_for_a_lock
from libs.common.uow import unit_of_work
from services.auth.models import User
from services.auth.seed import DEMO_EMAIL, seed_platform
from services.auth.service import ai_config

from .conftest import DATA_DIR, Tenant, login_as, outbox_events, register

SEEDS = "/api/v1/auth/seed-keywords/"


async def test_public_catalogue(client: httpx.AsyncClient) -> None:
    plans = (await client.get("/api/v1/auth/plans/")).json()
    by_slug = {p["slug"]: p for p in plans["results"]}
    assert list(by_slug)[:4] == ["free", "starter", "growth", "scale"]
    free = by_slug["free"]
    assert (free["included_credits"], free["max_users"], free["max_sites"]) == (2000, 3, 2)
    assert (free["max_sectors_per_site"], free["max_keywords"], free["max_author_profiles"]) == (
        5,
        2000,
        2,
    )
    assert by_slug["starter"]["included_credits"] == 10000
    industries = (await client.get("/api/v1/auth/industries/")).json()
    tech = next(i for i in industries["results"] if i["slug"] == "technology")
    assert {x["slug"] for x in tech["sectors"]} == {"software", "hardware", "cybersecurity"}
    assert (await client.get(f"/api/v1/auth/industries/{tech['id']}/")).status_code == 200


async def test_seed_is_idempotent_and_published(db: Database, seeded: dict[str, int]) -> None:
    assert seeded["plans"] == 4
    assert seeded["seed_keywords"] == 6
    assert seeded["accounts"] == 1
    assert seeded["sectors"] == 5
    again = await seed_platform(db, data_dir=DATA_DIR)
    assert again == {"plans": 0, "industries": 0, "sectors": 0, "seed_keywords": 0, "accounts": 0}
    assert len(await outbox_events(db, "auth.plan.created", slug="free")) == 1
    created = await outbox_events(db, "auth.seed_keyword.created", keyword="best crm software")
    assert len(created) == 1
    assert created[0]["account_id"] is None
    assert created[0]["data"]["industry_slug"] == "technology"


async def test_demo_account_has_a_site_with_two_sectors(client: httpx.AsyncClient) -> None:
    demo = await login_as(client, DEMO_EMAIL, "demo-password")
    sites = demo.user  # login user
    me = (await demo.get("/api/v1/auth/me/")).json()["user"]
    assert sites["role"] == "owner"
    assert len(me["accessible_sites"]) == 1
    site_id = me["accessible_sites"][0]["id"]
    sectors = (await demo.get(f"/api/v1/auth/sites/{site_id}/sectors/")).json()
    assert sectors["count"] == 2


async def test_seed_keyword_filters(owner: Tenant) -> None:
    async def keywords(query: str) -> set[str]:
        body = (await owner.get(f"{SEEDS}?{query}")).json()
        return {k["keyword"] for k in body["results"]}

    assert await keywords("industry=health") == {"home workout plan", "protein diet"}
    assert await keywords("sector=hardware") == {"buy gaming laptop", "laptop reviews"}
    assert await keywords("intent=commercial") == {"best crm software", "laptop reviews"}
    assert await keywords("country=gb") == {"laptop reviews"}
    assert await keywords("search=LAPTOP&industry=technology") == {
        "buy gaming laptop",
        "laptop reviews",
    }
    first = (await owner.get(f"{SEEDS}?ordering=-volume&page_size=1")).json()
    assert first["results"][0]["keyword"] == "home workout plan"
    assert first["next"]
    assert (await owner.get(f"{SEEDS}?intent=bogus")).status_code == 400


async def test_seed_keywords_filter_by_the_ids_each_row_shows(owner: Tenant) -> None:
    """A seed keyword answers `industry_id` and `sector_id`; a client filters by those
    names (`?industry_id=`), which were ignored as unknown parameters (the whole library
    came back). Both take the ids the rows show."""
    everything = (await owner.get(f"{SEEDS}?page_size=100")).json()["results"]
    laptop = next(k for k in everything if k["keyword"] == "laptop reviews")

    async def keywords(query: str) -> set[str]:
        body = (await owner.get(f"{SEEDS}?{query}")).json()
        return {k["keyword"] for k in body["results"]}

    assert await keywords(f"sector_id={laptop['sector_id']}") == {
        "buy gaming laptop", "laptop reviews"}
    same_industry = {k["keyword"] for k in everything
                     if k["industry_id"] == laptop["industry_id"]}
    assert await keywords(f"industry_id={laptop['industry_id']}") == same_industry
    assert len(same_industry) < len(everything)
    bad = await owner.get(f"{SEEDS}?industry_id=x")
    assert bad.status_code == 400
    assert "industry_id" in bad.json()["errors"]


async def test_lists_take_the_references_ordering_form(owner: Tenant) -> None:
    """D5: seed keywords took one ordering field; the reference's form is `?ordering=a,b`
    (every auth list now declares its ordering on the kernel's repository base)."""
    body = (await owner.get(f"{SEEDS}?industry=technology&ordering=-difficulty,keyword")).json()
    assert [k["keyword"] for k in body["results"]] == [
        "best crm software",
        "buy gaming laptop",
        "laptop reviews",
        "what is saas",
    ]
    # An unknown term is dropped, as DRF's OrderingFilter drops it (ADR 0041).
    dropped = (await owner.get(
        f"{SEEDS}?industry=technology&ordering=nope,-difficulty,keyword")).json()
    assert dropped["results"] == body["results"]
    # An unknown query parameter is ignored, as django-filter ignores it.
    unknown = (await owner.get(
        f"{SEEDS}?industry=technology&colour=red&ordering=-difficulty,keyword")).json()
    assert unknown["results"] == body["results"]
    plans = (await owner.get("/api/v1/auth/plans/?ordering=-price")).json()["results"]
    prices = [float(p["price"]) for p in plans]
    assert prices == sorted(prices, reverse=True)
    assert (await owner.get("/api/v1/auth/users/?role=emperor")).status_code == 400


async def test_seed_keyword_import_is_staff_only_and_all_or_nothing(
    client: httpx.AsyncClient, owner: Tenant, db: Database
) -> None:
    url = f"{SEEDS}import_seed_keywords/"
    good = (
        b"keyword,industry,sector,volume,difficulty,intent,country\n"
        b"run faster,health,fitness,100,10,informational,US\n"
    )
    assert (await owner.post(url, files={"file": ("k.csv", good)})).status_code == 403
    staff = await register(client)
    async with db.session(TenantScope.system()) as session:
        await session.execute(update(User).where(User.id == staff.user_id).values(role="developer"))
        await session.commit()
    staff = await login_as(client, staff.email)
    bad = good + b"x,nope,nothing,1,1,informational,US\nok kw,health,fitness,abc,500,weird,US\n"
    resp = await staff.post(url, files={"file": ("k.csv", bad)})
    assert resp.status_code == 400
    assert set(resp.json()["errors"]) == {"line 3", "line 4"}
    assert (await owner.get(f"{SEEDS}?search=run faster")).json()["count"] == 0
    resp = await staff.post(url, files={"file": ("k.csv", good)})
    assert resp.status_code == 200
    assert resp.json()["data"]["created"] == 1
    resp = await staff.post(url, files={"file": ("k.csv", good.replace(b",100,", b",200,"))})
    assert resp.json()["data"]["updated"] == 1
    assert len(await outbox_events(db, "auth.seed_keyword.updated", keyword="run faster")) == 1
    # Found probing the public API: each of these was a 500 (the database's error).
    header = b"keyword,industry,sector,volume\n"
    for body, field in ((header + b"walk\x00ing,health,fitness,1\n", "line 2"),
                        (header + b"walking,health,fitness,2147483648\n", "line 2"),
                        (b"\xff\xfekeyword,industry,sector\n", "file")):
        resp = await staff.post(url, files={"file": ("k.csv", body)})
        assert resp.status_code == 400, resp.text
        assert list(resp.json()["errors"]) == [field]
    plan = {"name": "Huge", "slug": "huge", "price": "1.00", "included_credits": 1,
            "max_users": 1, "max_sites": 1, "max_keywords": 2**31}
    resp = await staff.post("/api/v1/auth/plans/", json=plan)
    assert resp.status_code == 400, resp.text
    assert list(resp.json()["errors"]) == ["max_keywords"]


async def test_worker_commands(worker_ctx: WorkerContext, nc: NATS, owner: Tenant,
                               other: Tenant) -> None:
    """Asked as the tests' NATS user: auth's own credentials may not call its commands."""
    site = (await owner.post("/api/v1/auth/sites/", json={"name": "Cmd"})).json()
    await owner.post(
        f"/api/v1/auth/sites/{site['id']}/select_sectors/",
        json={"industry_slug": "health", "sector_slugs": ["fitness"]},
    )

    async def ask(command: str, payload: dict) -> dict:  # type: ignore[type-arg]
        msg = await nc.request(f"igny8.cmd.auth.{command}", orjson.dumps(payload), timeout=5)
        return orjson.loads(msg.data)  # type: ignore[no-any-return]

    found = await ask("lookup_site", {"account_id": owner.account_id, "site_id": site["id"]})
    assert found["ok"]
    assert found["site"]["id"] == site["id"]
    assert found["site"]["industry_slug"] == "health"
    assert [x["slug"] for x in found["sectors"]] == ["fitness"]
    missing = await ask("lookup_site", {"account_id": other.account_id, "site_id": site["id"]})
    assert missing == {"ok": False, "error": "Site not found.", "code": "not_found"}
    invalid = await ask("lookup_site", {"account_id": "x"})
    assert not invalid["ok"]
    assert invalid["code"] == "invalid"
    listed = (await owner.get(f"{SEEDS}?industry=health")).json()["results"]
    ids = [k["id"] for k in listed]
    answer = await ask("seed_keywords", {"ids": ids})
    assert answer["ok"]
    assert {k["id"] for k in answer["seed_keywords"]} == set(ids)
    assert set(answer["seed_keywords"][0]) == {
        "id",
        "keyword",
        "industry_id",
        "industry_slug",
        "sector_id",
        "sector_slug",
        "volume",
        "difficulty",
        "intent",
        "country",
        "is_active",
    }


async def test_prompts(owner: Tenant, other: Tenant) -> None:
    base = "/api/v1/system/prompts/"
    default = (await owner.get(f"{base}by_type/clustering/")).json()
    assert not default["is_customized"]
    assert default["prompt_value"] == default["default_prompt"]
    saved = (
        await owner.post(
            f"{base}save/",
            json={"prompt_type": "clustering", "prompt_value": "Cluster: [IGNY8_KEYWORDS]"},
        )
    ).json()["data"]
    assert saved["is_customized"]
    assert saved["id"]
    assert (
        (await owner.get(f"{base}by_type/clustering/")).json()["prompt_value"].startswith("Cluster")
    )
    assert (await other.get(f"{base}by_type/clustering/")).json()["is_customized"] is False
    assert (await other.get(f"{base}{saved['id']}/")).status_code == 404
    dup = await owner.post(base, json={"prompt_type": "clustering", "prompt_value": "x"})
    assert dup.status_code == 400
    assert "prompt_type" in dup.json()["errors"]
    made = await owner.post(base, json={"prompt_type": "ideas", "prompt_value": "Ideas!"})
    assert made.status_code == 201
    assert (await owner.patch(f"{base}{made.json()['id']}/", json={"prompt_value": "More"})).json()[
        "prompt_value"
    ] == "More"
    assert (await owner.get(base)).json()["count"] == 2
    reset = (await owner.post(f"{base}reset/", json={"prompt_type": "clustering"})).json()["data"]
    assert not reset["is_customized"]
    assert (await owner.get(f"{base}by_type/nope/")).status_code == 404
    assert (await owner.delete(f"{base}{made.json()['id']}/")).status_code == 204


async def test_a_save_waiting_behind_a_delete_of_its_prompt_saves_it_again(
        owner: Tenant, db: Database) -> None:
    """Schemathesis (two workers): a save read the prompt row that a delete was removing,
    waited for the delete's commit, then updated nothing: SQLAlchemy's StaleDataError, a
    500. The delete now takes the prompt type's turn, so the save reads after it and
    inserts the prompt anew."""
    saved = await owner.post("/api/v1/system/prompts/save/",
                             json={"prompt_type": "ideas", "prompt_value": "first"})
    assert saved.status_code == 200, saved.text
    prompt_id = saved.json()["data"]["id"]
    actor = Principal(user_id=owner.user_id, account_id=owner.account_id, role="owner")
    async with unit_of_work(db, TenantScope.account(owner.account_id)) as uow:
        await ai_config.delete_prompt(uow, actor, prompt_id)  # not committed yet
        save = asyncio.create_task(owner.post(
            "/api/v1/system/prompts/save/",
            json={"prompt_type": "ideas", "prompt_value": "second"}))
        await waiting_for_a_lock(db, save)
    answer = await save
    assert answer.status_code == 200, answer.text
    again = await owner.get("/api/v1/system/prompts/by_type/ideas/")
    assert again.json()["prompt_value"] == "second"
    assert again.json()["id"] != prompt_id

