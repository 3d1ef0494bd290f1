"""Auth's commands answered by a fake on the real NATS, for the tests of services that ask
auth (`libs.common.auth.AuthClient`): sites and sectors, seed keywords and each account's
AI settings, in the contracts' shapes.

The package that needs it imports the `fake_auth` fixture into its conftest:

    from libs.common.testing.fake_auth import fake_auth_fixture

so the fake answers that package's tests only. Not from a plugin: a package-scoped
fixture declared there lives for the whole session, and auth's own tests, or another
package's, answer the same queue group."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from libs.common.auth import AI_SETTINGS, LOOKUP_SITE, SEED_KEYWORDS
from libs.common.testing.factories import next_id


@dataclass
class FakeAuth:
    """Each account's AI provider is `local` unless `set_openai` gave it an OpenAI one;
    accounts in `silent` get no answer (auth down, as far as they can tell)."""

    sites: dict[int, dict[str, Any]] = field(default_factory=dict)
    sectors: dict[int, dict[str, Any]] = field(default_factory=dict)
    seeds: dict[int, dict[str, Any]] = field(default_factory=dict)
    lookups: list[tuple[int, int]] = field(default_factory=list)
    openai: dict[int, dict[str, str | None]] = field(default_factory=dict)
    prompts: dict[int, dict[str, str]] = field(default_factory=dict)
    ai_requests: list[dict[str, Any]] = field(default_factory=list)
    silent: set[int] = field(default_factory=set)
    images: dict[int, dict[str, Any]] = field(default_factory=dict)
    runware: dict[int, dict[str, str]] = field(default_factory=dict)

    async def start(self, nc: NATS) -> list[Subscription]:
        answers = ((LOOKUP_SITE, self._lookup), (SEED_KEYWORDS, self._seeds),
                   (AI_SETTINGS, self._ai_settings))
        return [await nc.subscribe(command.subject, queue=command.service, cb=answer)
                for command, answer in answers]

    def set_openai(self, account_id: int, base_url: str, api_key: str, model: str,
                   image_model: str | None = None, **prompts: str) -> None:
        self.openai[account_id] = {"base_url": base_url, "api_key": api_key, "model": model,
                                   "image_model": image_model}
        self.prompts[account_id] = dict(prompts)

    def set_images(self, account_id: int, provider: str, *,
                   runware: dict[str, str] | None = None, **settings: Any) -> None:
        """The account's image settings (`ImageSettings` fields), and its Runware
        integration (`base_url`, `api_key`, `model`) when images use it."""
        self.images[account_id] = {"provider": provider, **settings}
        if runware is not None:
            self.runware[account_id] = runware

    def add_site(self, account_id: int, sectors: int = 2) -> tuple[int, list[int]]:
        site_id = next_id()
        self.sites[site_id] = {"id": site_id, "account_id": account_id, "name": f"Site {site_id}",
                               "slug": f"site-{site_id}", "url": "https://example.com",
                               "industry_id": 1, "industry_slug": "tech", "is_active": True}
        sector_ids = []
        for n in range(sectors):
            sector_id = next_id()
            self.sectors[sector_id] = {"id": sector_id, "account_id": account_id,
                                       "site_id": site_id, "name": f"Sector {n}",
                                       "slug": f"sector-{n}", "industry_sector_id": None,
                                       "is_active": True}
            sector_ids.append(sector_id)
        return site_id, sector_ids

    def add_seed(self, keyword: str, volume: int = 100, difficulty: int = 30,
                 intent: str = "commercial") -> int:
        seed_id = next_id()
        self.seeds[seed_id] = {"id": seed_id, "keyword": keyword, "industry_id": 1,
                               "industry_slug": "tech", "sector_id": 1, "sector_slug": "s",
                               "volume": volume, "difficulty": difficulty, "intent": intent,
                               "country": "US", "is_active": True}
        return seed_id

    async def _ai_settings(self, msg: Msg) -> None:
        body = orjson.loads(msg.data)
        self.ai_requests.append(body)
        account_id = body["account_id"]
        if account_id in self.silent:
            return
        saved = self.prompts.get(account_id, {})
        types = body.get("prompt_types")
        prompts = {t: v for t, v in saved.items() if types is None or t in types}
        openai = self.openai.get(account_id)
        answer = {"ok": True, "provider": "openai" if openai else "local", "openai": openai,
                  "prompts": prompts, "runware": self.runware.get(account_id)}
        if account_id in self.images:
            answer["images"] = self.images[account_id]
        await msg.respond(orjson.dumps(answer))

    async def _lookup(self, msg: Msg) -> None:
        body = orjson.loads(msg.data)
        self.lookups.append((body["account_id"], body["site_id"]))
        site = self.sites.get(body["site_id"])
        if site is None or site["account_id"] != body["account_id"]:
            await msg.respond(orjson.dumps({"ok": False, "code": "not_found",
                                            "error": "Site not found"}))
            return
        sectors = [s for s in self.sectors.values() if s["site_id"] == site["id"]]
        await msg.respond(orjson.dumps({"ok": True, "site": site, "sectors": sectors}))

    async def _seeds(self, msg: Msg) -> None:
        ids = orjson.loads(msg.data)["ids"]
        found = [self.seeds[i] for i in ids if i in self.seeds]
        await msg.respond(orjson.dumps({"ok": True, "seed_keywords": found}))


@asynccontextmanager
async def answering_auth(nc: NATS) -> AsyncIterator[FakeAuth]:
    auth = FakeAuth()
    subscriptions = await auth.start(nc)
    try:
        yield auth
    finally:
        for subscription in subscriptions:
            await subscription.unsubscribe()


@pytest.fixture(scope="package", name="fake_auth")
async def fake_auth_fixture(nc: NATS) -> AsyncIterator[FakeAuth]:
    """Auth's commands answered for the tests of the package whose conftest imports it."""
    async with answering_auth(nc) as auth:
        yield auth
