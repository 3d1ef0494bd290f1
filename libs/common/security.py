"""Verifying access tokens: no network call per request.

Public keys come from auth's JWKS, cached and refreshed in the background (the last
good set is kept when a refresh fails; an unknown `kid` triggers a refetch at most every
few seconds). Verified tokens are cached until they expire. Revoked sessions arrive
through a JetStream KV bucket that every verifier watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry
from nats.js.kv import KeyValue

from libs.common.db import TenantScope

log = logging.getLogger(__name__)

ALLOWED_ALGORITHMS = ["Ed25519", "EdDSA"]

# Lowest to highest. `developer` is platform staff and may cross tenants.
ROLE_RANK = {"system_bot": 0, "viewer": 1, "editor": 2, "admin": 3, "owner": 4, "developer": 5}
ROLES = tuple(ROLE_RANK)


class InvalidToken(Exception):
    """The token is malformed, forged, expired, for someone else, or revoked."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as the access token says."""

    user_id: int
    account_id: int
    role: str
    session_id: str | None = None
    expires_at: float = 0.0
    # Set for tokens minted for a WordPress site key: the caller may touch only this site.
    site_id: int | None = None

    @property
    def is_platform_staff(self) -> bool:
        return self.role == "developer"

    def has_role(self, minimum: str) -> bool:
        return ROLE_RANK.get(self.role, -1) >= ROLE_RANK[minimum]

    @property
    def scope(self) -> TenantScope:
        return TenantScope(account_id=self.account_id, all_accounts=self.is_platform_staff)

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> Principal:
        try:
            return cls(
                user_id=int(claims["sub"]),
                account_id=int(claims["account_id"]),
                role=str(claims["role"]),
                session_id=claims.get("sid"),
                expires_at=float(claims["exp"]),
                site_id=int(claims["site_id"]) if claims.get("site_id") else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidToken("token lacks required claims") from exc


class RevocationList:
    """Session ids whose tokens must no longer pass, mirrored from a KV bucket."""

    PREFIX = "sid."

    def __init__(self) -> None:
        self._revoked: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def is_revoked(self, session_id: str | None) -> bool:
        return session_id is not None and session_id in self._revoked

    def add_local(self, *session_ids: str) -> None:
        """Apply a revocation before the watch delivers it (the gateway sees logouts pass)."""
        self._revoked.update(session_ids)

    async def start(self, kv: KeyValue) -> None:
        watcher = await kv.watchall()
        self._task = asyncio.create_task(self._follow(watcher))

    async def _follow(self, watcher: Any) -> None:
        try:
            async for entry in watcher:
                if entry is None:  # end of the initial values
                    continue
                key = entry.key
                if not key.startswith(self.PREFIX):
                    continue
                sid = key[len(self.PREFIX):]
                if entry.operation in ("DEL", "PURGE"):
                    self._revoked.discard(sid)
                else:
                    self._revoked.add(sid)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("revocation watch ended: %s", exc)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def revoke_sessions(kv: KeyValue, *session_ids: str) -> None:
    for sid in session_ids:
        await kv.put(f"{RevocationList.PREFIX}{sid}", b"1")


KeysFetcher = Callable[[], Awaitable[dict[str, Any]]]


def http_jwks_fetcher(url: str) -> KeysFetcher:
    async def fetch() -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
            resp.raise_for_status()
            body = await resp.json()
            # Accept the bare JWKS or our service's JSON (`{"keys": [...]}` either way).
            return body.get("data", body) if isinstance(body, dict) else body

    return fetch


class JwtVerifier:
    def __init__(
        self,
        fetch_keys: KeysFetcher,
        *,
        issuer: str,
        audience: str,
        leeway: int = 30,
        refresh_seconds: float = 300.0,
        unknown_kid_cooldown: float = 5.0,
        revocations: RevocationList | None = None,
        cache_size: int = 50_000,
    ) -> None:
        self.fetch_keys = fetch_keys
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.refresh_seconds = refresh_seconds
        self.unknown_kid_cooldown = unknown_kid_cooldown
        self.revocations = revocations or RevocationList()
        self._keys: KeySet | None = None
        self._kids: set[str] = set()
        self._last_fetch = 0.0
        self._fetch_lock = asyncio.Lock()
        self._cache: OrderedDict[str, Principal] = OrderedDict()
        self._cache_size = cache_size
        self._refresher: asyncio.Task[None] | None = None
        self._claims = JWTClaimsRegistry(
            leeway=leeway,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            sub={"essential": True},
        )

    async def start(self) -> None:
        with contextlib.suppress(Exception):
            await self.refresh_keys()
        self._refresher = asyncio.create_task(self._refresh_loop())

    async def stop(self) -> None:
        if self._refresher:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds if self._keys else 2.0)
            try:
                await self.refresh_keys()
            except Exception as exc:
                log.warning("JWKS refresh failed, keeping the last good keys: %s", exc)

    async def refresh_keys(self) -> None:
        async with self._fetch_lock:
            self._last_fetch = time.monotonic()
            jwks = await self.fetch_keys()
            keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
            self._keys = keys
            self._kids = {str(k.kid) for k in keys.keys}

    def verify_cached(self, token: str) -> Principal | None:
        """The fast path: a token seen before, still valid and not revoked."""
        principal = self._cache.get(token)
        if principal is None:
            return None
        if principal.expires_at + self.leeway < time.time():
            self._cache.pop(token, None)
            return None
        if self.revocations.is_revoked(principal.session_id):
            return None
        return principal

    async def verify(self, token: str) -> Principal:
        cached = self.verify_cached(token)
        if cached is not None:
            return cached
        if token in self._cache:  # cached but expired or revoked
            raise InvalidToken("token expired or revoked")
        kid = _header_kid(token)
        if self._keys is None or kid not in self._kids:
            cooled_down = time.monotonic() - self._last_fetch >= self.unknown_kid_cooldown
            if cooled_down or self._keys is None:
                try:
                    await self.refresh_keys()
                except Exception as exc:
                    log.warning("JWKS fetch failed: %s", exc)
            if self._keys is None or kid not in self._kids:
                raise InvalidToken("unknown signing key")
        principal = self._decode(token)
        if self.revocations.is_revoked(principal.session_id):
            raise InvalidToken("session revoked")
        self._cache[token] = principal
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return principal

    def _decode(self, token: str) -> Principal:
        assert self._keys is not None
        try:
            decoded = jwt.decode(token, self._keys, algorithms=ALLOWED_ALGORITHMS)
            self._claims.validate(decoded.claims)
        except (JoseError, ValueError, TypeError) as exc:
            raise InvalidToken(str(exc) or exc.__class__.__name__) from exc
        if decoded.claims.get("type") != "access":
            raise InvalidToken("not an access token")
        return Principal.from_claims(decoded.claims)


def _header_kid(token: str) -> str:
    import base64

    import orjson

    try:
        header_b64 = token.split(".", 1)[0]
        header = orjson.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
        kid = header.get("kid")
        if header.get("alg") not in ALLOWED_ALGORITHMS or not isinstance(kid, str):
            raise InvalidToken("algorithm not allowed")
        return kid
    except InvalidToken:
        raise
    except Exception as exc:
        raise InvalidToken("malformed token") from exc


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value:
        return None
    return value.strip()
