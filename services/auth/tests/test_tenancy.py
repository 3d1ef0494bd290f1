"""Tenancy and permissions: roles, plan limits, another tenant's ids, site access,
sectors, users, groups, and bad input writing nothing."""

from __future__ import annotations

import base64

import httpx
import orjson
from sqlalchemy import func, select, update

from libs.common import nats as nats_kernel
from libs.common.db import Database, TenantScope
from services.auth.models import Site, User
from services.auth.settings import AuthSettings

from .conftest import (
    PASSWORD,
    Tenant,
    add_member,
    login_as,
    outbox_events,
    set_plan,
    unique_email,
)

SITES = "/api/v1/auth/sites/"
SECTORS = "/api/v1/auth/sectors/"
USERS = "/api/v1/auth/users/"


async def _site(tenant: Tenant, name: str = "Blog") -> dict:  # type: ignore[type-arg]
    resp = await tenant.post(SITES, json={"name": name, "url": "https://example.com"})
    assert resp.status_code == 201, resp.text
    return resp.json()


async def test_site_crud_sectors_and_events(owner: Tenant, db: Database) -> None:
    site = await _site(owner)
    assert site["slug"] == "blog"
    assert site["account_id"] == owner.account_id
    assert (await _site(owner))["slug"] == "blog-2"
    resp = await owner.post(
        f"{SITES}{site['id']}/select_sectors/",
        json={"industry_slug": "technology", "sector_slugs": ["software", "hardware"]},
    )
    assert resp.status_code == 200, resp.text
    assert {x["slug"] for x in resp.json()["data"]["sectors"]} == {"software", "hardware"}
    assert resp.json()["data"]["site"]["industry_slug"] == "technology"
    resp = await owner.post(
        f"{SITES}{site['id']}/select_sectors/",
        json={"industry_slug": "technology", "sector_slugs": ["software", "cybersecurity"]},
    )
    assert resp.status_code == 200
    page = (await owner.get(f"{SITES}{site['id']}/sectors/")).json()
    active = {x["slug"] for x in page["results"] if x["is_active"]}
    assert active == {"software", "cybersecurity"}
    assert page["count"] == 3
    resp = await owner.patch(f"{SITES}{site['id']}/", json={"name": "Renamed", "is_active": False})
    assert resp.json()["name"] == "Renamed"
    assert not resp.json()["is_active"]
    assert (await owner.post(f"{SITES}{site['id']}/set_active/")).json()["data"]["is_active"]
    me = (await owner.get("/api/v1/auth/me/")).json()["user"]
    assert site["id"] in {x["id"] for x in me["accessible_sites"]}

    created = await outbox_events(db, "auth.site.created", id=site["id"])
    assert len(created) == 1
    assert created[0]["account_id"] == owner.account_id
    assert set(created[0]["data"]) == {
        "id",
        "account_id",
        "name",
        "slug",
        "url",
        "industry_id",
        "industry_slug",
        "is_active",
    }
    sectors = await outbox_events(db, "auth.sector.created", site_id=site["id"])
    assert len(sectors) == 3
    assert set(sectors[0]["data"]) == {
        "id",
        "account_id",
        "site_id",
        "name",
        "slug",
        "industry_sector_id",
        "is_active",
    }
    assert (await owner.delete(f"{SITES}{site['id']}/")).status_code == 204
    assert (await owner.get(f"{SITES}{site['id']}/")).status_code == 404
    assert len(await outbox_events(db, "auth.site.deleted", id=site["id"])) == 1
    assert len(await outbox_events(db, "auth.sector.deleted", site_id=site["id"])) == 3


