"""Password hashing with argon2id, off the event loop.

Parameters follow OWASP's argon2id minimum (19 MiB, 2 passes, 1 lane). Hashes made with
other parameters are upgraded at the next successful sign-in. Unknown emails are checked
against a dummy hash so they cost what a wrong password costs.
"""

from __future__ import annotations

import asyncio
import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)

MIN_PASSWORD_LENGTH = 8


@functools.cache
def _dummy_hash() -> str:
    return HASHER.hash(secrets.token_urlsafe(16))


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(HASHER.hash, password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str | None, password: str) -> bool:
    """False for a wrong password; for no hash at all (unknown user), the same work."""
    if password_hash is None:
        await asyncio.to_thread(_verify, _dummy_hash(), password)
        return False
    return await asyncio.to_thread(_verify, password_hash, password)


def needs_rehash(password_hash: str) -> bool:
    try:
        return HASHER.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def unusable_password_hash() -> str:
    """For accounts that never sign in with a password (bots): matches nothing."""
    return "!" + secrets.token_hex(32)


async def warm_up() -> None:
    """Compute the dummy hash before the first unknown-email sign-in needs it."""
    await asyncio.to_thread(_dummy_hash)
