"""Credentials at the edge: Bearer JWTs verified locally; HTTP Basic and `ApiKey`
exchanged once at auth for a short-lived access token (docs/decisions/0002), cached under a
hash of the header for at most `exchange_cache_seconds` and never past the token's expiry.
Upstream always receives `Authorization: Bearer <access JWT>`.

`known` answers, without any work, for credentials already verified (a cached token or
exchange); the pipeline limits failed attempts per client address before it lets
`authenticate` do the work for anything else. The exchange carries the client's address,
so auth's sign-in lockouts count the caller, not the gateway; a lockout is a 429 with the
seconds to wait."""

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
    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after  # seconds, for a 429 (a lockout)


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

    def known(self, authorization: str, *, apikey_allowed: bool) -> Authenticated | None:
        """The caller, when these credentials were verified before and still hold: a
        cached Bearer token, or a cached exchange. None: `authenticate` must decide."""
        scheme, _, value = authorization.partition(" ")
        kind = scheme.lower()
        value = value.strip()
        if not value:
            return None
        if kind == "bearer":
            principal = self.verifier.verify_cached(value)
            return Authenticated(principal, value) if principal is not None else None
        if kind == "basic" or (kind == "apikey" and apikey_allowed):
            cached = self._cached(_cache_key(f"{scheme} {value}"))
            return Authenticated(cached.principal, cached.token) if cached else None
        return None

    async def authenticate(self, authorization: str, *, apikey_allowed: bool,
                           request_id: str, client_address: str | None = None
                           ) -> Authenticated:
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
            exchanged = await self._exchange(f"{scheme} {value}", request_id, client_address)
            return Authenticated(exchanged.principal, exchanged.token)
        raise AuthFailure(401, "Unsupported authentication scheme")

    def _cached(self, key: bytes) -> _Exchanged | None:
        cached = self._cache.get(key)
        if cached is None:
            return None
        if cached.valid_until > time.time() and not self.verifier.revocations.is_revoked(
            cached.principal.session_id
        ):
            return cached
        self._cache.pop(key, None)
        return None

    async def _exchange(self, authorization: str, request_id: str,
                        client_address: str | None) -> _Exchanged:
        key = _cache_key(authorization)
        cached = self._cached(key)
        if cached is not None:
            return cached
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[_Exchanged] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await self._call_auth(authorization, request_id, client_address)
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

    async def _call_auth(self, authorization: str, request_id: str,
                         client_address: str | None) -> _Exchanged:
        if self.auth_url is None:
            raise AuthFailure(503, "Service unavailable")
        request: dict[str, str] = {"authorization": authorization}
        if client_address:
            request["client_address"] = client_address
        try:
            async with self._session().post(
                self.auth_url + EXCHANGE_PATH,
                data=orjson.dumps(request),
                headers={"Content-Type": "application/json", "X-Request-ID": request_id},
                timeout=self.timeout,
            ) as resp:
                body = await resp.read()
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            UPSTREAM_ERRORS.labels("auth", "exchange").inc()
            log.warning("credential exchange failed: %s", exc)
            raise AuthFailure(503, "Service unavailable") from exc
        if status in (400, 401, 403):
            raise AuthFailure(401, _detail(body) or "Invalid credentials")
        if status == 429:  # a sign-in lockout: the caller waits, it is not our outage
            raise AuthFailure(429, _detail(body) or "Too many failed sign-in attempts",
                              retry_after=_seconds(retry_after))
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


def _cache_key(authorization: str) -> bytes:
    return hashlib.sha256(authorization.encode()).digest()


def _seconds(value: str | None) -> int | None:
    """A Retry-After in seconds (auth sends seconds, never a date)."""
    try:
        return max(1, int(value)) if value is not None else None
    except ValueError:
        return None


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