async def test_another_tenants_ids_are_404(owner: Tenant, other: Tenant) -> None:
    site = await _site(owner)
    sector = (await owner.post(SECTORS, json={"site_id": site["id"], "name": "News"})).json()
    member = await add_member(owner, "editor")
    access = (
        await owner.post(
            "/api/v1/auth/site-access/", json={"user_id": member.user_id, "site_id": site["id"]}
        )
    ).json()
    group = (await owner.post("/api/v1/auth/groups/", json={"name": "Writers"})).json()
    calls = [
        ("GET", f"{SITES}{site['id']}/", None),
        ("PATCH", f"{SITES}{site['id']}/", {"name": "x"}),
        ("PUT", f"{SITES}{site['id']}/", {"name": "x"}),
        ("DELETE", f"{SITES}{site['id']}/", None),
        ("GET", f"{SITES}{site['id']}/sectors/", None),
        ("POST", f"{SITES}{site['id']}/set_active/", None),
        (
            "POST",
            f"{SITES}{site['id']}/select_sectors/",
            {"industry_slug": "technology", "sector_slugs": ["software"]},
        ),
        ("POST", f"{SITES}{site['id']}/generate_api_key/", None),
        ("GET", f"{SECTORS}?site_id={site['id']}", None),
        ("POST", SECTORS, {"site_id": site["id"], "name": "Mine now"}),
        ("GET", f"{SECTORS}{sector['id']}/", None),
        ("PATCH", f"{SECTORS}{sector['id']}/", {"name": "x"}),
        ("DELETE", f"{SECTORS}{sector['id']}/", None),
        ("GET", f"{USERS}{member.user_id}/", None),
        ("PATCH", f"{USERS}{member.user_id}/", {"first_name": "x"}),
        ("DELETE", f"{USERS}{member.user_id}/", None),
        ("POST", f"{USERS}{member.user_id}/activate/", None),
        ("DELETE", f"/api/v1/account/team/{member.user_id}/", None),
        ("GET", f"/api/v1/auth/site-access/{access['id']}/", None),
        ("DELETE", f"/api/v1/auth/site-access/{access['id']}/", None),
        ("POST", "/api/v1/auth/site-access/", {"user_id": member.user_id, "site_id": site["id"]}),
        ("GET", f"/api/v1/auth/groups/{group['id']}/", None),
        ("DELETE", f"/api/v1/auth/groups/{group['id']}/", None),
        ("GET", f"/api/v1/auth/accounts/{owner.account_id}/", None),
    ]
    for method, url, body in calls:
        resp = await other.client.request(method, url, headers=other.headers, json=body)
        assert resp.status_code == 404, (method, url, resp.status_code, resp.text)
    # Lists show only one's own rows.
    assert (await other.get(SITES)).json()["count"] == 0
    assert member.user_id not in {u["id"] for u in (await other.get(USERS)).json()["results"]}
    # Nothing of the owner's changed.
    assert (await owner.get(f"{SITES}{site['id']}/")).json()["name"] == "Blog"
    assert (await owner.get(f"{SECTORS}{sector['id']}/")).status_code == 200


async def test_roles(owner: Tenant, db: Database) -> None:
    await set_plan(db, owner, "growth")
    editor = await add_member(owner, "editor")
    viewer = await add_member(owner, "viewer")
    site = await _site(owner)
    # Viewers and editors see only granted sites; a site they cannot see is a 404.
    assert (await viewer.get(f"{SITES}{site['id']}/")).status_code == 404
    await owner.post(
        "/api/v1/auth/site-access/", json={"user_id": viewer.user_id, "site_id": site["id"]}
    )
    assert (await viewer.get(f"{SITES}{site['id']}/")).status_code == 200
    assert (await viewer.get(SITES)).json()["count"] == 1
    assert (await viewer.patch(f"{SITES}{site['id']}/", json={"name": "x"})).status_code == 403
    assert (await viewer.post(SITES, json={"name": "mine"})).status_code == 403
    assert (await viewer.get(USERS)).status_code == 403
    assert (await editor.get(USERS)).status_code == 403
    assert (
        await editor.post(USERS, json={"email": unique_email(), "password": PASSWORD})
    ).status_code == 403
    # An editor's own site is theirs to work on; API keys are for admins and owners.
    mine = await _site(editor, "Editor site")
    assert (await editor.patch(f"{SITES}{mine['id']}/", json={"name": "E"})).status_code == 200
    assert (await editor.post(f"{SITES}{mine['id']}/generate_api_key/")).status_code == 403
    # Admins manage editors and viewers, not owners; nobody hands out owner or developer.
    admin = await add_member(owner, "admin")
    assert (
        await admin.patch(f"{USERS}{viewer.user_id}/", json={"role": "editor"})
    ).status_code == 200
    assert (
        await admin.patch(f"{USERS}{owner.user_id}/", json={"role": "viewer"})
    ).status_code == 403
    assert (
        await admin.post(
            USERS, json={"email": unique_email(), "password": PASSWORD, "role": "admin"}
        )
    ).status_code == 403
    resp = await owner.post(
        USERS, json={"email": unique_email(), "password": PASSWORD, "role": "owner"}
    )
    assert resp.status_code == 400
    assert "role" in resp.json()["errors"]
    # A demotion applies at once: it revokes the demoted user's sessions (M1), so the
    # old token, which other services would trust for its role, no longer works.
    await owner.patch(f"{USERS}{admin.user_id}/", json={"role": "viewer"})
    assert (await admin.get(USERS)).status_code == 401


