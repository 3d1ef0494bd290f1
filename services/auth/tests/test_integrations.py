"""The account's provider integrations: keys encrypted and masked, the `test` and
`generate` actions through the kernel's OpenAI-compatible client, and what keeps a saved
key where it was saved (issue 13 M2, D2). Every provider here is a fake listening on
127.0.0.1."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from sqlalchemy import select

from libs.common.db import Database, TenantScope
from services.auth.models import IntegrationSetting
from services.auth.service.ai_config import KEY_STAYS_WITH_ITS_URL, PROVIDER_UNREACHABLE

from .conftest import Tenant

OPENAI = "/api/v1/system/settings/integrations/openai/"
KEY = "sk-test-1234567890"
PNG = b"\x89PNG\r\n\x1a\n"


@dataclass
class FakeProvider:
    """An OpenAI-compatible server on 127.0.0.1 that accepts one key and records every
    request it gets (method, path, Authorization)."""

    url: str = ""
    seen: list[tuple[str, str, str]] = field(default_factory=list)


async def _serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


def _provider_app(state: FakeProvider, *, key: str = KEY) -> web.Application:
    @web.middleware
    async def record(request: web.Request, handler):  # type: ignore[no-untyped-def]
        state.seen.append((request.method, request.path, request.headers.get("Authorization", "")))
        if request.headers.get("Authorization") != f"Bearer {key}":
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        return await handler(request)

    async def models(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": "gpt-fake-mini", "object": "model"},
                    {"id": "fake-image", "object": "model"},
                ],
            }
        )

    async def images(request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("response_format") != "b64_json":
            return web.json_response({"data": [{"url": "http://127.0.0.1/x.png"}]})
        image = PNG + f"{body['model']}/{body['size']}".encode()
        return web.json_response({"data": [{"b64_json": base64.b64encode(image).decode()}]})

    app = web.Application(middlewares=[record])
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/images/generations", images)
    return app


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeProvider]:
    state = FakeProvider()
    async for url in _serve(_provider_app(state)):
        state.url = url
        yield state


@pytest.fixture
async def elsewhere() -> AsyncIterator[FakeProvider]:
    """A second listener that must never see the saved key."""
    state = FakeProvider()
    async for url in _serve(_provider_app(state, key="sk-elsewhere-000000")):
        state.url = url
        yield state


async def test_integrations_encrypted_masked_and_tested(
    owner: Tenant, db: Database, fake_openai: FakeProvider
) -> None:
    empty = (await owner.get(OPENAI)).json()
    assert empty["has_api_key"] is False
    assert empty["config"]["base_url"].startswith("https://")
    resp = await owner.put(
        OPENAI, json={"api_key": KEY, "base_url": fake_openai.url, "model": "gpt-fake-mini"}
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["api_key"] == "********7890"
    assert "sk-test" not in resp.text
    assert body["config"]["model"] == "gpt-fake-mini"
    async with db.session(TenantScope.account(owner.account_id)) as session:
        stored = (await session.execute(select(IntegrationSetting.api_key_encrypted))).scalar_one()
    assert stored
    assert "sk-test" not in stored

    tested = await owner.post(f"{OPENAI}test/", json={"provider": "openai"})
    assert tested.status_code == 200, tested.text
    assert tested.json()["data"]["models"] == ["gpt-fake-mini", "fake-image"]
    wrong = await owner.post(f"{OPENAI}test/", json={"api_key": "sk-wrong-key"})
    assert wrong.status_code == 400
    assert "rejected" in wrong.json()["detail"]
    image = await owner.post(
        f"{OPENAI}generate/", json={"prompt": "a cat", "model": "fake-image", "size": "512x512"}
    )
    assert image.status_code == 200, image.text
    made = image.json()
    assert (made["model"], made["media_type"]) == ("fake-image", "image/png")
    assert base64.b64decode(made["b64_json"]) == PNG + b"fake-image/512x512"
    # Every call went to the saved URL through the kernel's client, with the saved key
    # (or the one sent to try).
    assert [(m, p) for m, p, _ in fake_openai.seen] == [
        ("GET", "/v1/models"),
        ("GET", "/v1/models"),
        ("POST", "/v1/images/generations"),
    ]
    assert [a for _, _, a in fake_openai.seen] == [
        f"Bearer {KEY}",
        "Bearer sk-wrong-key",
        f"Bearer {KEY}",
    ]

    saved = await owner.post(f"{OPENAI}save/", json={"is_active": False})
    assert saved.json()["data"]["has_api_key"]
    assert not saved.json()["data"]["is_active"]
    assert (await owner.get("/api/v1/system/settings/integrations/nope/")).status_code == 404
    img = (await owner.get("/api/v1/system/integrations/image_generation/")).json()
    assert img["provider"] == "local"
    assert img["max_in_article_images"] == 2
    viewer_resp = await owner.put(
        "/api/v1/system/settings/integrations/image_generation/",
        json={"config": {"provider": "openai"}},
    )
    assert viewer_resp.json()["config"]["provider"] == "openai"


async def test_integration_unreachable_provider_is_a_clear_400(owner: Tenant) -> None:
    await owner.put(OPENAI, json={"api_key": "sk-x", "base_url": "http://127.0.0.1:9/v1"})
    resp = await owner.post(f"{OPENAI}test/")
    assert resp.status_code == 400
    assert "reach" in resp.json()["detail"]


async def test_a_saved_key_goes_only_to_its_saved_url(
    owner: Tenant, db: Database, fake_openai: FakeProvider, elsewhere: FakeProvider
) -> None:
    """M2: `test` with another base_url used to send `Bearer <saved key>` there and echo
    the answer. Now another URL needs its own key, and saving a new URL needs the key again."""
    assert (await owner.put(OPENAI, json={"api_key": KEY, "base_url": fake_openai.url})).is_success

    resp = await owner.post(f"{OPENAI}test/", json={"base_url": elsewhere.url})
    assert resp.status_code == 400
    assert resp.json()["errors"] == {"api_key": [KEY_STAYS_WITH_ITS_URL]}
    moved = await owner.put(OPENAI, json={"base_url": elsewhere.url})
    assert moved.status_code == 400
    assert moved.json()["errors"] == {"api_key": [KEY_STAYS_WITH_ITS_URL]}
    moved = await owner.put(OPENAI, json={"config": {"base_url": elsewhere.url}})
    assert moved.status_code == 400
    assert elsewhere.seen == []
    assert (await owner.get(OPENAI)).json()["config"]["base_url"] == fake_openai.url

    # With its own key another URL can be tried, and saved.
    other_key = "sk-elsewhere-000000"
    try_it = {"base_url": elsewhere.url, "api_key": other_key}
    resp = await owner.post(f"{OPENAI}test/", json=try_it)
    assert resp.status_code == 200, resp.text
    assert elsewhere.seen == [("GET", "/v1/models", f"Bearer {other_key}")]
    saved = await owner.put(OPENAI, json={"base_url": elsewhere.url, "api_key": other_key})
    assert saved.status_code == 200
    assert saved.json()["api_key"] == "********0000"
    assert all(KEY not in auth for _, _, auth in elsewhere.seen)


async def test_provider_failures_read_alike(owner: Tenant, fake_openai: FakeProvider) -> None:
    """M2: error texts told a closed port from an open one (connection refused vs HTTP
    404 vs non-JSON): a caller could map ports. Every failure but a refused key reads the
    same, without addresses, ports or exception names."""
    own_key = {"api_key": "sk-test-1234567890"}
    answers = []
    for url in (
        "http://127.0.0.1:9/v1",  # nothing listens
        fake_openai.url.replace("/v1", "/nope"),  # 404
        fake_openai.url.replace("/v1", ""),  # the server, but no /models at its root
    ):
        resp = await owner.post(f"{OPENAI}test/", json={"base_url": url, **own_key})
        assert resp.status_code == 400
        answers.append(resp.json())
    assert all(a == answers[0] for a in answers)
    assert answers[0]["detail"] == PROVIDER_UNREACHABLE
    assert "127.0.0.1" not in str(answers)
    assert ":9" not in str(answers)


async def test_redirects_are_not_followed(owner: Tenant, elsewhere: FakeProvider) -> None:
    """A provider answering 307 to another host does not get the key forwarded there."""

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"{elsewhere.url}/models")

    app = web.Application()
    app.router.add_get("/v1/models", redirect)
    async for url in _serve(app):
        resp = await owner.post(f"{OPENAI}test/", json={"base_url": url, "api_key": KEY})
        assert resp.status_code == 400
        assert resp.json()["detail"] == PROVIDER_UNREACHABLE
    assert elsewhere.seen == []


async def test_saving_without_is_active_keeps_the_stored_value(
    owner: Tenant, fake_openai: FakeProvider
) -> None:
    """D2: a save without `is_active` switched the integration on (and planner jobs
    moved to it)."""
    off = await owner.put(
        OPENAI, json={"api_key": KEY, "base_url": fake_openai.url, "is_active": False}
    )
    assert off.json()["is_active"] is False
    renamed = await owner.put(OPENAI, json={"model": "gpt-other"})
    assert renamed.status_code == 200
    assert renamed.json()["is_active"] is False
    assert renamed.json()["config"]["model"] == "gpt-other"
    saved = await owner.post(f"{OPENAI}save/", json={"config": {"image_model": "img-2"}})
    assert saved.json()["data"]["is_active"] is False
    on = await owner.put(OPENAI, json={"is_active": True})
    assert on.json()["is_active"] is True
    assert (await owner.put(OPENAI, json={"model": "gpt-third"})).json()["is_active"] is True
