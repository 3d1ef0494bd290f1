"""Token material: Ed25519 signing keys (JWK, private part encrypted at rest), access
tokens, opaque refresh tokens and site API keys. Pure functions and a key cache; the
rows live in the repository, the decisions in the service."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from joserfc import jwt
from joserfc.jwk import OKPKey

from libs.common.crypto import SecretBox

ALGORITHM = "Ed25519"
API_KEY_PREFIX = "igny8_"


def new_signing_key() -> tuple[str, OKPKey]:
    kid = uuid.uuid4().hex
    return kid, OKPKey.generate_key(
        "Ed25519", parameters={"kid": kid, "use": "sig", "alg": ALGORITHM}, private=True
    )


def public_jwk(key: OKPKey) -> dict[str, Any]:
    return dict(key.as_dict(private=False))


class KeyRing:
    """Decrypts private JWKs once per process and keeps them by `kid`."""

    def __init__(self, secret_key: str) -> None:
        self.box = SecretBox(secret_key, "auth-signing-keys")
        self._keys: dict[str, OKPKey] = {}

    def seal(self, key: OKPKey) -> str:
        return self.box.encrypt(orjson.dumps(key.as_dict(private=True)).decode())

    def open(self, kid: str, sealed: str) -> OKPKey:
        key = self._keys.get(kid)
        if key is None:
            key = OKPKey.import_key(orjson.loads(self.box.decrypt(sealed)))
            self._keys[kid] = key
        return key


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str
    jti: str
    expires_at: int


def sign_access_token(
    key: OKPKey,
    kid: str,
    *,
    user_id: int,
    account_id: int,
    role: str,
    session_id: str,
    issuer: str,
    audience: str,
    ttl_seconds: int,
    site_id: int | None = None,
    now: float | None = None,
) -> AccessToken:
    issued = int(now if now is not None else time.time())
    jti = uuid.uuid4().hex
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "user_id": user_id,
        "account_id": account_id,
        "role": role,
        "type": "access",
        "iat": issued,
        "exp": issued + ttl_seconds,
        "iss": issuer,
        "aud": audience,
        "jti": jti,
        "sid": session_id,
    }
    if site_id is not None:
        claims["site_id"] = site_id
    header = {"alg": ALGORITHM, "kid": kid, "typ": "JWT"}
    token = jwt.encode(header, claims, key, algorithms=[ALGORITHM])
    return AccessToken(token=token, jti=jti, expires_at=issued + ttl_seconds)


def digest(secret: str) -> str:
    """sha256 hex of a high-entropy secret (refresh tokens, API keys): no salt needed."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_refresh_token() -> str:
    return secrets.token_urlsafe(48)


def new_session_id() -> str:
    return uuid.uuid4().hex


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)
