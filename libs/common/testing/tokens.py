"""A token issuer for the tests of services other than auth: same claims, same algorithm,
its own key. Auth's own tests use auth's real signing keys."""

from __future__ import annotations

import time
import uuid
from typing import Any

from joserfc import jwt
from joserfc.jwk import OKPKey

from libs.common.security import KeysFetcher


class TestIssuer:
    __test__ = False  # not a pytest test class

    def __init__(self, issuer: str = "igny8-auth", audience: str = "igny8-api") -> None:
        self.issuer = issuer
        self.audience = audience
        self.key = OKPKey.generate_key("Ed25519", parameters={"kid": uuid.uuid4().hex},
                                       private=True)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.key.as_dict(private=False)]}

    def fetcher(self) -> KeysFetcher:
        async def fetch() -> dict[str, Any]:
            return self.jwks()

        return fetch

    def issue(self, *, user_id: int, account_id: int, role: str = "owner",
              ttl: int = 900, session_id: str | None = None, **extra: Any) -> str:
        now = int(time.time())
        claims = {
            "sub": str(user_id), "user_id": user_id, "account_id": account_id, "role": role,
            "type": "access", "iat": now, "exp": now + ttl, "iss": self.issuer,
            "aud": self.audience, "jti": uuid.uuid4().hex,
            "sid": session_id or uuid.uuid4().hex, **extra,
        }
        header = {"alg": "Ed25519", "kid": self.key.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self.key, algorithms=["Ed25519"])

    def headers(self, **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issue(**kwargs)}"}
