"""The account's provider integrations: keys encrypted and masked, the `test` and
`generate` actions through the kernel's provider clients (`libs/common/ai`) and outbound
guard (`libs/common/outbound.py`), and what keeps a saved key where it was saved (issue
13 M2, D2). Every provider here is one of the kernel's fakes listening on 127.0.0.1
(`libs/common/testing`), and every test runs under the loopback-only socket guard."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from sqlalchemy import select

from libs.common.db import Database, TenantScope
from libs.common.testing.apps import running_app
from libs.common.testing.fake_openai import FakeOpenAI
from libs.common.testing.fake_runware import FakeRunware
from services.auth.main import create_app
from services.auth.models import IntegrationSetting
from services.auth.service.ai_config import KEY_STAYS_WITH_ITS_URL, PROVIDER_UNREACHABLE
from services.auth.settings import AuthSettings

from .conftest import Tenant, login_as

pytestmark = pytest.mark.usefixtures("loopback_only")

OPENAI = "/api/v1/system/settings/integrations/openai/"
RUNWARE = "/api/v1/system/settings/integrations/runware/"
KEY = "sk-test-1234567890"
OTHER_KEY = "sk-elsewhere-000000"
PNG = b"\x89PNG\r\n\x1a\n"


def _keys(fake: FakeOpenAI | FakeRunware) -> list[str]:
    """The key each request to `fake` carried."""
    out = []
    for r in fake.requests:
        if isinstance(r.body, list):
            out.append(str(r.body[0].get("apiKey")))
        else:
            out.append(r.headers.get("Authorization", "").removeprefix("Bearer "))
    return out


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=KEY) as fake:
        fake.models = ["gpt-fake-mini", "dall-e-2"]
        yield fake


@pytest.fixture
async def elsewhere() -> AsyncIterator[FakeOpenAI]:
    """A second provider that must never see the saved key."""
    async with FakeOpenAI(api_key=OTHER_KEY) as fake:
        yield fake


async def test_integrations_encrypted_masked_and_tested(
    owner: Tenant, db: Database, fake_openai: FakeOpenAI
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
    assert tested.json()["data"]["models"] == ["gpt-fake-mini", "dall-e-2"]
    wrong = await owner.post(f"{OPENAI}test/", json={"api_key": "sk-wrong-key"})
    assert wrong.status_code == 400
    assert "rejected" in wrong.json()["detail"]
    image = await owner.post(
        f"{OPENAI}generate/", json={"prompt": "a cat", "model": "dall-e-2", "size": "512x512"}
    )
    assert image.status_code == 200, image.text
    made = image.json()
    assert (made["model"], made["media_type"]) == ("dall-e-2", "image/png")
    assert base64.b64decode(made["b64_json"]).startswith(PNG)
    # Every call went to the saved URL through the kernel's client, with the saved key
    # (or the one sent to try).
    assert [r.path for r in fake_openai.requests] == [
        "/v1/models",
        "/v1/models",
        "/v1/images/generations",
    ]
    assert _keys(fake_openai) == [KEY, "sk-wrong-key", KEY]

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


async def test_runware_is_tested_and_generates_through_its_own_client(owner: Tenant) -> None:
    """Runware is not OpenAI-compatible: `test` authenticates (no image made, none paid)
    and `generate` sends one image task, through the kernel's Runware client."""
    key = "rw-test-123456789"
    async with FakeRunware(api_key=key) as fake:
        saved = await owner.put(RUNWARE, json={"api_key": key, "base_url": fake.url})
        assert saved.status_code == 200, saved.text
        tested = await owner.post(f"{RUNWARE}test/")
        assert tested.status_code == 200, tested.text
        assert tested.json()["data"]["models"] == ["runware:100@1"]
        assert fake.tasks == []
        image = await owner.post(f"{RUNWARE}generate/", json={"prompt": "a lighthouse at dusk"})
        assert image.status_code == 200, image.text
        assert image.json()["media_type"] == "image/webp"
        assert len(fake.tasks) == 1
        wrong = await owner.post(f"{RUNWARE}test/", json={"api_key": "rw-wrong"})
        assert wrong.status_code == 400
        assert "rejected" in wrong.json()["detail"]


async def test_image_generation_tests_and_generates_with_its_image_provider(
    owner: Tenant, fake_openai: FakeOpenAI
) -> None:
    """The reference's `{pk}/test/` (`{"provider": "runware"}`) and `{pk}/generate/`
    ("test image generation") on `image_generation` were a 400 ("no endpoint of its
    own"): they go to the image provider the body names or the one it is set to use."""
    images = "/api/v1/system/settings/integrations/image_generation/"
    local = await owner.post(f"{images}generate/", json={"prompt": "a cat"})
    assert local.status_code == 400
    assert "provider" in local.json()["errors"]
    assert (await owner.put(OPENAI, json={"api_key": KEY, "base_url": fake_openai.url})).is_success
    named = await owner.post(f"{images}test/", json={"provider": "openai"})
    assert named.status_code == 200, named.text
    assert named.json()["data"]["provider"] == "openai"
    assert (await owner.put(images, json={"config": {"provider": "openai"}})).is_success
    image = await owner.post(f"{images}generate/", json={"prompt": "a cat"})
    assert image.status_code == 200, image.text
    assert (image.json()["provider"], image.json()["media_type"]) == ("openai", "image/png")
    assert [r.path for r in fake_openai.requests] == ["/v1/models", "/v1/images/generations"]
    unknown = await owner.post(f"{images}test/", json={"provider": "nope"})
    assert unknown.status_code == 400
    assert "provider" in unknown.json()["errors"]


