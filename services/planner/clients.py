"""The commands planner sends to auth (request-reply, see docs/contracts.md).

Billing's commands go through the kernel's typed `libs.common.billing.BillingClient`.
"""

from __future__ import annotations

from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from libs.common.events import command_subject
from libs.common.problems import ServiceUnavailable

LOOKUP_SITE = command_subject("auth", "lookup_site")
SEED_KEYWORDS = command_subject("auth", "seed_keywords")


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

    async def seed_keywords(self, ids: list[int]) -> list[dict[str, Any]]:
        answer = await self._call(SEED_KEYWORDS, {"ids": ids})
        if not answer.get("ok"):
            raise ServiceUnavailable(str(answer.get("error") or "Auth could not list seeds."))
        seeds: list[dict[str, Any]] = answer.get("seed_keywords") or []
        return seeds
