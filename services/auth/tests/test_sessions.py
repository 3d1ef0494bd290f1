"""Sign-in, tokens and sessions: register, login, refresh rotation and reuse, logout,
change of password, token rejection, signing key rotation, exchange, throttling."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid

import httpx
import orjson
from joserfc import jwt
from joserfc.jwk import OctKey, OKPKey
from sqlalchemy import select, update

from libs.common.db import Database, TenantScope
from libs.common.events import utcnow
from services.auth import passwords, tokens
from services.auth.models import Account, User
from services.auth.repository import sessions as sessions_repo
from services.auth.service.sessions import rotate_signing_key
from services.auth.settings import AuthSettings

from .conftest import PASSWORD, Tenant, login_as, outbox_events, register, unique_email

ME = "/api/v1/auth/me/"


async def test_register_login_me_shapes(client: httpx.AsyncClient, db: Database) -> None:
    email = unique_email()
    resp = await client.post(
        "/api/v1/auth/register/",
        json={"email": email, "password": PASSWORD, "password_confirm": PASSWORD},
    )
    assert resp.status_code == 201
    assert resp.headers["x-igny8-envelope"] == "inline"
    body = resp.json()
    assert body["message"] == "Registration successful"
    user = body["data"]["user"]
    assert user["email"] == email
    assert user["role"] == "owner"
    assert user["account"]["plan"]["slug"] == "free"
    assert user["account"]["status"] == "active"
    assert "password" not in str(body)
    assert "hash" not in str(body)

    tenant = await login_as(client, email)
    login = tenant.login
    assert set(login) >= {"user", "access", "refresh", "access_expires_at", "refresh_expires_at"}
    assert login["user"]["account"]["id"] == user["account"]["id"]

    me = (await tenant.get(ME)).json()["user"]
    assert me["id"] == user["id"]
    assert me["role"] == "owner"
    assert me["account"]["slug"]
    assert me["accessible_sites"] == []

    # Registration opened a month of the free plan, with its events in the outbox once.
    account_id = user["account"]["id"]
    subs = await outbox_events(db, "auth.subscription.created", account_id=account_id)
    assert len(subs) == 1
    assert subs[0]["data"]["plan_slug"] == "free"
    assert subs[0]["data"]["included_credits"] == 2000
    assert len(await outbox_events(db, "auth.account.created", account_id=account_id)) == 1
    assert len(await outbox_events(db, "auth.user.created", user_id=user["id"])) == 1


async def test_register_bad_input_is_400_per_field_and_writes_nothing(
    client: httpx.AsyncClient, db: Database
) -> None:
    email = unique_email()
    resp = await client.post(
        "/api/v1/auth/register/",
        json={"email": "not-an-email", "password": "short", "password_confirm": "short"},
    )
    assert resp.status_code == 400
    errors = resp.json()["errors"]
    assert "email" in errors
    assert "password" in errors
    resp = await client.post(
        "/api/v1/auth/register/",
        json={"email": email, "password": PASSWORD, "password_confirm": PASSWORD + "x"},
    )
    assert resp.status_code == 400
    assert "password_confirm" in resp.json()["errors"]
    async with db.session(TenantScope.system()) as session:
        assert await sessions_repo.user_by_email_any_tenant(session, email) is None
    await register(client, email)
    resp = await client.post(
        "/api/v1/auth/register/",
        json={"email": email.upper(), "password": PASSWORD, "password_confirm": PASSWORD},
    )
    assert resp.status_code == 400
    assert "email" in resp.json()["errors"]


async def test_login_wrong_password_and_unknown_email_look_alike(
    client: httpx.AsyncClient, owner: Tenant
) -> None:
    headers = {"X-Forwarded-For": "198.51.100.7"}
    wrong = await client.post(
        "/api/v1/auth/login/",
        headers=headers,
        json={"email": owner.email, "password": "wrong-password"},
    )
    unknown = await client.post(
        "/api/v1/auth/login/",
        headers=headers,
        json={"email": unique_email(), "password": "wrong-password"},
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


async def test_refresh_rotates_and_reuse_revokes_the_family(
    client: httpx.AsyncClient, owner: Tenant
) -> None:
    first = owner.login["refresh"]
    resp = await client.post("/api/v1/auth/refresh/", json={"refresh": first})
    assert resp.status_code == 200
    rotated = resp.json()
    assert set(rotated) == {"access", "refresh", "access_expires_at", "refresh_expires_at"}
    assert rotated["refresh"] != first
    new_headers = {"Authorization": f"Bearer {rotated['access']}"}
    assert (await client.get(ME, headers=new_headers)).status_code == 200

    # The spent token comes back: someone copied it. The whole family dies.
    reuse = await client.post("/api/v1/auth/refresh/", json={"refresh": first})
    assert reuse.status_code == 401
    sid = reuse.headers["x-igny8-revoked-sessions"]
    assert sid
    assert (
        await client.post("/api/v1/auth/refresh/", json={"refresh": rotated["refresh"]})
    ).status_code == 401
    assert (await client.get(ME, headers=new_headers)).status_code == 401
    assert (await client.get(ME, headers=owner.headers)).status_code == 401


async def test_refresh_writes_its_times_as_login_does(
    client: httpx.AsyncClient, owner: Tenant
) -> None:
    """Refresh answered `...+00:00` where login (and every resource) writes UTC as `Z`."""
    resp = await client.post("/api/v1/auth/refresh/", json={"refresh": owner.login["refresh"]})
    rotated = resp.json()
    for name in ("access_expires_at", "refresh_expires_at"):
        assert owner.login[name].endswith("Z")
        assert rotated[name].endswith("Z"), rotated[name]


async def test_refresh_garbage_is_401(client: httpx.AsyncClient) -> None:
    resp = await client.post("/api/v1/auth/refresh/", json={"refresh": "nope"})
    assert resp.status_code == 401


async def test_logout_revokes_the_session_everywhere(
    client: httpx.AsyncClient, owner: Tenant, settings: AuthSettings
) -> None:
    from libs.common import nats as nats_kernel

    resp = await owner.post("/api/v1/auth/logout/")
    assert resp.status_code == 200
    sid = resp.headers["x-igny8-revoked-sessions"]
    assert (await owner.get(ME)).status_code == 401
    assert (
        await client.post("/api/v1/auth/refresh/", json={"refresh": owner.login["refresh"]})
    ).status_code == 401
    nc = await nats_kernel.connect_as(settings, "auth", "auth-test-sessions")
    try:
        kv = await nc.jetstream().key_value("igny8_revocations")
        assert (await kv.get(f"sid.{sid}")).value == b"1"
    finally:
        await nc.close()


async def test_change_password_revokes_other_sessions(
    client: httpx.AsyncClient, owner: Tenant
) -> None:
    second = await login_as(client, owner.email)
    resp = await owner.post(
        "/api/v1/auth/change-password/",
        json={
            "old_password": "wrong-one",
            "new_password": "new-password-1",
            "new_password_confirm": "new-password-1",
        },
    )
    assert resp.status_code == 400
    assert "old_password" in resp.json()["errors"]
    resp = await owner.post(
        "/api/v1/auth/change-password/",
        json={
            "old_password": PASSWORD,
            "new_password": "new-password-1",
            "new_password_confirm": "new-password-1",
        },
    )
    assert resp.status_code == 200
    assert second.login["user"]["id"] == owner.user_id
    assert (await second.get(ME)).status_code == 401
    assert (await owner.get(ME)).status_code == 200
    await login_as(client, owner.email, "new-password-1")
    bad = await client.post(
        "/api/v1/auth/login/",
        json={"email": owner.email, "password": PASSWORD},
        headers={"X-Forwarded-For": "203.0.113.99"},
    )
    assert bad.status_code == 401


async def _key(db: Database, settings: AuthSettings) -> tuple[str, OKPKey]:
    async with db.session() as session:
        row = await sessions_repo.current_signing_key(session, utcnow())
        assert row is not None
        return row.kid, tokens.KeyRing(settings.secret_key).open(row.kid, row.private_jwk_encrypted)


def _part(token: str, index: int) -> dict:  # type: ignore[type-arg]
    segment = token.split(".")[index]
    return orjson.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_bad_tokens_are_401(
    client: httpx.AsyncClient, owner: Tenant, db: Database, settings: AuthSettings
) -> None:
    kid, key = await _key(db, settings)
    now = int(time.time())
    claims = {
        "sub": str(owner.user_id),
        "user_id": owner.user_id,
        "account_id": owner.account_id,
        "role": "owner",
        "type": "access",
        "iat": now,
        "exp": now + 600,
        "iss": "igny8-auth",
        "aud": "igny8-api",
        "jti": uuid.uuid4().hex,
        "sid": uuid.uuid4().hex,
    }
    none_token = ".".join(
        [_b64(b'{"alg":"none","typ":"JWT"}'), _b64(str(claims).replace("'", '"').encode()), ""]
    )
    hs = jwt.encode({"alg": "HS256", "kid": kid}, claims, OctKey.import_key(b"x" * 32))
    expired = tokens.sign_access_token(
        key,
        kid,
        user_id=owner.user_id,
        account_id=owner.account_id,
        role="owner",
        session_id=uuid.uuid4().hex,
        issuer="igny8-auth",
        audience="igny8-api",
        ttl_seconds=60,
        now=now - 3600,
    ).token
    wrong_aud = tokens.sign_access_token(
        key,
        kid,
        user_id=owner.user_id,
        account_id=owner.account_id,
        role="owner",
        session_id=uuid.uuid4().hex,
        issuer="igny8-auth",
        audience="someone-else",
        ttl_seconds=600,
    ).token
    foreign_key = OKPKey.generate_key("Ed25519", parameters={"kid": kid}, private=True)
    forged = tokens.sign_access_token(
        foreign_key,
        kid,
        user_id=owner.user_id,
        account_id=owner.account_id,
        role="owner",
        session_id=uuid.uuid4().hex,
        issuer="igny8-auth",
        audience="igny8-api",
        ttl_seconds=600,
    ).token
    # Validly signed, but for a session auth never opened.
    unknown_session = tokens.sign_access_token(
        key,
        kid,
        user_id=owner.user_id,
        account_id=owner.account_id,
        role="owner",
        session_id=uuid.uuid4().hex,
        issuer="igny8-auth",
        audience="igny8-api",
        ttl_seconds=600,
    ).token
    for token in ("garbage", none_token, hs, expired, wrong_aud, forged, unknown_session):
        resp = await client.get(ME, headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 401, token
    assert (await client.get(ME)).status_code == 401


async def test_signing_key_rotation_keeps_old_tokens_valid(
    client: httpx.AsyncClient, owner: Tenant, db: Database, settings: AuthSettings
) -> None:
    old_kid, _ = await _key(db, settings)
    new_kid = await rotate_signing_key(db, settings=settings)
    assert new_kid != old_kid
    keys = (await client.get("/api/v1/auth/jwks/")).json()["keys"]
    assert {k["kid"] for k in keys} >= {old_kid, new_kid}
    assert all("d" not in k for k in keys)
    assert (await owner.get(ME)).status_code == 200
    # Published first, signing only once every verifier can have fetched it.
    early = await login_as(client, owner.email)
    assert _part(early.login["access"], 0)["kid"] == old_kid
    await asyncio.sleep(settings.key_activation_delay_seconds + 0.1)
    fresh = await login_as(client, owner.email)
    header = _part(fresh.login["access"], 0)
    assert header["kid"] == new_kid
    assert header["alg"] == "Ed25519"
    assert (await fresh.get(ME)).status_code == 200
    assert (await early.get(ME)).status_code == 200


async def test_suspended_account_is_refused(
    client: httpx.AsyncClient, owner: Tenant, db: Database
) -> None:
    async with db.session(TenantScope.system()) as session:
        await session.execute(
            update(Account).where(Account.id == owner.account_id).values(status="suspended")
        )
        await session.commit()
    resp = await owner.get(ME)
    assert resp.status_code == 403
    assert "suspended" in resp.json()["detail"]
    resp = await client.post(
        "/api/v1/auth/login/", json={"email": owner.email, "password": PASSWORD}
    )
    assert resp.status_code == 403
    assert "suspended" in resp.json()["detail"]
    resp = await client.post("/api/v1/auth/refresh/", json={"refresh": owner.login["refresh"]})
    assert resp.status_code == 403


async def test_staff_suspension_revokes_sessions(
    client: httpx.AsyncClient, owner: Tenant, db: Database
) -> None:
    staff = await register(client)
    async with db.session(TenantScope.system()) as session:
        await session.execute(update(User).where(User.id == staff.user_id).values(role="developer"))
        await session.commit()
    staff = await login_as(client, staff.email)
    plans = (await client.get("/api/v1/auth/plans/")).json()["results"]
    growth = next(p for p in plans if p["slug"] == "growth")
    resp = await staff.patch(
        f"/api/v1/auth/accounts/{owner.account_id}/", json={"plan_id": growth["id"]}
    )
    assert resp.status_code == 200
    assert resp.json()["plan"]["slug"] == "growth"
    changed = await outbox_events(db, "auth.subscription.updated", account_id=owner.account_id)
    assert changed[-1]["data"]["plan_slug"] == "growth"
    resp = await staff.patch(
        f"/api/v1/auth/accounts/{owner.account_id}/", json={"status": "suspended"}
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-igny8-revoked-sessions"]
    assert (await owner.get(ME)).status_code == 401
    events = await outbox_events(db, "auth.account.updated", account_id=owner.account_id)
    assert events[-1]["data"]["status"] == "suspended"
    # An owner may not change their account's status (repeating the current one, as a
    # GET put back does, changes nothing and is allowed).
    other = await register(client)
    url = f"/api/v1/auth/accounts/{other.account_id}/"
    assert (await other.patch(url, json={"status": "trial"})).status_code == 403
    assert (await other.patch(url, json={"status": "active"})).status_code == 200


async def test_login_throttled_per_account_then_per_address(
    client: httpx.AsyncClient, settings: AuthSettings
) -> None:
    victim = await register(client)
    for i in range(settings.login_max_failures_per_account):
        resp = await client.post(
            "/api/v1/auth/login/",
            json={"email": victim.email, "password": "bad-password"},
            headers={"X-Forwarded-For": f"192.0.2.{i + 1}"},
        )
        assert resp.status_code == 401
    # Locked for this account even from a fresh address, even with the right password.
    resp = await client.post(
        "/api/v1/auth/login/",
        json={"email": victim.email, "password": PASSWORD},
        headers={"X-Forwarded-For": "192.0.2.200"},
    )
    assert resp.status_code == 429
    assert int(resp.headers["retry-after"]) > 0

    # One address spraying many accounts.
    address = {"X-Forwarded-For": "198.51.100.250, 10.0.0.1"}
    for _ in range(settings.login_max_failures_per_address):
        resp = await client.post(
            "/api/v1/auth/login/",
            headers=address,
            json={"email": unique_email(), "password": "bad-password"},
        )
        assert resp.status_code == 401
    other = await register(client)
    resp = await client.post(
        "/api/v1/auth/login/", headers=address, json={"email": other.email, "password": PASSWORD}
    )
    assert resp.status_code == 429


async def test_old_password_hashes_are_upgraded_on_login(
    client: httpx.AsyncClient, owner: Tenant, db: Database
) -> None:
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    async with db.session(TenantScope.system()) as session:
        await session.execute(
            update(User).where(User.id == owner.user_id).values(password_hash=weak)
        )
        await session.commit()
    await login_as(client, owner.email)
    async with db.session(TenantScope.system()) as session:
        stored = (
            await session.execute(select(User.password_hash).where(User.id == owner.user_id))
        ).scalar_one()
    assert stored != weak
    assert not passwords.needs_rehash(stored)


async def test_exchange_basic_and_api_key(client: httpx.AsyncClient, owner: Tenant) -> None:
    basic = base64.b64encode(f"{owner.email}:{PASSWORD}".encode()).decode()
    resp = await client.post("/internal/v1/auth/exchange", json={"authorization": f"Basic {basic}"})
    assert resp.status_code == 200
    body = resp.json()
    assert body["expires_at"] - time.time() <= 300
    assert (
        await client.get(ME, headers={"Authorization": f"Bearer {body['access']}"})
    ).status_code == 200
    bad = base64.b64encode(f"{owner.email}:nope".encode()).decode()
    assert (
        await client.post("/internal/v1/auth/exchange", json={"authorization": f"Basic {bad}"})
    ).status_code == 401

    site = (await owner.post("/api/v1/auth/sites/", json={"name": "WP"})).json()
    resp = await owner.post(f"/api/v1/auth/sites/{site['id']}/generate_api_key/")
    assert resp.status_code == 200
    key = resp.json()["api_key"]
    assert (await owner.get(f"/api/v1/auth/sites/{site['id']}/")).json()["has_api_key"]
    assert key not in (await owner.get(f"/api/v1/auth/sites/{site['id']}/")).text
    resp = await client.post("/internal/v1/auth/exchange", json={"authorization": f"ApiKey {key}"})
    assert resp.status_code == 200
    bot_token = resp.json()["access"]
    claims = _part(bot_token, 1)
    assert claims["role"] == "system_bot"
    assert claims["site_id"] == site["id"]
    assert claims["account_id"] == owner.account_id
    bot = {"Authorization": f"Bearer {bot_token}"}
    assert (await client.get(f"/api/v1/auth/sites/{site['id']}/", headers=bot)).status_code == 200
    assert (await client.get("/api/v1/auth/users/", headers=bot)).status_code == 403

    # Rotation: the old key and the tokens minted from it stop working.
    resp = await owner.post(f"/api/v1/auth/sites/{site['id']}/generate_api_key/")
    assert resp.headers["x-igny8-revoked-sessions"] == claims["sid"]
    assert (
        await client.post("/internal/v1/auth/exchange", json={"authorization": f"ApiKey {key}"})
    ).status_code == 401
    assert (await client.get(f"/api/v1/auth/sites/{site['id']}/", headers=bot)).status_code == 401
    new_key = resp.json()["api_key"]
    assert (
        await client.post("/internal/v1/auth/exchange", json={"authorization": f"ApiKey {new_key}"})
    ).status_code == 200
    assert (
        await client.post("/internal/v1/auth/exchange", json={"authorization": "Bearer x"})
    ).status_code == 401


EXCHANGE = "/internal/v1/auth/exchange"


def _basic(email: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode()


def _documentation_address() -> str:
    """A fresh client address per test run (2001:db8::/32 is for documentation)."""
    return f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"


async def test_a_lockout_is_a_429_whose_headers_describe_it(
    client: httpx.AsyncClient, settings: AuthSettings
) -> None:
    """D6: the lockout said `X-Throttle-Remaining: 13` and a reset in 20 s (the gateway's
    request quota) beside `Retry-After: 900`. Auth's 429 now describes the lockout itself,
    on login and on the gateway's Basic exchange alike."""
    victim = await register(client)
    for _ in range(settings.login_max_failures_per_account):
        bad = await client.post(
            "/api/v1/auth/login/",
            json={"email": victim.email, "password": "bad-password"},
            headers={"X-Forwarded-For": _documentation_address()},
        )
        assert bad.status_code == 401
    window = settings.login_window_seconds
    for resp in (
        await client.post(
            "/api/v1/auth/login/",
            json={"email": victim.email, "password": PASSWORD},
            headers={"X-Forwarded-For": _documentation_address()},
        ),
        await client.post(
            EXCHANGE,
            json={
                "authorization": _basic(victim.email, PASSWORD),
                "client_address": _documentation_address(),
            },
        ),
    ):
        assert resp.status_code == 429, resp.text
        headers = resp.headers
        retry = int(headers["retry-after"])
        assert window - 30 <= retry <= window
        assert headers["x-throttle-limit"] == str(settings.login_max_failures_per_account)
        assert headers["x-throttle-remaining"] == "0"
        assert abs(int(headers["x-throttle-reset"]) - (time.time() + retry)) <= 5
        assert headers["ratelimit"] == f'"auth_failures";r=0;t={retry}'
        assert headers["ratelimit-policy"] == (
            f'"auth_failures";q={settings.login_max_failures_per_account};w={window}'
        )


