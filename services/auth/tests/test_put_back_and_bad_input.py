"""What clients of the reference send (issue 13): a GET answer edited and PUT back is
accepted on every auth resource (D1), and bad input is a 400/404, never a 5xx (M5)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import func, select

from libs.common.db import Database, TenantScope
from libs.common.testing.checks import refusing_unknown_names
from services.auth.models import Prompt

from .conftest import Tenant, add_member

HUGE = 2**63  # one past PostgreSQL's bigint
PROMPTS = "/api/v1/system/prompts/"


async def _put_back(tenant: Tenant, url: str, edit: dict[str, Any]) -> dict[str, Any]:
    """GET `url`, change `edit` in the answer, PUT the whole object back."""
    got = await tenant.get(url)
    assert got.status_code == 200, got.text
    body = {**got.json(), **edit}
    put = await tenant.put(url, json=body)
    assert put.status_code == 200, put.text
    again = (await tenant.get(url)).json()
    for key, value in edit.items():
        assert again[key] == value, (url, key)
    return again


async def test_owners_and_admins_edit_their_own_user(owner: Tenant) -> None:
    """`PUT /users/{id}/` on one's own user (a profile form: the GET answer, its name
    edited) was 403 "not below yours", and `role: "owner"` put back a 400: an owner could
    change their name nowhere. Their own name, yes; their own role or active flag, no."""
    me = f"/api/v1/auth/users/{owner.user_id}/"
    await _put_back(owner, me, {"first_name": "Olive", "last_name": "Owner"})
    for change in ({"role": "admin"}, {"is_active": False}):
        refused = await owner.patch(me, json=change)
        assert refused.status_code == 403, (change, refused.text)
    admin = await add_member(owner, "admin")
    own = f"/api/v1/auth/users/{admin.user_id}/"
    await _put_back(admin, own, {"username": "the-admin"})
    assert (await admin.patch(own, json={"role": "owner"})).status_code == 403
    assert (await admin.put(f"/api/v1/auth/users/{owner.user_id}/",
                            json={"first_name": "Not yours"})).status_code == 403
    assert (await owner.get(me)).json()["role"] == "owner"


async def test_a_get_answer_put_back_is_accepted(owner: Tenant) -> None:
    site = (await owner.post("/api/v1/auth/sites/", json={"name": "Blog"})).json()
    await _put_back(owner, f"/api/v1/auth/sites/{site['id']}/", {"name": "Blog 2"})
    sector = (
        await owner.post("/api/v1/auth/sectors/", json={"site_id": site["id"], "name": "Shoes"})
    ).json()
    await _put_back(owner, f"/api/v1/auth/sectors/{sector['id']}/", {"description": "All"})
    member = await add_member(owner, "viewer")
    await _put_back(owner, f"/api/v1/auth/users/{member.user_id}/", {"first_name": "Ann"})
    await _put_back(owner, f"/api/v1/auth/accounts/{owner.account_id}/", {"tax_id": "DE1"})
    await _put_back(owner, "/api/v1/account/settings/", {"name": "Renamed"})
    group = (await owner.post("/api/v1/auth/groups/", json={"name": "Team"})).json()
    await _put_back(owner, f"/api/v1/auth/groups/{group['id']}/", {"description": "Writers"})
    prompt = (
        await owner.post(
            "/api/v1/system/prompts/", json={"prompt_type": "ideas", "prompt_value": "Ideas"}
        )
    ).json()
    await _put_back(owner, f"/api/v1/system/prompts/{prompt['id']}/", {"prompt_value": "More"})
    integration = "/api/v1/system/settings/integrations/openai/"
    saved = await owner.put(integration, json={"api_key": "sk-put-back-12345678"})
    assert saved.status_code == 200
    back = await _put_back(owner, integration, {"is_active": False})
    assert back["api_key"] == "********5678"  # the masked key put back left the key alone


async def test_names_that_are_no_field_are_ignored(owner: Tenant) -> None:
    """As DRF's serializer ignores them (ADR 0041): the rest of the body is applied, and
    nothing an ignored name names changes (an id, a slug, a status, another account)."""
    url = "/api/v1/account/settings/"
    before = (await owner.get(url)).json()
    resp = await owner.put(url, json={"name": "Kept", "colour": "red", "id": 1,
                                      "slug": "hijack", "status": "suspended",
                                      "account_id": owner.account_id + 1})
    assert resp.status_code == 200, resp.text
    after = (await owner.get(url)).json()
    assert after["name"] == "Kept"
    assert {k: v for k, v in after.items() if k not in ("name", "updated_at")} == {
        k: v for k, v in before.items() if k not in ("name", "updated_at")}

    # A fixed field (a sector's site) sent in an update moves nothing; an action body's
    # unknown name is ignored and the action done.
    site = (await owner.post("/api/v1/auth/sites/", json={"name": "Here"})).json()
    elsewhere = (await owner.post("/api/v1/auth/sites/", json={"name": "There"})).json()
    sector = (await owner.post("/api/v1/auth/sectors/",
                               json={"site_id": site["id"], "name": "Shoes"})).json()
    moved = await owner.put(f"/api/v1/auth/sectors/{sector['id']}/", json={
        "description": "All", "site_id": elsewhere["id"], "account_id": 1, "foo": 1})
    assert moved.status_code == 200, moved.text
    again = (await owner.get(f"/api/v1/auth/sectors/{sector['id']}/")).json()
    assert (again["site_id"], again["account_id"], again["description"]) == (
        site["id"], owner.account_id, "All")
    chosen = await owner.post(f"/api/v1/auth/sites/{site['id']}/select_sectors/", json={
        "industry_slug": "technology", "sector_slugs": ["software"], "foo": 1})
    assert chosen.status_code == 200, chosen.text
    schema = await owner.get("/openapi.json")
    assert schema.status_code == 200
    assert refusing_unknown_names(schema.json()) == []


async def test_account_status_and_plan_put_back_unchanged_need_no_staff(owner: Tenant) -> None:
    url = f"/api/v1/auth/accounts/{owner.account_id}/"
    got = (await owner.get(url)).json()
    assert (await owner.put(url, json={"status": got["status"]})).status_code == 200
    assert (await owner.put(url, json={"status": "suspended"})).status_code == 403


async def test_null_for_a_column_that_cannot_hold_it_is_a_400(owner: Tenant) -> None:
    """M5: `PUT /api/v1/account/settings/ {"name": null}` was a 5xx."""
    resp = await owner.put("/api/v1/account/settings/", json={"name": None})
    assert resp.status_code == 400
    assert resp.json()["errors"] == {"name": ["This field may not be null."]}
    # A nullable field may be cleared.
    resp = await owner.put("/api/v1/account/settings/", json={"billing_address": None})
    assert resp.status_code == 200
    site = (
        await owner.post("/api/v1/auth/sites/", json={"name": "S", "url": "https://a.b"})
    ).json()
    resp = await owner.patch(f"/api/v1/auth/sites/{site['id']}/", json={"url": None})
    assert resp.status_code == 200
    assert resp.json()["url"] is None
    resp = await owner.patch(f"/api/v1/auth/sites/{site['id']}/", json={"is_active": None})
    assert resp.status_code == 400
    assert "is_active" in resp.json()["errors"]


async def test_numbers_beyond_bigint_are_400_or_404(
    client: httpx.AsyncClient, owner: Tenant
) -> None:
    """M5: any id above 2^63-1 in a path, a body, a filter or a page number was a 5xx."""
    resp = await client.get("/api/v1/auth/industries/?page=1133416100135823104")
    assert resp.status_code == 404
    for url in (f"/api/v1/auth/users/{HUGE}/", f"/api/v1/auth/sites/{HUGE}/",
                f"/api/v1/system/prompts/{HUGE}/"):
        resp = await owner.get(url)  # an id no row can have: none found, as DRF answers
        assert resp.status_code == 404, (url, resp.text)
    for url in (f"/api/v1/auth/sectors/?site_id={HUGE}",
                f"/api/v1/auth/site-access/?user_id={HUGE}"):
        resp = await owner.get(url)
        assert resp.status_code == 400, (url, resp.text)
    assert (await owner.get(f"/api/v1/auth/seed-keywords/?industry={HUGE}")).json()["count"] == 0
    resp = await owner.post("/api/v1/auth/sectors/", json={"site_id": HUGE, "name": "x"})
    assert resp.status_code == 400
    assert "site_id" in resp.json()["errors"]
    resp = await owner.post("/api/v1/auth/groups/", json={"name": "g", "user_ids": [1, HUGE]})
    assert resp.status_code == 400


async def test_concurrent_first_saves_of_a_prompt_type_all_succeed(
    owner: Tenant, db: Database
) -> None:
    """M5: five concurrent `prompts/save/` of a new type collided on the unique key (5xx)."""
    answers = await asyncio.gather(
        *(
            owner.post(
                "/api/v1/system/prompts/save/",
                json={"prompt_type": "negative_prompt", "prompt_value": f"version {n}"},
            )
            for n in range(5)
        )
    )
    assert [a.status_code for a in answers] == [200] * 5
    async with db.session(TenantScope.account(owner.account_id)) as session:
        rows = select(func.count()).select_from(Prompt)
        count = (
            await session.execute(rows.where(Prompt.prompt_type == "negative_prompt"))
        ).scalar_one()
    assert count == 1
    creates = await asyncio.gather(
        *(owner.post(PROMPTS, json={"prompt_type": "ideas", "prompt_value": "x"}) for _ in range(3))
    )
    assert sorted(c.status_code for c in creates) == [201, 400, 400]
