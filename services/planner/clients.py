"""The commands planner sends to auth (request-reply, see docs/contracts.md).

Billing's commands go through the kernel's typed `libs.common.billing.BillingClient`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from libs.common.events import command_subject
from libs.common.problems import ServiceUnavailable

LOOKUP_SITE = command_subject("auth", "lookup_site")
SEED_KEYWORDS = command_subject("auth", "seed_keywords")
AI_SETTINGS = command_subject("auth", "ai_settings")


class AISettingsUnusable(Exception):
    """The account configured an AI provider that cannot be used as saved (e.g. its key
    can no longer be decrypted). Not transient: retrying will not help."""


@dataclass(frozen=True, slots=True)
class OpenAISettings:
    base_url: str
    api_key: str = field(repr=False)
    model: str


@dataclass(frozen=True, slots=True)
class AISettings:
    """What an account's AI job runs with. `prompts` holds only the account's saved
    prompts; a missing type means the built-in one."""

    provider: Literal["openai", "local"]
    openai: OpenAISettings | None = None
    prompts: dict[str, str] = field(default_factory=dict)

    def prompt(self, prompt_type: str, default: str) -> str:
        value = self.prompts.get(prompt_type)
        return value if value and value.strip() else default


class AuthClient:
    def __init__(self, nc: NATS, *, timeout: float = 5.0) -> None:
        self.nc = nc
        self.timeout = timeout

    async def _call(self, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            msg = await self.nc.request(subject, orjson.dumps(body), timeout=self.timeout)
        except (NatsTimeoutError, TimeoutError, NoRespondersError) as exc:
            raise ServiceUnavailable("Auth did not answer in time.") from exc
        answer: dict[str, Any] = orjson.loads(msg.data)
        return answer

    async def lookup_site(self, account_id: int, site_id: int) -> dict[str, Any] | None:
        """`{"site": {...}, "sectors": [...]}` as auth knows it now, or None."""
        answer = await self._call(LOOKUP_SITE, {"account_id": account_id, "site_id": site_id})
        if not answer.get("ok"):
            if answer.get("code") == "not_found":
                return None
            raise ServiceUnavailable(str(answer.get("error") or "Auth could not look up the site."))
        return answer

    async def ai_settings(
        self, account_id: int, prompt_types: list[str] | None = None
    ) -> AISettings:
        """The account's AI provider and saved prompts. Raises `ServiceUnavailable` when auth
        does not answer (transient) and `AISettingsUnusable` when the saved settings
        cannot be used (permanent)."""
        body: dict[str, Any] = {"account_id": account_id}
        if prompt_types is not None:
            body["prompt_types"] = prompt_types
        answer = await self._call(AI_SETTINGS, body)
        if not answer.get("ok"):
            error = str(answer.get("error") or "Auth could not read the AI settings.")
            if answer.get("code") in ("unreadable_secret", "invalid"):
                raise AISettingsUnusable(error)
            raise ServiceUnavailable(error)
        prompts = {
            str(k): str(v) for k, v in (answer.get("prompts") or {}).items() if isinstance(v, str)
        }
        openai = answer.get("openai")
        if answer.get("provider") == "openai":
            if not isinstance(openai, dict):
                raise ServiceUnavailable("Auth answered provider openai without its settings.")
            return AISettings(
                provider="openai",
                openai=OpenAISettings(
                    base_url=str(openai["base_url"]),
                    api_key=str(openai["api_key"]),
                    model=str(openai["model"]),
                ),
                prompts=prompts,
            )
        return AISettings(provider="local", prompts=prompts)

    async def seed_keywords(self, ids: list[int]) -> list[dict[str, Any]]:
        answer = await self._call(SEED_KEYWORDS, {"ids": ids})
        if not answer.get("ok"):
            raise ServiceUnavailable(str(answer.get("error") or "Auth could not list seeds."))
        seeds: list[dict[str, Any]] = answer.get("seed_keywords") or []
        return seeds