async def test_me_lists_the_sites_each_caller_may_open(owner: Tenant, db: Database) -> None:
    await set_plan(db, owner, "growth")
    first = await _site(owner, "First")
    second = await _site(owner, "Second")
    viewer = await add_member(owner, "viewer")
    admin = await add_member(owner, "admin")

    async def me(tenant_headers: dict[str, str]) -> dict:  # type: ignore[type-arg]
        resp = await owner.client.get("/api/v1/auth/me/", headers=tenant_headers)
        assert resp.status_code == 200, resp.text
        return resp.json()["user"]  # type: ignore[no-any-return]

    brief = {"id", "name", "slug", "url", "is_active"}
    mine = await me(owner.headers)
    assert [x["id"] for x in mine["accessible_sites"]] == [first["id"], second["id"]]
    assert set(mine["accessible_sites"][0]) == brief
    assert mine["accessible_sites"][0]["url"] == "https://example.com"
    assert [x["id"] for x in (await me(admin.headers))["accessible_sites"]] == [
        first["id"],
        second["id"],
    ]
    assert (await me(viewer.headers))["accessible_sites"] == []
    await owner.post(
        "/api/v1/auth/site-access/", json={"user_id": viewer.user_id, "site_id": second["id"]}
    )
    seen = await me(viewer.headers)
    assert seen["role"] == "viewer"
    assert seen["account"]["plan"]["slug"] == "growth"
    assert [x["id"] for x in seen["accessible_sites"]] == [second["id"]]
    # A role change shows at once, with the sites the new role sees.
    await owner.patch(f"{USERS}{viewer.user_id}/", json={"role": "admin"})
    seen = await me(viewer.headers)
    assert seen["role"] == "admin"
    assert len(seen["accessible_sites"]) == 2
    # A site key's bot sees its one site, as `system_bot`.
    key = (await owner.post(f"{SITES}{first['id']}/generate_api_key/")).json()["api_key"]
    resp = await owner.client.post(
        "/internal/v1/auth/exchange", json={"authorization": f"ApiKey {key}"}
    )
    bot = await me({"Authorization": f"Bearer {resp.json()['access']}"})
    assert bot["role"] == "system_bot"
    assert [x["id"] for x in bot["accessible_sites"]] == [first["id"]]


async def test_plan_limits(owner: Tenant, db: Database) -> None:
    # Free plan: 3 users, 2 sites, 5 sectors per site.
    await add_member(owner, "viewer")
    await add_member(owner, "viewer")
    resp = await owner.post(USERS, json={"email": unique_email(), "password": PASSWORD})
    assert resp.status_code == 403
    assert "max_users" in resp.json()["detail"]
    await _site(owner, "one")
    site = await _site(owner, "two")
    resp = await owner.post(SITES, json={"name": "three"})
    assert resp.status_code == 403
    assert "max_sites" in resp.json()["detail"]
    async with db.session(TenantScope.account(owner.account_id)) as session:
        count = (await session.execute(select(func.count()).select_from(Site))).scalar_one()
    assert count == 2
    for i in range(5):
        assert (
            await owner.post(SECTORS, json={"site_id": site["id"], "name": f"s{i}"})
        ).status_code == 201
    resp = await owner.post(SECTORS, json={"site_id": site["id"], "name": "s6"})
    assert resp.status_code == 403
    assert "max_sectors_per_site" in resp.json()["detail"]
    inactive = await owner.post(
        SECTORS, json={"site_id": site["id"], "name": "off", "is_active": False}
    )
    assert inactive.status_code == 201
    assert (
        await owner.patch(f"{SECTORS}{inactive.json()['id']}/", json={"is_active": True})
    ).status_code == 403
    resp = await owner.post(
        f"{SITES}{site['id']}/select_sectors/",
        json={
            "industry_slug": "technology",
            "sector_slugs": ["software", "hardware", "cybersecurity", "a", "b", "c"],
        },
    )
    assert resp.status_code == 400
    assert "sector_slugs" in resp.json()["errors"]


