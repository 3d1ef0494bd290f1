"""Test data that never collides: ids from one sequence per session, accounts with their
users' tokens. Tests share databases, so every row a test makes is its own by id.

Services add their own data to a `Tenant` through what they expose (an API call, a
command, an event), not by writing another service's tables.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Any

from libs.common.testing.tokens import TestIssuer

# Far above anything a sequence hands out in a fresh test database, and random per
# session so two sessions against one server (IGNY8_TEST_DATABASE_URL) do not collide.
_ids = itertools.count(random.randint(10_000, 90_000) * 1_000_000)


def next_id() -> int:
    return next(_ids)


@dataclass
class Tenant:
    """An account, its owner, and optionally a site with sectors (ids only: the directory
    that knows them is auth's, or a `FakeAuth` in tests)."""

    account_id: int
    issuer: TestIssuer
    user_id: int = field(default_factory=next_id)
    site_id: int | None = None
    sector_ids: list[int] = field(default_factory=list)

    def headers(self, role: str = "owner", user_id: int | None = None,
                **claims: Any) -> dict[str, str]:
        return self.issuer.headers(user_id=user_id or self.user_id,
                                   account_id=self.account_id, role=role, **claims)

    @property
    def sector_id(self) -> int:
        return self.sector_ids[0]


@dataclass
class Factories:
    issuer: TestIssuer

    def tenant(self, **fields: Any) -> Tenant:
        return Tenant(account_id=next_id(), issuer=self.issuer, **fields)
