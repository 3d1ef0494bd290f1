"""Webhook signatures in the Standard Webhooks style (https://www.standardwebhooks.com/).

The WordPress plugin signs what it posts to `/api/v1/integration/webhooks/wordpress/...`:

    webhook-id:        a unique message id
    webhook-timestamp: seconds since the epoch
    webhook-signature: v1,<base64(HMAC-SHA256(secret, f"{id}.{timestamp}.{body}"))>

Several signatures may be sent, space-separated (during a secret's rotation); one valid is
enough. The secret is `whsec_<base64 key>` or any other string (its UTF-8 bytes). A message
is accepted when a signature matches (compared in constant time), its timestamp is within
five minutes of now either way, and its id was not seen before (`ReplayStore`; ids are
remembered only after the signature checked out, so nobody can burn another's ids). The
replay store is the service's (e.g. a table or a JetStream KV bucket with a TTL); the
in-memory one here serves tests and single-process use.

Refusals are kernel domain errors (4xx): missing headers → 400 naming the header, a bad
signature or a stale timestamp → 401, a replay → 409. Nothing is applied before `verify`
returns.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from libs.common.problems import Conflict, NotAuthenticated, ValidationFailed

TOLERANCE_SECONDS = 5 * 60
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"


class WebhookRejected(NotAuthenticated):
    title = "Webhook signature rejected"


class WebhookReplayed(Conflict):
    title = "Webhook already received"


class ReplayStore(Protocol):
    async def first_time(self, message_id: str, expires_at: float) -> bool:
        """Remember `message_id` until `expires_at`; False when it was already there."""
        ...


@dataclass
class InMemoryReplayStore:
    seen: dict[str, float] = field(default_factory=dict)

    async def first_time(self, message_id: str, expires_at: float) -> bool:
        now = time.time()
        for stale in [k for k, until in self.seen.items() if until < now]:
            del self.seen[stale]
        if message_id in self.seen:
            return False
        self.seen[message_id] = expires_at
        return True


def secret_key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            raise ValueError("a whsec_ secret must be base64") from None
    return secret.encode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value for a message: `v1,<base64 signature>`."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, message_id: str, body: bytes,
                   timestamp: int | None = None) -> dict[str, str]:
    """All three headers for sending a signed message (the plugin's side, and tests)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return {ID_HEADER: message_id, TIMESTAMP_HEADER: str(stamp),
            SIGNATURE_HEADER: sign(secret, message_id, stamp, body)}


@dataclass(frozen=True)
class VerifiedWebhook:
    message_id: str
    timestamp: int


async def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    replays: ReplayStore,
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> VerifiedWebhook:
    """Checks signature, timestamp and replay, in that order; raises a 4xx domain error."""
    lowered = {k.lower(): v for k, v in headers.items()}
    values = {}
    for name in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER):
        value = lowered.get(name, "").strip()
        if not value:
            raise ValidationFailed.field(name, "This header is required.")
        values[name] = value
    message_id = values[ID_HEADER]
    try:
        timestamp = int(values[TIMESTAMP_HEADER])
    except ValueError:
        raise ValidationFailed.field(TIMESTAMP_HEADER, "Seconds since the epoch.") from None
    expected = sign(secret, message_id, timestamp, body).encode()
    offered = [s for s in values[SIGNATURE_HEADER].split() if s.startswith("v1,")]
    if not any(hmac.compare_digest(expected, s.encode()) for s in offered):
        raise WebhookRejected("The webhook signature does not match.")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookRejected("The webhook timestamp is too far from now.")
    if not await replays.first_time(message_id, current + 2 * tolerance):
        raise WebhookReplayed("This webhook id was already received.")
    return VerifiedWebhook(message_id, timestamp)