async def test_bad_input_is_400_per_field_and_writes_nothing(owner: Tenant, db: Database) -> None:
    before = len(await outbox_events(db, "auth.site.created", account_id=owner.account_id))
    resp = await owner.post(SITES, json={"name": "", "url": "not a url", "bogus": 1})
    assert resp.status_code == 400
    assert set(resp.json()["errors"]) == {"name", "url"}  # an unknown name is ignored
    resp = await owner.post(SITES, json={"name": "ok", "industry_id": 999999})
    assert resp.status_code == 400
    assert "industry_id" in resp.json()["errors"]
    site = await _site(owner)
    resp = await owner.post(
        f"{SITES}{site['id']}/select_sectors/",
        json={"industry_slug": "technology", "sector_slugs": ["software", "nope"]},
    )
    assert resp.status_code == 400
    assert "sector_slugs" in resp.json()["errors"]
    assert (await owner.get(f"{SITES}{site['id']}/sectors/")).json()["count"] == 0
    assert (await owner.get(f"{SITES}{site['id']}/")).json()["industry_id"] is None
    resp = await owner.post(USERS, json={"email": "bad", "password": "x", "role": "boss"})
    assert {"email", "password", "role"} <= set(resp.json()["errors"])
    resp = await owner.get(f"{SITES}?page=0")
    assert resp.status_code == 404  # DRF's "Invalid page."
    after = len(await outbox_events(db, "auth.site.created", account_id=owner.account_id))
    assert after == before + 1  # only the one good site


async def test_user_lifecycle_invite_activate_deactivate(
    client: httpx.AsyncClient, owner: Tenant, db: Database
) -> None:
    email = unique_email("invitee")
    resp = await owner.post(f"{USERS}invite/", json={"email": email, "role": "editor"})
    assert resp.status_code == 201
    invited = resp.json()["data"]
    assert not invited["user"]["is_active"]
    temporary = invited["temporary_password"]
    denied = await client.post("/api/v1/auth/login/", json={"email": email, "password": temporary})
    assert denied.status_code == 403
    resp = await owner.post(f"{USERS}{invited['user']['id']}/activate/")
    assert resp.json()["data"]["is_active"]
    member = await login_as(client, email, temporary)
    resp = await owner.patch(f"{USERS}{member.user_id}/", json={"is_active": False})
    assert resp.headers["x-igny8-revoked-sessions"]
    assert (await member.get("/api/v1/auth/me/")).status_code == 401
    resp = await owner.delete(f"{USERS}{member.user_id}/")
    assert resp.status_code == 204
    assert len(await outbox_events(db, "auth.user.deleted", user_id=member.user_id)) == 1
    assert (await owner.delete(f"{USERS}{owner.user_id}/")).status_code == 400
    users = (await owner.get(USERS)).json()
    assert users["count"] == 1
    assert users["results"][0]["id"] == owner.user_id


async def test_site_access_and_groups(owner: Tenant, db: Database) -> None:
    viewer = await add_member(owner, "viewer")
    site = await _site(owner)
    resp = await owner.post(
        "/api/v1/auth/site-access/", json={"user_id": viewer.user_id, "site_id": site["id"]}
    )
    assert resp.status_code == 201
    access_id = resp.json()["id"]
    listed = (await owner.get(f"/api/v1/auth/site-access/?user_id={viewer.user_id}")).json()
    assert listed["count"] == 1
    granted = await outbox_events(db, "auth.site_access.granted", site_id=site["id"])
    assert granted[0]["data"] == {
        "account_id": owner.account_id,
        "user_id": viewer.user_id,
        "site_id": site["id"],
    }
    assert (await owner.delete(f"/api/v1/auth/site-access/{access_id}/")).status_code == 204
    assert len(await outbox_events(db, "auth.site_access.revoked", site_id=site["id"])) == 1
    assert (await viewer.get(f"{SITES}{site['id']}/")).status_code == 404

    resp = await owner.post(
        "/api/v1/auth/groups/", json={"name": "Writers", "user_ids": [viewer.user_id]}
    )
    assert resp.status_code == 201
    assert resp.json()["user_ids"] == [viewer.user_id]
    dup = await owner.post("/api/v1/auth/groups/", json={"name": "Writers"})
    assert dup.status_code == 400
    assert "name" in dup.json()["errors"]
    bad = await owner.patch(
        f"/api/v1/auth/groups/{resp.json()['id']}/", json={"user_ids": [999999]}
    )
    assert bad.status_code == 400
    assert "user_ids" in bad.json()["errors"]
    assert (await owner.get("/api/v1/auth/groups/")).json()["count"] == 1