async def test_integration_unreachable_provider_is_a_clear_400(owner: Tenant) -> None:
    await owner.put(OPENAI, json={"api_key": "sk-x", "base_url": "http://127.0.0.1:9/v1"})
    resp = await owner.post(f"{OPENAI}test/")
    assert resp.status_code == 400
    assert "reach" in resp.json()["detail"]


async def test_a_saved_key_goes_only_to_its_saved_url(
    owner: Tenant, fake_openai: FakeOpenAI, elsewhere: FakeOpenAI
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
    assert elsewhere.requests == []
    assert (await owner.get(OPENAI)).json()["config"]["base_url"] == fake_openai.url

    # With its own key another URL can be tried, and saved.
    try_it = {"base_url": elsewhere.url, "api_key": OTHER_KEY}
    resp = await owner.post(f"{OPENAI}test/", json=try_it)
    assert resp.status_code == 200, resp.text
    assert [r.path for r in elsewhere.requests] == ["/v1/models"]
    saved = await owner.put(OPENAI, json=try_it)
    assert saved.status_code == 200
    assert saved.json()["api_key"] == "********0000"
    assert _keys(elsewhere) == [OTHER_KEY]


async def test_provider_failures_read_alike(owner: Tenant, fake_openai: FakeOpenAI) -> None:
    """M2: error texts told a closed port from an open one (connection refused vs HTTP
    404 vs non-JSON): a caller could map ports. Every failure but a refused key reads the
    same, without addresses, ports or exception names."""
    own_key = {"api_key": KEY}
    fake_openai.fail_next(200, raw=b"<html>a login page</html>")
    answers = []
    for url in (
        "http://127.0.0.1:9/v1",  # nothing listens
        fake_openai.url.replace("/v1", "/nope"),  # 404
        fake_openai.url,  # 200, but HTML
    ):
        resp = await owner.post(f"{OPENAI}test/", json={"base_url": url, **own_key})
        assert resp.status_code == 400
        answers.append(resp.json())
    assert all(a == answers[0] for a in answers)
    assert answers[0]["detail"] == PROVIDER_UNREACHABLE
    assert "127.0.0.1" not in str(answers)
    assert ":9" not in str(answers)


async def test_redirects_are_not_followed(owner: Tenant, elsewhere: FakeOpenAI) -> None:
    """A provider answering 307 to another host does not get the key forwarded there."""

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"{elsewhere.url}/models")

    app = web.Application()
    app.router.add_get("/v1/models", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        resp = await owner.post(
            f"{OPENAI}test/",
            json={"base_url": f"http://127.0.0.1:{port}/v1", "api_key": OTHER_KEY},
        )
        assert resp.status_code == 400
        assert resp.json()["detail"] == PROVIDER_UNREACHABLE
    finally:
        await runner.cleanup()
    assert elsewhere.requests == []


async def test_saving_without_is_active_keeps_the_stored_value(
    owner: Tenant, fake_openai: FakeOpenAI
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


async def test_the_outbound_guard_refuses_internal_targets(
    owner: Tenant, settings: AuthSettings, fake_openai: FakeOpenAI
) -> None:
    """M2: with the production setting (no private targets) neither `test` nor a save can
    point a provider at loopback; metadata addresses are refused even in development."""
    production = settings.model_copy(update={"outbound_allow_private": False})
    async with running_app(create_app(production)) as strict:
        me = await login_as(strict, owner.email)
        tried = await me.post(f"{OPENAI}test/", json={"base_url": fake_openai.url, "api_key": KEY})
        assert tried.status_code == 400
        [refusal] = tried.json()["errors"]["base_url"]
        assert refusal.startswith("This URL is not allowed: the address is a loopback address")
        saved = await me.put(OPENAI, json={"base_url": fake_openai.url, "api_key": KEY})
        assert saved.status_code == 400
        assert "base_url" in saved.json()["errors"]
    assert fake_openai.requests == []
    for url in ("http://169.254.169.254/v1", "http://[fd00:ec2::254]/v1"):
        resp = await owner.post(f"{OPENAI}test/", json={"base_url": url, "api_key": KEY})
        assert resp.status_code == 400
        assert "not allowed" in resp.json()["errors"]["base_url"][0]
