"""Credentials at the edge: Bearer JWTs verified locally; HTTP Basic and `ApiKey`
exchanged once at auth for a short-lived access token (docs/decisions/0002), cached under a
hash of the header for at most `exchange_cache_seconds` and never past the token's expiry.
Upstream always receives `Authorization: Bearer <access JWT>`."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import orjson

from libs.common.metrics import UPSTREAM_ERRORS
from libs.common.security import InvalidToken, JwtVerifier, Principal

log = logging.getLogger("igny8.gateway.auth")

EXCHANGE_PATH = "/internal/v1/auth/exchange"
_CACHE_SIZE = 10_000


class AuthFailure(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)  # not frozen: one per request, and a frozen __init__ is slower
class Authenticated:
    principal: Principal
    token: str


@dataclass(frozen=True, slots=True)
class _Exchanged:
    principal: Principal
    token: str
    valid_until: float


class Authenticator:
    def __init__(
        self,
        verifier: JwtVerifier,
        session: Callable[[], aiohttp.ClientSession],
        auth_url: str | None,
        *,
        cache_seconds: float = 60.0,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.verifier = verifier
        self._session = session
        self.auth_url = auth_url.rstrip("/") if auth_url else None
        self.cache_seconds = min(cache_seconds, 60.0)
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._cache: OrderedDict[bytes, _Exchanged] = OrderedDict()
        self._inflight: dict[bytes, asyncio.Future[_Exchanged]] = {}

    async def authenticate(self, authorization: str, *, apikey_allowed: bool,
                           request_id: str) -> Authenticated:
        scheme, _, value = authorization.partition(" ")
        kind = scheme.lower()
        value = value.strip()
        if not value:
            raise AuthFailure(401, "Authentication required")
        if kind == "bearer":
            principal = self.verifier.verify_cached(value)
            if principal is None:
                try:
                    principal = await self.verifier.verify(value)
                except InvalidToken as exc:
                    raise AuthFailure(401, "Invalid or expired token") from exc
            return Authenticated(principal, value)
        if kind == "apikey" and not apikey_allowed:
            raise AuthFailure(401, "API keys are not accepted for this endpoint")
        if kind in ("basic", "apikey"):
            exchanged = await self._exchange(f"{scheme} {value}", request_id)
            return Authenticated(exchanged.principal, exchanged.token)
        raise AuthFailure(401, "Unsupported authentication scheme")

    async def _exchange(self, authorization: str, request_id: str) -> _Exchanged:
        key = hashlib.sha256(authorization.encode()).digest()
        cached = self._cache.get(key)
        if cached is not None:
            if cached.valid_until > time.time() and not self.verifier.revocations.is_revoked(
                cached.principal.session_id
            ):
                return cached
            self._cache.pop(key, None)
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[_Exchanged] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await self._call_auth(authorization, request_id)
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: no "never retrieved" warning
            raise
        finally:
            self._inflight.pop(key, None)
        future.set_result(result)
        self._cache[key] = result
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return result

    async def _call_auth(self, authorization: str, request_id: str) -> _Exchanged:
        if self.auth_url is None:
            raise AuthFailure(503, "Service unavailable")
        try:
            async with self._session().post(
                self.auth_url + EXCHANGE_PATH,
                data=orjson.dumps({"authorization": authorization}),
                headers={"Content-Type": "application/json", "X-Request-ID": request_id},
                timeout=self.timeout,
            ) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            UPSTREAM_ERRORS.labels("auth", "exchange").inc()
            log.warning("credential exchange failed: %s", exc)
            raise AuthFailure(503, "Service unavailable") from exc
        if status in (400, 401, 403):
            raise AuthFailure(401, _detail(body) or "Invalid credentials")
        if status != 200:
            UPSTREAM_ERRORS.labels("auth", f"exchange_{status}").inc()
            raise AuthFailure(503, "Service unavailable")
        try:
            doc = orjson.loads(body)
            token = str(doc["access"])
            expires_at = float(doc["expires_at"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise AuthFailure(503, "Service unavailable") from exc
        try:
            principal = await self.verifier.verify(token)
        except InvalidToken as exc:
            log.warning("auth exchanged a token the gateway cannot verify: %s", exc)
            raise AuthFailure(401, "Invalid credentials") from exc
        valid_until = min(time.time() + self.cache_seconds, expires_at - 1.0,
                          principal.expires_at - 1.0)
        return _Exchanged(principal, token, valid_until)


def _detail(body: bytes) -> str | None:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(doc, dict):
        for key in ("detail", "title"):
            if isinstance(doc.get(key), str) and doc[key]:
                return str(doc[key])
    return None