async def test_the_exchange_counts_failures_against_the_gateways_client(
    client: httpx.AsyncClient, settings: AuthSettings
) -> None:
    """M3 (auth's part): the gateway's exchange counted failed Basic credentials against
    the gateway's own address, so 20 failures from anyone locked Basic sign-in for every
    client. The exchange takes the client's address in its body (and ignores
    `X-Forwarded-For`, which anyone could send)."""
    spraying, innocent = _documentation_address(), _documentation_address()
    for _ in range(settings.login_max_failures_per_address):
        resp = await client.post(
            EXCHANGE,
            json={"authorization": _basic(unique_email(), "nope"), "client_address": spraying},
        )
        assert resp.status_code == 401
    user = await register(client)
    locked = await client.post(
        EXCHANGE,
        json={"authorization": _basic(user.email, PASSWORD), "client_address": spraying},
        headers={"X-Forwarded-For": innocent},
    )
    assert locked.status_code == 429
    assert locked.headers["x-throttle-limit"] == str(settings.login_max_failures_per_address)
    fine = await client.post(
        EXCHANGE,
        json={"authorization": _basic(user.email, PASSWORD), "client_address": innocent},
        headers={"X-Forwarded-For": spraying},
    )
    assert fine.status_code == 200, fine.text
    bad = await client.post(
        EXCHANGE, json={"authorization": _basic(user.email, PASSWORD), "client_address": "x"}
    )
    assert bad.status_code == 400
    assert "client_address" in bad.json()["errors"]