async def test_account_settings_team_and_subscriptions(owner: Tenant) -> None:
    settings = (await owner.get("/api/v1/account/settings/")).json()
    assert settings["id"] == owner.account_id
    assert settings["plan"]["slug"] == "free"
    resp = await owner.patch(
        "/api/v1/account/settings/", json={"name": "Acme", "billing_country": "DE"}
    )
    assert resp.json()["name"] == "Acme"
    assert resp.json()["billing_country"] == "DE"
    resp = await owner.post(
        "/api/v1/account/team/", json={"email": unique_email(), "role": "editor"}
    )
    assert resp.status_code == 201
    assert resp.json()["data"]["temporary_password"]
    team = (await owner.get("/api/v1/account/team/")).json()
    assert team["count"] == 2
    member_id = next(u for u in team["results"] if u["id"] != owner.user_id)["id"]
    assert (await owner.delete(f"/api/v1/account/team/{member_id}/")).status_code == 204
    subs = (await owner.get("/api/v1/auth/subscriptions/")).json()
    assert subs["count"] == 1
    assert subs["results"][0]["plan_slug"] == "free"
    accounts = (await owner.get("/api/v1/auth/accounts/")).json()
    assert [a["id"] for a in accounts["results"]] == [owner.account_id]
    assert (
        await owner.post(
            "/api/v1/auth/accounts/",
            json={"name": "x", "owner_email": unique_email(), "owner_password": PASSWORD},
        )
    ).status_code == 403


async def test_pagination_shape(owner: Tenant) -> None:
    for i in range(2):
        await _site(owner, f"p{i}")
    resp = await owner.client.get(
        f"{SITES}?page_size=1&page=2",
        headers={
            **owner.headers,
            "X-Forwarded-Host": "api.igny8.com",
            "X-Forwarded-Proto": "https",
        },
    )
    body = resp.json()
    assert resp.headers["x-igny8-envelope"] == "inline"
    assert body["count"] == 2
    assert len(body["results"]) == 1
    assert body["next"] is None
    assert body["previous"] == "https://api.igny8.com/api/v1/auth/sites/?page_size=1"


async def test_a_demotion_revokes_the_users_sessions(
    client: httpx.AsyncClient, owner: Tenant, settings: AuthSettings
) -> None:
    """Planner and billing read the role from the token: a demoted admin's tokens must be
    revoked (KV bucket and header), or they keep admin rights until the token expires."""
    admin = await add_member(owner, "admin")
    second = await login_as(client, admin.email)
    resp = await owner.patch(f"{USERS}{admin.user_id}/", json={"role": "viewer"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["role"] == "viewer"
    revoked = set(resp.headers["x-igny8-revoked-sessions"].split(","))
    sids = {_claims(admin.login["access"])["sid"], _claims(second.login["access"])["sid"]}
    assert revoked == sids
    assert (await admin.get("/api/v1/auth/me/")).status_code == 401
    refresh = await client.post("/api/v1/auth/refresh/", json={"refresh": admin.login["refresh"]})
    assert refresh.status_code == 401
    nc = await nats_kernel.connect_as(settings, "auth", "auth-test-revocations")
    try:
        kv = await nc.jetstream().key_value("igny8_revocations")
        for sid in sids:
            assert (await kv.get(f"sid.{sid}")).value == b"1"
    finally:
        await nc.close()
    # Signing in again gives a token with the new role. An unchanged role or a promotion
    # revokes nothing (a token that under-states the role grants nothing extra).
    viewer = await login_as(client, admin.email)
    assert _claims(viewer.login["access"])["role"] == "viewer"
    for change in ({"role": "viewer", "first_name": "V"}, {"role": "editor"}):
        resp = await owner.patch(f"{USERS}{admin.user_id}/", json=change)
        assert resp.status_code == 200
        assert "x-igny8-revoked-sessions" not in resp.headers
    assert (await viewer.get("/api/v1/auth/me/")).json()["user"]["role"] == "editor"


def _claims(token: str) -> dict:  # type: ignore[type-arg]
    segment = token.split(".")[1]
    return orjson.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


async def test_an_owner_is_sent_to_registration_to_open_an_account(
    client: httpx.AsyncClient, owner: Tenant, db: Database
) -> None:
    """D8: the reference lists IsOwnerOrAdmin for `POST accounts/`; here a new account
    (and its new owner) is a registration, or platform staff's act (docs/contracts.md)."""
    body = {"name": "Second", "owner_email": unique_email(), "owner_password": PASSWORD}
    resp = await owner.post("/api/v1/auth/accounts/", json=body)
    assert resp.status_code == 403
    assert "POST /api/v1/auth/register/" in resp.json()["detail"]
    editor = await add_member(owner, "editor")
    assert (await editor.post("/api/v1/auth/accounts/", json=body)).status_code == 403
    # Platform staff open accounts for others.
    async with db.session(TenantScope.system()) as session:
        await session.execute(
            update(User).where(User.id == owner.user_id).values(role="developer")  # type: ignore[arg-type]
        )
        await session.commit()
    staff = await login_as(client, owner.email)
    made = await staff.post("/api/v1/auth/accounts/", json=body)
    assert made.status_code == 201, made.text
    assert made.json()["name"] == "Second"
