"""`igny8.cmd.auth.ai_settings`: the account's AI provider (API key decrypted, on the
internal bus only) and its saved prompts, answered by auth's worker over real NATS."""

from __future__ import annotations

from typing import Any

import orjson
from nats.aio.client import Client as NATS
from sqlalchemy import update

from libs.common.db import Database, TenantScope
from libs.common.runtime import WorkerContext
from services.auth.models import IntegrationSetting

from .conftest import Tenant

OPENAI = "/api/v1/system/settings/integrations/openai/"
SAVE_PROMPT = "/api/v1/system/prompts/save/"
KEY = "sk-test-0123456789abcdef"
IMAGES = {
    "provider": "local",
    "model": "local-render-1",
    "image_type": "realistic",
    "max_in_article_images": 2,
    "image_format": "webp",
    "desktop_enabled": True,
    "mobile_enabled": True,
}
LOCAL = {"provider": "local", "openai": None, "images": IMAGES, "runware": None}


async def ask(nc: NATS, payload: dict[str, Any]) -> dict[str, Any]:
    """Asked as the tests' NATS user: auth's own credentials may not call its commands."""
    msg = await nc.request("igny8.cmd.auth.ai_settings", orjson.dumps(payload), timeout=5)
    answer: dict[str, Any] = orjson.loads(msg.data)
    return answer


async def test_account_without_settings_runs_local(
    worker_ctx: WorkerContext, nc: NATS, other: Tenant
) -> None:
    answer = await ask(nc, {"account_id": other.account_id})
    assert answer == {"ok": True, **LOCAL, "prompts": {}}


async def test_openai_settings_and_prompts(
    worker_ctx: WorkerContext, nc: NATS, owner: Tenant, other: Tenant
) -> None:
    saved = await owner.put(
        OPENAI, json={"api_key": KEY, "base_url": "http://127.0.0.1:9/v1/", "model": "gpt-test"}
    )
    assert saved.status_code == 200, saved.text
    assert KEY not in saved.text  # the HTTP answer only ever shows it masked
    for prompt_type, value in (("ideas", "My ideas prompt"), ("clustering", "My clusters")):
        r = await owner.post(SAVE_PROMPT, json={"prompt_type": prompt_type, "prompt_value": value})
        assert r.status_code == 200, r.text

    answer = await ask(nc, {"account_id": owner.account_id, "prompt_types": ["ideas"]})
    assert answer == {
        "ok": True,
        "provider": "openai",
        "openai": {
            "base_url": "http://127.0.0.1:9/v1",
            "api_key": KEY,
            "model": "gpt-test",
            "image_model": "dall-e-3",
        },
        "prompts": {"ideas": "My ideas prompt"},
        "images": IMAGES,
        "runware": None,
    }
    every = await ask(nc, {"account_id": owner.account_id})
    assert every["prompts"] == {"clustering": "My clusters", "ideas": "My ideas prompt"}
    # Another account sees none of it.
    theirs = await ask(nc, {"account_id": other.account_id, "prompt_types": ["ideas"]})
    assert (theirs["provider"], theirs["openai"], theirs["prompts"]) == ("local", None, {})

    # A reset prompt falls back to nothing (the caller's built-in); an inactive
    # integration means local.
    r = await owner.post("/api/v1/system/prompts/reset/", json={"prompt_type": "ideas"})
    assert r.status_code == 200, r.text
    r = await owner.put(OPENAI, json={"is_active": False})
    assert r.status_code == 200, r.text
    answer = await ask(nc, {"account_id": owner.account_id, "prompt_types": ["ideas"]})
    assert answer == {"ok": True, **LOCAL, "prompts": {}}


async def test_defaults_fill_the_config(worker_ctx: WorkerContext, nc: NATS, owner: Tenant) -> None:
    r = await owner.put(OPENAI, json={"api_key": KEY})
    assert r.status_code == 200, r.text
    answer = await ask(nc, {"account_id": owner.account_id, "prompt_types": []})
    assert answer["openai"] == {
        "base_url": "https://api.openai.com/v1",
        "api_key": KEY,
        "model": "gpt-4o-mini",
        "image_model": "dall-e-3",
    }
    assert answer["prompts"] == {}


async def test_image_settings_and_runware(worker_ctx: WorkerContext, nc: NATS,
                                          owner: Tenant) -> None:
    """Writer's image jobs read the image settings from the same answer (ADR 0021); the
    Runware key comes only when images use Runware."""
    runware_key = "rw-test-0123456789"
    r = await owner.put(
        "/api/v1/system/settings/integrations/runware/", json={"api_key": runware_key}
    )
    assert r.status_code == 200, r.text
    answer = await ask(nc, {"account_id": owner.account_id})
    assert (answer["images"], answer["runware"]) == (IMAGES, None)
    r = await owner.put(
        "/api/v1/system/settings/integrations/image_generation/",
        json={"config": {"provider": "runware", "max_in_article_images": 4}},
    )
    assert r.status_code == 200, r.text
    answer = await ask(nc, {"account_id": owner.account_id})
    assert answer["images"] == {**IMAGES, "provider": "runware", "max_in_article_images": 4}
    assert answer["runware"] == {
        "base_url": "https://api.runware.ai/v1",
        "api_key": runware_key,
        "model": "runware:100@1",
        "image_model": None,
    }
    assert answer["provider"] == "local"  # text stays on its own setting


async def test_unreadable_key_is_an_error_not_local(
    worker_ctx: WorkerContext, nc: NATS, owner: Tenant, db: Database
) -> None:
    r = await owner.put(OPENAI, json={"api_key": KEY})
    assert r.status_code == 200, r.text
    async with db.session(TenantScope.system()) as session:
        await session.execute(
            update(IntegrationSetting)
            .where(IntegrationSetting.account_id == owner.account_id)  # type: ignore[arg-type]
            .values(api_key_encrypted="not-a-fernet-token")
        )
        await session.commit()
    answer = await ask(nc, {"account_id": owner.account_id})
    assert answer["ok"] is False
    assert answer["code"] == "unreadable_secret"
    assert KEY not in orjson.dumps(answer).decode()


async def test_invalid_requests(worker_ctx: WorkerContext, nc: NATS, owner: Tenant) -> None:
    for payload in (
        {"account_id": "x"},
        {"account_id": owner.account_id, "prompt_types": "ideas"},
        {"account_id": owner.account_id, "prompt_types": ["nonsense"]},
    ):
        answer = await ask(nc, payload)
        assert (answer["ok"], answer["code"]) == (False, "invalid"), payload
